-- release.lua: end a lease by release or revocation and hand its units to waiters.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] lease id  ARGV[2] "revoke" if an operator ends it (counted as a revocation), else "release"
-- returns: {ended, more}: ended 1 if the lease was live and is now ended, 0 if it had already
--          ended (or the pool is gone); more 1 if hand-off stopped at its batch limit (call tick)
return run(function()
  local now = now_ms()
  if not load_pool() then return {0, 0} end
  local more = reclaim(now)  -- first: expired leases count as service only up to their expiry
  local ended = 0
  if unexpired(ARGV[1], now) and end_lease(ARGV[1], now, false, ARGV[2] == 'revoke') then ended = 1 end
  if dispatch(now) then more = true end
  save_pool()
  return {ended, more and 1 or 0}
end)
