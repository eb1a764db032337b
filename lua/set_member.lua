-- set_member.lua: add a member or change its weight and cap; acts at once on ranking and
-- limits, never revokes live leases, fails its queued requests a lowered cap makes impossible.
-- KEYS[1]: the pool's key prefix "<prefix>:{pool}:" (lib.lua derives the key names)
-- ARGV[1] member  ARGV[2] weight  ARGV[3] max units: a number, "-" for no cap, "" to keep
-- returns: {"ok", more} (more = 1: call again to finish) | {"nopool"}
return run(function()
  local m, ws, mx = ARGV[1], ARGV[2], ARGV[3]
  local now = now_ms()
  if not load_pool() then return {'nopool'} end
  housekeeping(now)
  local r = rec_load(m) or rec_new(m, now)
  touch(r, now)  -- service so far accrues at the old weight
  if r.kind == 'removed' then r.max = nil end
  r.kind = 'set'
  r.ws, r.w = ws, tonumber(ws)
  if mx == '-' then r.max = nil elseif mx ~= '' then r.max = tonumber(mx) end
  local more = 0
  if r.max and r.wait > 0 then
    local entries = redis.call('ZRANGEBYLEX', K_QUEUE, '[' .. m .. '\0', '(' .. m .. '\1', 'LIMIT', 0, MAX_GRANTS)
    local doomed = {}
    for _, e in ipairs(entries) do
      local _, _, units, _, id = parse_entry(e)
      if units > r.max then doomed[#doomed + 1] = {id, units} end
    end
    rec_save(r)
    for _, d in ipairs(doomed) do drop_waiter(d[1], now, 'err:invalid:' .. too_big_cap(d[2], m, r.max), 'failed') end
    if #entries == MAX_GRANTS and #doomed > 0 then more = 1 end
  else
    rec_save(r)
  end
  if housekeeping(now) then more = 1 end
  save_pool()
  return {'ok', more}
end)
