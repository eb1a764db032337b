-- wait.lua: a blocked waiter checks in (its wake list timed out): keeps it alive, reclaims
-- expired leases, and tells it whether it was granted, failed, or is still queued.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] waiter id  ARGV[2] ms the waiter counts as alive from now
-- returns: {"queued", ms until the next lease expiry or -1, more} | {"wake", message, more}
--          | {"gone", more} (purged as dead: ask again) | {"nopool"};
--          more 1 if hand-off stopped at its batch limit (call tick)
return run(function()
  local id = ARGV[1]
  local now = now_ms()
  local function delivered()
    local msg = redis.call('LPOP', K_WAKE .. id)
    if msg then return {'wake', msg} end
    return nil
  end
  if not load_pool() then return delivered() or {'nopool'} end
  local more = housekeeping(now) and 1 or 0
  local e = redis.call('HGET', K_WAITERS, id)
  if e then
    -- A resize or a lowered cap may have made this request impossible since it queued.
    local m, _, units = parse_entry(e)
    local r = rec_need(m)
    local why = nil
    if P.capacity > 0 and units > P.capacity then why = too_big_capacity(units)
    elseif r.max and units > r.max then why = too_big_cap(units, m, r.max) end
    if why then
      drop_waiter(id, now, false, 'failed')
      if dispatch(now) then more = 1 end
      save_pool()
      return {'wake', 'err:invalid:' .. why, more}
    end
    alive_until(id, now + tonumber(ARGV[2]))
    save_pool()
    return {'queued', I(next_expiry(now)), more}
  end
  save_pool()
  local msg = delivered() or {'gone'}
  msg[#msg + 1] = more
  return msg
end)
