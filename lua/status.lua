-- status.lua: reclaim what has expired, then read the pool's state in one atomic step.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV: none
-- returns: {"ok", server time ms, HGETALL pool, HGETALL members, HGETALL parked, HGETALL stats}
--          | {"nopool"}
return run(function()
  local now = now_ms()
  if not load_pool() then return {'nopool'} end
  housekeeping(now)
  save_pool()
  return {'ok', I(now), redis.call('HGETALL', K_POOL), redis.call('HGETALL', K_MEMBERS),
          redis.call('HGETALL', K_PARKED), redis.call('HGETALL', K_STATS)}
end)
