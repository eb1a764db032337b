-- acquire.lua: grant units at once, or queue a blocking request in the pool's fair queue.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] member  ARGV[2] units  ARGV[3] ttl ms  ARGV[4] id (lease id if granted, waiter id if queued)
-- ARGV[5] mode: "try" (never queue), "wait" (a client blocks on its wake list) or "park" (nobody
--         blocks: never purged, its grant or failure is listed in handoff)
-- ARGV[6] ms the waiter counts as alive without a heartbeat ("wait" only)
-- ARGV[7] capacity to create a missing pool with ("" = the pool must exist; Lock uses "1")
-- ARGV[8] "1" if the caller may repeat this id (adapters): a live lease with the id is returned,
--         a queued request with the id stays as it is (idempotent); "" for fresh random ids
-- returns: {"ok", token, expires ms} (and, for a repeated id of a live lease: units, member, ttl ms)
--          | {"busy"} | {"queued", ms until the next lease expiry or -1}
--          | {"nopool"} | {"invalid", message}
return run(function()
  local m, units, ttl, id, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
  local now = now_ms()
  if not load_pool() then
    if ARGV[7] == '' then return {'nopool'} end
    init_pool(tonumber(ARGV[7]), '1')
  end
  -- Validate before anything changes.
  if P.capacity > 0 and units > P.capacity then return {'invalid', too_big_capacity(units)} end
  local r = rec_load(m)
  if r and r.kind ~= 'removed' and r.max and units > r.max then return {'invalid', too_big_cap(units, m, r.max)} end

  housekeeping(now)
  if ARGV[8] == '1' then
    local exp = redis.call('ZSCORE', K_EXPIRY, id)
    if exp and tonumber(exp) > now then
      local units_held, token, ttl_held, _, holder = parse_lease(redis.call('HGET', K_LEASES, id))
      save_pool()
      return {'ok', I(token), I(tonumber(exp)), I(units_held), holder, I(ttl_held)}
    elseif exp then
      end_lease(id, now, tonumber(exp))
    end
    if redis.call('HEXISTS', K_WAITERS, id) == 1 then
      save_pool()
      if mode == 'try' then return {'busy'} end
      return {'queued', I(next_expiry(now))}
    end
  end
  if SAVES > 0 then r = rec_load(m) end  -- housekeeping may have changed the member
  if not r then
    r = rec_new(m, now)
  elseif r.kind == 'removed' then  -- removed while holding leases: it comes back as a new member
    touch(r, now)
    r.kind, r.ws, r.w, r.max = 'auto', P.dw, tonumber(P.dw), nil
  end
  touch(r, now)

  if r.wait == 0 then
    local wref = nil
    if P.waiting > 0 then
      local first = first_ready(now)
      if first then wref = first.vs end
    end
    place(r, wref)
    if units <= P.capacity - P.held and (not r.max or r.held + units <= r.max) then
      if not wref or r.vs < wref then  -- nobody waiting ranks ahead (rule 2)
        local token, exp = grant(r, id, units, ttl, now, false)
        rec_save(r)
        save_pool()
        return {'ok', I(token), I(exp)}
      end
    end
  end
  if mode == 'try' then
    rec_save(r)
    dispatch(now)  -- r's new S may have let another waiter rank first
    save_pool()
    return {'busy'}
  end

  P.seq = P.seq + 1
  local e = m .. '\0' .. string.format('%016d', P.seq) .. '\0' .. I(units) .. '\0' .. I(ttl) .. '\0' .. id
  redis.call('ZADD', K_QUEUE, '0', e)
  redis.call('HSET', K_WAITERS, id, e)
  if mode == 'park' then
    redis.call('HSET', K_PARKED, id, m)
  else
    alive_until(id, now + tonumber(ARGV[6]))
  end
  redis.call('ZADD', K_SIZES, I(units), id)
  count('queued', m)
  if r.wait == 0 then r.hseq, r.hu = P.seq, units end
  r.wait = r.wait + units
  P.waiting = P.waiting + units
  rec_save(r)
  dispatch(now)  -- r's new S may have let another waiter rank first
  save_pool()
  return {'queued', I(next_expiry(now))}
end)
