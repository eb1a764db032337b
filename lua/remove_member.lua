-- remove_member.lua: remove a member. Its queued requests fail with a clear error; its live
-- leases run on to release or expiry (the record stays, marked removed, until they end).
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] member
-- returns: {"ok", more} (more = 1: call again to finish) | {"nomember"} | {"nopool"}
return run(function()
  local m = ARGV[1]
  local now = now_ms()
  if not load_pool() then return {'nopool'} end
  local r = rec_load(m)
  if not r or r.kind == 'removed' then return {'nomember'} end
  reclaim(now)  -- first: expired leases count as service only up to their expiry
  local entries = redis.call('ZRANGEBYLEX', K_QUEUE, '[' .. m .. '\0', '(' .. m .. '\1', 'LIMIT', 0, MAX_GRANTS)
  for _, e in ipairs(entries) do
    local id = select(5, parse_entry(e))
    drop_waiter(id, now, 'err:removed:member ' .. m .. ' was removed from the pool', 'failed')
  end
  if #entries == MAX_GRANTS then
    housekeeping(now)
    save_pool()
    return {'ok', 1}
  end
  r = rec_load(m)  -- nil if it joined by acquiring and, now idle, was forgotten
  if r then
    r.kind = 'removed'
    rec_save(r)
  end
  housekeeping(now)
  save_pool()
  return {'ok', 0}
end)
