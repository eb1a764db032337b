-- lib.lua: state, records and the grant rule shared by every wshare script.
-- Not a script on its own. The loader builds one Redis Functions library from it and every
-- operation file (loaded once per server; each call then runs only its operation), or, on a
-- Redis without Functions, puts it in front of each operation file as an EVAL script.
-- Each call starts with bind(KEYS), which sets the key names and resets per-call state.
--
-- Every script receives one key, KEYS[1] = "<prefix>:{pool}:", and derives the pool's key
-- names from it (all inside the pool's {hash tag}, so every script touches one Cluster slot):
--   pool     hash  capacity, default_weight, held, waiting, token, seq, vclock, avg_hold,
--                  next_exp, next_dead (lower bounds on the earliest lease expiry and the
--                  earliest waiter deadline: reclaim looks at :expiry and :alive only once
--                  the clock has reached them)
--   members  hash  member -> "w=<weight> max=<n|-> held=<n> wait=<n> vs=<S> vt=<ms> head=<seq>:<units> kind=<k>"
--                          kind: set (added by set_weight), auto (joined by acquiring; forgotten
--                          when idle and owing no service), removed (record kept until its leases end)
--   leases   hash  lease id -> "<units>:<token>:<ttl ms>:<granted ms>:<member>"
--   expiry   zset  lease id -> expiry (ms, Redis server clock)
--   ready    zset  "<head seq, 16 digits>\0<member>" -> S, members whose head request fits their cap
--   active   zset  member -> S, members holding or waiting
--   queue    zset  "<member>\0<seq, 16 digits>\0<units>\0<ttl ms>\0<id>" at score 0 (lex = FIFO per member)
--   waiters  hash  waiter id -> its queue entry
--   alive    zset  waiter id -> ms after which a silent waiter is presumed dead
--   sizes    zset  waiter id -> units asked (finds requests a resize made impossible)
--   parked   hash  waiter id -> member, for parked requests (no client blocks on them,
--                          e.g. RQ jobs): never purged; their grant or failure goes to handoff
--   handoff  list  ids of parked requests granted or failed, for their adapter to act on
--   stats    hash  "<counter>:<member>" -> count of events since the pool was created; counters:
--                          grants, releases, revocations, expirations (leases), queued, timeouts,
--                          cancels (gave up otherwise), failed (made impossible), purged (presumed dead)
--   wake:<id> list  the list a waiter blocks on
--
-- S ("vs") is a member's virtual service: the integral of held units dt / weight, in
-- unit-seconds. It is stored lazily (brought up to date at the member's own events), so a
-- stored S can only lag. Freed units go to the ready member with the lowest S: first_ready
-- brings the first-ranked member's S up to date until the first one is current (then it is
-- truly the lowest, since every other stored S is at most its true S); ties go to the
-- earliest head.

local K_POOL, K_MEMBERS, K_LEASES, K_EXPIRY, K_READY, K_ACTIVE, K_QUEUE, K_WAITERS
local K_ALIVE, K_SIZES, K_PARKED, K_HANDOFF, K_STATS, K_WAKE

local MAX_GRANTS = 100      -- grants per call; callers that can free more loop (configure)
local MAX_RECLAIM = 64      -- expired leases reclaimed per call
local MAX_PURGE = 64        -- dead waiters purged per call
local MAX_REFRESH = 16      -- stale S brought up to date per ranking decision
local CREDIT_PERIODS = 4    -- catch-up credit B = CREDIT_PERIODS * capacity * avg_hold (unit-seconds)
local HOLD_ALPHA = 0.02     -- smoothing of the average hold time
local NOTICE_MS = 60000     -- how long an undelivered failure notice waits for its waiter

local NONE = 9007199254740991  -- next_exp / next_dead when there is no lease / no waiter (2^53 - 1)
local P                     -- the pool's state, loaded by load_pool()
local P0                    -- the saved fields as last read or written, so save_pool writes only changes
local SAVES = 0              -- member records written so far in this call
local RECS                  -- member records read or written in this call: m -> record, false if none

-- Start a call: this call's key names, fresh per-call state (a Functions library keeps its
-- upvalues between calls).
local BASE = nil             -- the base the key names were last derived from
local function bind(keys)
  local b = keys[1]
  if b ~= BASE then
    K_POOL, K_MEMBERS, K_LEASES, K_EXPIRY = b .. 'pool', b .. 'members', b .. 'leases', b .. 'expiry'
    K_READY, K_ACTIVE, K_QUEUE, K_WAITERS = b .. 'ready', b .. 'active', b .. 'queue', b .. 'waiters'
    K_ALIVE, K_SIZES, K_PARKED, K_HANDOFF = b .. 'alive', b .. 'sizes', b .. 'parked', b .. 'handoff'
    K_STATS, K_WAKE = b .. 'stats', b .. 'wake:'
    BASE = b
  end
  P, P0, SAVES, RECS = nil, nil, 0, {}
end

-- Raise a wshare error; main() turns it into an error reply "WSHARE <code> <message>".
local function abort(code, msg)
  error({wshare = code .. ' ' .. msg})
end

-- Numbers as text: I for integers, F for exact floats. Redis turns a Lua number passed to
-- redis.call into '%.17g' text itself (exact, but slower than '%d' for integers), so integer
-- arguments go as I(x) and constants as strings; floats go as numbers.
local function I(x) return string.format('%d', x) end
local function F(x) return string.format('%.17g', x) end
local MAX_RECLAIM_S, MAX_PURGE_S = '64', '64'  -- MAX_RECLAIM, MAX_PURGE as text (no string library at load time)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Count one event of a member (O(1): one HINCRBY of "<counter>:<member>" in the stats hash).
local function count(counter, m)
  redis.call('HINCRBY', K_STATS, counter .. ':' .. m, '1')
end

-- A number from stored state, checked, or a clear error naming where it came from.
local function num(s, what, lo)
  local x = tonumber(s)
  if x == nil or x - x ~= 0 or (lo ~= nil and x < lo) then  -- x - x: NaN for NaN and infinities
    abort('corrupt', 'pool state: ' .. what .. ' is ' .. tostring(s))
  end
  return x
end

local POOL_FIELDS = {'capacity', 'default_weight', 'held', 'waiting', 'token', 'seq', 'vclock', 'avg_hold',
                     'next_exp', 'next_dead'}
local SAVED_FIELDS = {'held', 'waiting', 'token', 'seq', 'vclock', 'avg_hold', 'next_exp', 'next_dead'}
local SAVED_INT = {held = true, waiting = true, token = true, seq = true, next_exp = true, next_dead = true}

local function load_pool()
  local v = redis.call('HMGET', K_POOL, unpack(POOL_FIELDS))
  if not v[1] then return nil end
  P = {
    capacity = num(v[1], 'capacity', 0), dw = v[2], held = num(v[3], 'held', 0),
    waiting = num(v[4], 'waiting', 0), token = num(v[5], 'token', 0), seq = num(v[6], 'seq', 0),
    vclock = num(v[7], 'vclock'), avg_hold = num(v[8], 'avg_hold', 0),
    -- Missing (a pool written by an older version): 0, so the first reclaim looks and sets them.
    next_exp = tonumber(v[9]) or 0, next_dead = tonumber(v[10]) or 0,
  }
  num(P.dw, 'default_weight', 0)
  P0 = {held = P.held, waiting = P.waiting, token = P.token, seq = P.seq, vclock = P.vclock,
        avg_hold = P.avg_hold, next_exp = P.next_exp, next_dead = P.next_dead}
  return P
end

local function init_pool(capacity, dw)
  -- Tokens start at the server clock in microseconds, so a pool deleted and created again,
  -- or lost with a Redis without persistence, still hands out larger tokens than before
  -- (every grant takes a script call, and script calls take more than a microsecond).
  local t = redis.call('TIME')
  P = {capacity = capacity, dw = dw, held = 0, waiting = 0, token = tonumber(t[1]) * 1000000 + tonumber(t[2]),
       seq = 0, vclock = 0, avg_hold = 0, next_exp = 0, next_dead = 0}  -- 0: the first reclaim looks
  P0 = {}
  redis.call('HSET', K_POOL, 'capacity', I(capacity), 'default_weight', dw)
end

-- Write the fields of the pool's hash that changed in this call.
local function save_pool()
  local args, n = {}, 0
  for _, f in ipairs(SAVED_FIELDS) do
    local v = P[f]
    if v ~= P0[f] then
      if SAVED_INT[f] then args[n + 1], args[n + 2] = f, I(v) else args[n + 1], args[n + 2] = f, v end
      n = n + 2
      P0[f] = v
    end
  end
  if n > 0 then redis.call('HSET', K_POOL, unpack(args, 1, n)) end
end

-- Run main, mapping wshare errors (and anything unexpected) to clean error replies.
local function run(main)
  local ok, res = pcall(main)
  if ok then return res end
  -- Keep the pool's counters in step with whatever was written before the error.
  if P then pcall(save_pool) end
  if type(res) == 'table' and res.wshare then return redis.error_reply('WSHARE ' .. res.wshare) end
  if type(res) == 'table' and res.err then return redis.error_reply(res.err) end
  return redis.error_reply('WSHARE internal ' .. tostring(res))
end

-- Member records -------------------------------------------------------------------------

local function ready_entry(r)
  if r.wait > 0 and (not r.max or r.held + r.hu <= r.max) then
    return string.format('%016d', r.hseq) .. '\0' .. r.m
  end
  return false
end

-- A member's record; nil if it has none. Within one call every load of a member returns the
-- same table, so a record changed and saved by one step is the one the next step sees.
local function rec_load(m)
  local cached = RECS[m]
  if cached ~= nil then return cached or nil end
  local s = redis.call('HGET', K_MEMBERS, m)
  if not s then
    RECS[m] = false
    return nil
  end
  local w, mx, held, wait, vs, vt, hseq, hu, kind = string.match(s,
    '^w=(%S+) max=(%S+) held=(%d+) wait=(%d+) vs=(%S+) vt=(%d+) head=(%d+):(%d+) kind=(%l+)$')
  if kind ~= 'set' and kind ~= 'auto' and kind ~= 'removed' then w = nil end
  if not w then abort('corrupt', 'member ' .. m .. ' record is ' .. s) end
  local r = {m = m, ws = w, w = num(w, 'weight of ' .. m, 0), held = tonumber(held), wait = tonumber(wait),
             vs = num(vs, 'vs of ' .. m), vt = tonumber(vt), hseq = tonumber(hseq), hu = tonumber(hu),
             kind = kind}
  if r.w <= 0 then abort('corrupt', 'weight of ' .. m .. ' is ' .. w) end
  if mx ~= '-' then r.max = num(mx, 'max_units of ' .. m, 0) end
  r.rentry = ready_entry(r)
  r.was_active = r.held > 0 or r.wait > 0
  r.vs0 = r.vs
  RECS[m] = r
  return r
end

local function rec_new(m, now)
  return {m = m, ws = P.dw, w = tonumber(P.dw), held = 0, wait = 0, vs = P.vclock, vt = now,
          hseq = 0, hu = 0, kind = 'auto', rentry = false, was_active = false}
end

local function rec_need(m)
  local r = rec_load(m)
  if not r then abort('corrupt', 'member ' .. m .. ' has leases or waiters but no record') end
  return r
end

-- Bring S up to date: the member held r.held units from r.vt until now.
local function touch(r, now)
  if now > r.vt then
    if r.held > 0 then r.vs = r.vs + r.held / r.w * (now - r.vt) / 1000 end
    r.vt = now
  end
end

local function lowest(zkey)
  local t = redis.call('ZRANGE', zkey, '0', '0', 'WITHSCORES')
  if t[1] then return tonumber(t[2]) end
  return nil
end

-- The most credit (unit-seconds / weight) a member may hold below the others when it starts
-- competing again: B / weight, B = CREDIT_PERIODS * capacity * average hold time.
local function credit(r)
  local hold = P.avg_hold
  if hold <= 0 then hold = 1 end  -- no lease has ended yet: assume 1 s
  return CREDIT_PERIODS * P.capacity * hold / r.w
end

-- Write a record back and keep the ready and active indexes in step with it.
local function rec_save(r)
  SAVES = SAVES + 1
  local e = ready_entry(r)
  if e and not r.rentry then
    -- It becomes ready: a new request, or its head fits its cap again. While its own cap held
    -- it back its S fell behind; like a member that starts asking, it keeps at most B/weight
    -- of that credit below the lowest ready member, so it cannot then take the whole pool.
    local ref = lowest(K_READY)
    if ref then
      local floor = ref - credit(r)
      if floor > r.vs then r.vs = floor end
    end
  end
  if r.rentry and r.rentry ~= e then redis.call('ZREM', K_READY, r.rentry) end
  -- The indexes hold S as of the last save: rewrite them only if it moved.
  if e and (e ~= r.rentry or r.vs ~= r.vs0) then redis.call('ZADD', K_READY, r.vs, e) end
  r.rentry = e
  local active = r.held > 0 or r.wait > 0
  if active then
    if not r.was_active or r.vs ~= r.vs0 then redis.call('ZADD', K_ACTIVE, r.vs, r.m) end
  elseif r.was_active then
    redis.call('ZREM', K_ACTIVE, r.m)
    -- The member went idle: remember how far the pool's virtual time has come, so members
    -- returning from idle later are placed there and bank no credit for their idle time.
    local ref = lowest(K_ACTIVE) or r.vs
    if ref > P.vclock then P.vclock = ref end
  end
  r.was_active = active
  if not active and (r.kind == 'removed' or (r.kind == 'auto' and r.vs <= P.vclock)) then
    redis.call('HDEL', K_MEMBERS, r.m)
    RECS[r.m] = false
  else
    RECS[r.m] = r
    local mx = '-'
    if r.max then mx = I(r.max) end
    redis.call('HSET', K_MEMBERS, r.m, string.format('w=%s max=%s held=%d wait=%d vs=%.17g vt=%d head=%d:%d kind=%s',
      r.ws, mx, r.held, r.wait, r.vs, r.vt, r.hseq, r.hu, r.kind))
  end
  r.vs0 = r.vs
end

-- A member with no queued request starts asking (rule 3b/3c). Idle members are placed at the
-- pool's virtual time; busy ones keep at most B/weight of credit below the lowest waiter.
-- wref: the lowest S among ready members (nil if none).
local function place(r, wref)
  if r.held == 0 then
    local ref = wref or lowest(K_ACTIVE)
    if ref and ref > P.vclock then P.vclock = ref end
    -- max(own S, lowest waiting S); with nobody waiting, the pool's virtual time.
    local floor = wref or P.vclock
    if floor > r.vs then r.vs = floor end
  else
    -- Nobody waiting: bound the credit against the other members using the pool.
    local ref = wref
    if not ref then
      local t = redis.call('ZRANGE', K_ACTIVE, '0', '1', 'WITHSCORES')
      if t[1] and t[1] ~= r.m then ref = tonumber(t[2]) elseif t[3] then ref = tonumber(t[4]) end
    end
    if ref then
      local floor = ref - credit(r)
      if floor > r.vs then r.vs = floor end
    end
  end
end

-- The ready member that ranks first, its S up to date (nil if none is ready). Stored S lags
-- only for members holding units; once the first-ranked one is current it is truly first.
local function first_ready(now)
  for _ = 1, MAX_REFRESH do
    local top = redis.call('ZRANGE', K_READY, '0', '0')[1]
    if not top then return nil end
    local r = rec_need(string.sub(top, 18))
    if r.held == 0 or now <= r.vt then return r end
    touch(r, now)
    rec_save(r)
  end
  local top = redis.call('ZRANGE', K_READY, '0', '0')[1]
  if not top then return nil end
  return rec_need(string.sub(top, 18))
end

-- Queue entries ----------------------------------------------------------------------------

local function parse_entry(e)
  local m, seq, units, ttl, id = string.match(e, '^(.*)%z(%d+)%z(%d+)%z(%d+)%z(.+)$')
  if not m then abort('corrupt', 'queue entry ' .. e) end
  return m, tonumber(seq), tonumber(units), tonumber(ttl), id
end

-- The first n ('1', '2') queue entries of member m, in FIFO order.
local function entries(m, n)
  return redis.call('ZRANGEBYLEX', K_QUEUE, '[' .. m .. '\0', '(' .. m .. '\1', 'LIMIT', '0', n)
end

-- Make entry e (nil: none) the member's head request.
local function head_from(r, e)
  if e then
    local _, seq, units = parse_entry(e)
    r.hseq, r.hu = seq, units
  else
    r.hseq, r.hu = 0, 0
  end
end

local function set_head(r)
  head_from(r, entries(r.m, '1')[1])
end

-- Remove a queue entry from every index (not from the member's counters). Returns true if
-- it was a parked request: a blocking waiter is listed in :alive, a parked one in :parked.
local function unqueue(e, id)
  redis.call('ZREM', K_QUEUE, e)
  redis.call('HDEL', K_WAITERS, id)
  redis.call('ZREM', K_SIZES, id)
  if redis.call('ZREM', K_ALIVE, id) == 1 then return false end
  return redis.call('HDEL', K_PARKED, id) == 1
end

local function notify(id, msg, ttl)
  local k = K_WAKE .. id
  redis.call('RPUSH', k, msg)
  redis.call('PEXPIRE', k, I(ttl))
end

-- Take a waiter out of the queue (gave up, purged, failed). notice: message for its wake list;
-- counter: the event it counts as (timeouts, cancels, purged, failed).
local function drop_waiter(id, now, notice, counter)
  local e = redis.call('HGET', K_WAITERS, id)
  if not e then return false end
  local m, seq, units = parse_entry(e)
  local parked = unqueue(e, id)
  local r = rec_need(m)
  touch(r, now)
  r.wait = r.wait - units
  P.waiting = P.waiting - units
  if r.hseq == seq then set_head(r) end
  rec_save(r)
  count(counter, m)
  if notice then
    if parked then redis.call('RPUSH', K_HANDOFF, id) else notify(id, notice, NOTICE_MS) end
  end
  return true
end

-- Leases -------------------------------------------------------------------------------------

-- Lease id now expires at exp (ms): granted or renewed, perhaps with a shorter ttl.
local function expire_at(id, exp)
  redis.call('ZADD', K_EXPIRY, I(exp), id)
  if exp < P.next_exp then P.next_exp = exp end
end

local function grant(r, id, units, ttl, now, wake)
  touch(r, now)
  r.held = r.held + units
  P.held = P.held + units
  P.token = P.token + 1
  count('grants', r.m)
  local exp = now + ttl
  redis.call('HSET', K_LEASES, id, string.format('%d:%d:%d:%d:', units, P.token, ttl, now) .. r.m)
  expire_at(id, exp)
  if wake then notify(id, 'ok:' .. I(P.token) .. ':' .. I(exp), ttl) end
  return P.token, exp
end

local function parse_lease(s)
  local units, token, ttl, granted, m = string.match(s, '^(%d+):(%d+):(%d+):(%d+):(.*)$')
  if not units then abort('corrupt', 'lease record ' .. s) end
  return tonumber(units), tonumber(token), tonumber(ttl), tonumber(granted), m
end

-- End a lease (release, revoke or expiry). expired: the expiry time (ms) of an expired lease,
-- up to which its units count as service; revoked: an operator ended it. Returns false if
-- there was no such lease.
local function end_lease(id, now, expired, revoked)
  local s = redis.call('HGET', K_LEASES, id)
  if not s then return false end
  local units, _, _, granted, m = parse_lease(s)
  redis.call('HDEL', K_LEASES, id)
  redis.call('ZREM', K_EXPIRY, id)
  local r = rec_need(m)
  touch(r, expired or now)
  r.held = math.max(r.held - units, 0)
  P.held = math.max(P.held - units, 0)
  if not expired then
    local held_for = (now - granted) / 1000
    if P.avg_hold == 0 then P.avg_hold = held_for  -- the first sample
    else P.avg_hold = P.avg_hold + HOLD_ALPHA * (held_for - P.avg_hold) end
  end
  rec_save(r)
  count(expired and 'expirations' or (revoked and 'revocations' or 'releases'), m)
  return true
end

-- Hand freed units to waiting requests in rank order, waking each granted waiter.
-- Returns true if it stopped at MAX_GRANTS with more perhaps grantable.
local function dispatch(now)
  for _ = 1, MAX_GRANTS do
    local free = P.capacity - P.held
    if free <= 0 or P.waiting <= 0 then return false end
    local r = first_ready(now)
    if not r then return false end
    if r.hu > free then return false end  -- the head is never overtaken (rule 4)
    local es = entries(r.m, '2')  -- the head request and the one after it, which becomes the head
    local e = es[1]
    if not e then abort('corrupt', 'member ' .. r.m .. ' is ready with an empty queue') end
    local _, _, units, ttl, id = parse_entry(e)
    local parked = unqueue(e, id)
    r.wait = r.wait - units
    P.waiting = P.waiting - units
    grant(r, id, units, ttl, now, not parked)
    if parked then redis.call('RPUSH', K_HANDOFF, id) end
    head_from(r, es[2])
    rec_save(r)
  end
  return true
end

-- Reclaim expired leases and dead waiters (bounded batches). Scripts do this before anything
-- else touches a member, so an expired lease counts as service only up to its expiry.
-- Returns true if it stopped at its batch limit.
-- The indexes are read only once the clock has reached their lower bound (next_exp,
-- next_dead), which most calls have not: then nothing is due and the call skips the reads.
local function reclaim(now)
  local more = false
  if now >= P.next_exp then
    local expired = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', I(now), 'WITHSCORES', 'LIMIT', '0', MAX_RECLAIM_S)
    for i = 1, #expired, 2 do
      local id = expired[i]
      if not end_lease(id, now, tonumber(expired[i + 1])) then redis.call('ZREM', K_EXPIRY, id) end
    end
    more = #expired == 2 * MAX_RECLAIM
    if not more then  -- all due are reclaimed: the bound becomes the earliest expiry left
      P.next_exp = lowest(K_EXPIRY) or NONE
    end
  end
  if P.waiting > 0 and now >= P.next_dead then
    local dead = redis.call('ZRANGEBYSCORE', K_ALIVE, '-inf', I(now), 'LIMIT', '0', MAX_PURGE_S)
    for _, id in ipairs(dead) do
      if not drop_waiter(id, now, false, 'purged') then redis.call('ZREM', K_ALIVE, id) end
    end
    if #dead < MAX_PURGE then
      P.next_dead = lowest(K_ALIVE) or NONE
    end
  end
  return more
end

-- False if lease ``id`` exists and has expired (whether it exists is for the caller to
-- find out). After reclaim, with now before the bound, no lease has expired; past the bound
-- (reclaim stopped at its batch limit) the lease's own expiry tells.
local function unexpired(id, now)
  if now < P.next_exp then return true end
  local exp = redis.call('ZSCORE', K_EXPIRY, id)
  return not exp or tonumber(exp) > now
end

-- A waiter that must check in by ``deadline`` (ms) was added or checked in.
local function alive_until(id, deadline)
  redis.call('ZADD', K_ALIVE, I(deadline), id)
  if deadline < P.next_dead then P.next_dead = deadline end
end

-- Reclaim, then hand off what is free. Returns true if either stopped at its batch limit.
local function housekeeping(now)
  local more = reclaim(now)
  return dispatch(now) or more
end

-- Milliseconds until the earliest lease expiry (-1: no lease): when waiters re-check.
local function next_expiry(now)
  local exp = lowest(K_EXPIRY)
  if exp then return math.max(exp - now, 0) end
  return -1
end

-- The oversized-request message shared by acquire, configure and wait.
local function too_big_capacity(units)
  return 'request for ' .. I(units) .. ' units can never be met: pool capacity is ' .. I(P.capacity)
end

local function too_big_cap(units, m, max)
  return 'request for ' .. I(units) .. ' units can never be met: member ' .. m .. ' has max_units ' .. I(max)
end
