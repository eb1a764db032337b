-- delete.lua: delete a pool and all its state. Live leases end at once (renew reports them
-- lost); blocked waiters learn at their next check-in that the pool is gone.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV: none
-- returns: 1 if the pool existed, else 0
return run(function()
  local existed = redis.call('EXISTS', K_POOL)
  redis.call('UNLINK', K_POOL, K_MEMBERS, K_LEASES, K_EXPIRY, K_READY, K_ACTIVE, K_QUEUE, K_WAITERS, K_ALIVE, K_SIZES, K_PARKED, K_HANDOFF, K_STATS)
  return existed
end)
