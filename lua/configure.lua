-- configure.lua: create a pool or change its capacity and default weight; idempotent.
-- Never revokes live leases; fails queued requests the new capacity makes impossible.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] capacity  ARGV[2] default weight ("" = keep; 1 for a new pool)
-- returns: {"ok", more} where more = 1 if work is left for another call (large batches)
return run(function()
  local capacity, dw = tonumber(ARGV[1]), ARGV[2]
  local now = now_ms()
  if load_pool() then
    P.capacity = capacity
    if dw ~= '' then P.dw = dw end
    redis.call('HSET', K_POOL, 'capacity', I(capacity), 'default_weight', P.dw)
  else
    if dw == '' then dw = '1' end
    init_pool(capacity, dw)
  end
  local more = 0
  if reclaim(now) then more = 1 end  -- first: expired leases count as service only up to their expiry
  if capacity > 0 then
    local ids = redis.call('ZRANGEBYSCORE', K_SIZES, '(' .. I(capacity), '+inf', 'LIMIT', 0, MAX_GRANTS)
    for _, id in ipairs(ids) do
      local e = redis.call('HGET', K_WAITERS, id)
      local units = 0
      if e then units = select(3, parse_entry(e)) end
      drop_waiter(id, now, 'err:invalid:' .. too_big_capacity(units), 'failed')
      redis.call('ZREM', K_SIZES, id)
    end
    if #ids == MAX_GRANTS then more = 1 end
  end
  if housekeeping(now) then more = 1 end
  save_pool()
  return {'ok', more}
end)
