-- wait.lua: a blocked waiter checks in (its wake list timed out): keeps it alive, reclaims
-- expired leases, and tells it whether it was granted, failed, or is still queued.
-- KEYS: the pool's keys, as listed in lib.lua
-- ARGV[1] waiter id  ARGV[2] ms the waiter counts as alive from now
-- returns: {"queued", ms until the next lease expiry or -1} | {"wake", message from its wake list}
--          | {"gone"} (purged as dead: ask again) | {"nopool"}
return run(function()
  local id = ARGV[1]
  local now = now_ms()
  local function delivered()
    local msg = redis.call('LPOP', K_WAKE .. id)
    if msg then return {'wake', msg} end
    return nil
  end
  if not load_pool() then return delivered() or {'nopool'} end
  housekeeping(now)
  local e = redis.call('HGET', K_WAITERS, id)
  if e then
    -- A resize or a lowered cap may have made this request impossible since it queued.
    local m, _, units = parse_entry(e)
    local r = rec_need(m)
    local why = nil
    if P.capacity > 0 and units > P.capacity then why = too_big_capacity(units)
    elseif r.max and units > r.max then why = too_big_cap(units, m, r.max) end
    if why then
      drop_waiter(id, now, false)
      dispatch(now)
      save_pool()
      return {'wake', 'err:invalid:' .. why}
    end
    redis.call('ZADD', K_ALIVE, I(now + tonumber(ARGV[2])), id)
    save_pool()
    return {'queued', I(next_expiry(now))}
  end
  save_pool()
  return delivered() or {'gone'}
end)
