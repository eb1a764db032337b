-- leases.lua: reclaim what has expired, then list the live leases.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV: none
-- returns: {"ok", server time ms, HGETALL leases, ZRANGE expiry WITHSCORES} | {"nopool"}
return run(function()
  local now = now_ms()
  if not load_pool() then return {'nopool'} end
  housekeeping(now)
  save_pool()
  return {'ok', I(now), redis.call('HGETALL', K_LEASES), redis.call('ZRANGE', K_EXPIRY, 0, -1, 'WITHSCORES')}
end)
