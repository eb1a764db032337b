-- tick.lua: reclaim expired leases and dead waiters and hand off free units, one batch.
-- Clients call it again while a previous call reported that its batch limit stopped it.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV: none
-- returns: 1 if there may be more to do, 0 if not (or the pool is gone)
return run(function()
  if not load_pool() then return 0 end
  local more = housekeeping(now_ms())
  save_pool()
  if more then return 1 end
  return 0
end)
