-- cancel.lua: a waiter gives up (timeout, interrupt). Leaves the queue atomically; if it was
-- granted in the same instant, hands the grant back to the caller instead.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] waiter id  ARGV[2] why: "timeout" (counted as a timeout), else "interrupt" or "cancel"
-- returns: {"cancelled", more} | {"wake", message from its wake list, more} | {"gone", more}
--          | {"nopool"}; more 1 if hand-off stopped at its batch limit (call tick)
return run(function()
  local id = ARGV[1]
  local now = now_ms()
  local msg = nil
  if not load_pool() then
    msg = redis.call('LPOP', K_WAKE .. id)
    if msg then return {'wake', msg} end
    return {'nopool'}
  end
  local more = reclaim(now)  -- first: expired leases count as service only up to their expiry
  local result
  if drop_waiter(id, now, false, ARGV[2] == 'timeout' and 'timeouts' or 'cancels') then
    result = {'cancelled'}
  else
    msg = redis.call('LPOP', K_WAKE .. id)
    if msg then result = {'wake', msg} else result = {'gone'} end
  end
  if dispatch(now) then more = true end  -- the leaving head may have held others back
  result[#result + 1] = more and 1 or 0
  save_pool()
  return result
end)
