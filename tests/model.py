"""A pure-Python reference model of one wshare pool: the rules of the README ("The rules, in
plain words") as plain code over plain data, holding exactly the state the Lua engine keeps in
Redis, so tests/test_model.py can compare every reply and the whole state after every call.

Each operation takes the argument strings the engine's script receives (ARGV) and ``now``,
the server clock in ms, and returns the reply the script should give. The model keeps what
the engine stores (capacity, weights, S, leases, queue, deadlines); what the engine keeps as
indexes (ready, active, sizes, waiters, heads, the pool's held and waiting counters) is
derived here from that, so the engine's indexes are checked against the truth.

Covered: capacity and resizes, weights and the default weight, per-member caps (max_units),
ranking by virtual service S with its placement and credit rules, FIFO per member and the
head that is never overtaken, lease expiry at the TTL with service counted up to expiry,
dead-waiter purge, failure notices, fencing tokens, removed members and auto members
forgotten when idle.
Not covered (the model raises NotModelled): parked requests (RQ), caller-chosen repeatable
ids, pools created by acquire (Lock), pool deletion; nor corrupt state, and the batch limits
only as far as the tests go (far below them).

S is stored lazily, as lib.lua documents: a member's S is brought up to date at its own
events, so a stored S can only lag. The rules the model states over that storage:

- Reclaim first. Every operation reclaims expired leases and dead waiters before anything
  else touches a member, so an expired lease counts as service exactly up to its expiry.
  The model charges each lease up to min(now, its expiry) whenever it brings an S up to
  date (``charge_to_expiry``), which is the README's rule whatever the order of events; the
  engine reaches the same figures by reclaiming first.
- Exact ranking (``first_ready``). Freed units go to the ready member with the lowest S: the
  first-ranked by stored S (ties: earliest head) is brought up to date if it holds units and
  its S is older than now, and the ranking is taken again, at most MAX_REFRESH times; then
  whatever ranks first. acquire takes that member's S as the lowest waiting S.
- Credit clamp on becoming ready. A member whose record goes from not ready to ready (a new
  request, or its head fits its cap again) keeps at most credit(r) = 4 * capacity * average
  hold / weight below the lowest stored S among the ready members (``clamp_on_ready``).
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

CREDIT_PERIODS = 4      # catch-up credit B = CREDIT_PERIODS * capacity * avg_hold (unit-seconds)
HOLD_ALPHA = 0.02       # smoothing of the average hold time
NOTICE_MS = 60_000      # how long a failure notice waits on its waiter's wake list
MAX_GRANTS = 100        # batch limits of one call: the model reports "more" like the engine,
MAX_RECLAIM = 64        # but the tests never come near them
MAX_PURGE = 64
MAX_REFRESH = 16        # stale S brought up to date per ranking decision


class NotModelled(Exception):
    """An engine path this model deliberately leaves out (see the module docstring)."""


@dataclass
class Member:
    """A member record: what lua/lib.lua stores under the member's name."""

    name: str
    weight: str                 # the decimal text set_weight or default_weight gave ("2", "0.5")
    max_units: Optional[int]
    held: int = 0               # units of its live leases
    wait: int = 0               # units of its queued requests
    vs: float = 0.0             # S: virtual service, unit-seconds per weight (stored lazily)
    vt: int = 0                 # ms up to which vs is brought up to date
    kind: str = "auto"          # set (set_weight), auto (joined by acquiring), removed
    was_active: bool = field(default=False, compare=False)  # as last stored (not part of the record)
    rentry: bool = field(default=False, compare=False)      # had a ready entry as last stored

    @property
    def w(self) -> float:
        return float(self.weight)

    @property
    def active(self) -> bool:
        return self.held > 0 or self.wait > 0


@dataclass(frozen=True)
class Request:
    """A queued request (its queue entry)."""

    member: str
    seq: int
    units: int
    ttl: int
    id: str


@dataclass
class Grant:
    """A live lease: its record and its expiry (ms)."""

    units: int
    token: int
    ttl: int
    granted: int
    member: str
    expiry: int


def too_big_capacity(units: int, capacity: int) -> str:
    return f"request for {units} units can never be met: pool capacity is {capacity}"


def too_big_cap(units: int, member: str, max_units: int) -> str:
    return f"request for {units} units can never be met: member {member} has max_units {max_units}"


class PoolModel:
    """One pool. ``charge_to_expiry`` (the default): bringing S up to date charges each lease
    only up to its expiry, even one not yet reclaimed (the README's rule); False charges the
    units held until now, as lib.lua's touch() does, which gives the same figures only as
    long as expired leases are reclaimed before anything else touches a member.
    ``reclaim_first`` (the default): release, cancel, configure and remove_member reclaim
    before their work and hand off after it; False is the engine before that change (work,
    then reclaim and hand-off)."""

    credit_periods = CREDIT_PERIODS
    max_refresh = MAX_REFRESH
    reclaim_first = True

    def __init__(self, *, charge_to_expiry: bool = True) -> None:
        self.exists = False
        self.capacity = 0
        self.default_weight = "1"
        self.token = 0
        self.seq = 0
        self.vclock = 0.0
        self.avg_hold = 0.0
        self.members: dict[str, Member] = {}        # stored records
        self.queue: dict[str, list[Request]] = {}   # per member, FIFO
        self.alive: dict[str, int] = {}             # waiter id -> ms after which it counts as dead
        self.leases: dict[str, Grant] = {}
        # waiter id -> [messages, ms of the key's expiry]; the key lives while now <= expiry + slack
        self.wake: dict[str, list[Any]] = {}
        self.wake_slack = 0          # the test tries -1, 0 and 1: key expiry is not ms-exact
        self.charge_to_expiry = charge_to_expiry
        self.tokens: list[int] = []  # tokens granted by the current call, in order
        self.events: Counter[str] = Counter()  # which rules the current call exercised (coverage)

    def clone(self) -> "PoolModel":
        return copy.deepcopy(self)

    # -- derived state ------------------------------------------------------------------------

    @property
    def held(self) -> int:
        return sum(g.units for g in self.leases.values())

    @property
    def waiting(self) -> int:
        return sum(q.units for reqs in self.queue.values() for q in reqs)

    def waiter(self, wid: str) -> Optional[Request]:
        for reqs in self.queue.values():
            for q in reqs:
                if q.id == wid:
                    return q
        return None

    def head(self, m: str) -> Optional[Request]:
        reqs = self.queue.get(m)
        return reqs[0] if reqs else None

    def is_ready(self, r: Member) -> bool:
        """Waiting, and its head request fits its cap: it competes for free units."""
        head = self.head(r.name)
        return r.wait > 0 and head is not None and (r.max_units is None or r.held + head.units <= r.max_units)

    def ranking(self) -> list[Member]:
        """Ready members by stored S, ties to the earliest head: the engine's ready index."""
        ready = [r for r in self.members.values() if self.is_ready(r)]
        return sorted(ready, key=lambda r: (r.vs, self.queue[r.name][0].seq))

    def first_ready(self, now: int) -> Optional[Member]:
        """The ready member with the lowest S (rule 3), its S up to date. Every stored S is at
        most the true one, so once the first-ranked member's S is current it is truly the
        lowest; a stale first one is brought up to date (and saved) and the ranking taken
        again, at most max_refresh times; then whatever ranks first."""
        for _ in range(self.max_refresh):
            ranked = self.ranking()
            if not ranked:
                return None
            top = ranked[0]
            if top.held == 0 or now <= top.vt:
                return self.load(top.name)
            r = self.need(top.name)
            self.touch(r, now)
            self.events["stale S brought up to date before ranking"] += 1
            self.save(r)
        self.events["ranking refresh limit reached"] += 1
        ranked = self.ranking()
        return self.load(ranked[0].name) if ranked else None

    def lowest_ready(self, exclude: str) -> Optional[float]:
        """The lowest stored S in the ready index (``exclude``: a member saved right now, which
        has no entry there yet)."""
        values = [r.vs for r in self.members.values() if r.name != exclude and self.is_ready(r)]
        return min(values) if values else None

    def credit(self, r: Member) -> float:
        """B / weight: the most credit a member may keep below the others when it starts
        competing; B = 4 * capacity * average hold (1 s before any lease ended)."""
        hold = self.avg_hold if self.avg_hold > 0 else 1
        return self.credit_periods * self.capacity * hold / r.w

    def lowest_active(self, exclude: Optional[str] = None) -> Optional[float]:
        values = [r.vs for r in self.members.values() if r.active and r.name != exclude]
        return min(values) if values else None

    # -- member records -----------------------------------------------------------------------

    def load(self, m: str) -> Optional[Member]:
        """A working copy of a stored record (changes count once save() stores them)."""
        r = self.members.get(m)
        if r is None:
            return None
        c = copy.copy(r)
        c.was_active = r.active
        return c

    def need(self, m: str) -> Member:
        r = self.load(m)
        if r is None:
            raise AssertionError(f"model: member {m} has leases or waiters but no record")
        return r

    def new_member(self, m: str, now: int) -> Member:
        # New (or forgotten and back): placed at the pool's virtual time, no credit (rule 3).
        return Member(m, self.default_weight, None, vs=self.vclock, vt=now, kind="auto")

    def clamp_on_ready(self, r: Member) -> None:
        """A member becoming ready (a new request, or its head fits its cap again) keeps at most
        credit(r) below the lowest stored S of the ready members: while its own cap held it
        back its S fell behind, and it must not then take the whole pool."""
        ref = self.lowest_ready(exclude=r.name)
        if ref is not None:
            floor = ref - self.credit(r)
            if floor > r.vs:
                r.vs = floor
                self.events["S clamped on becoming ready"] += 1

    def save(self, r: Member) -> None:
        ready = self.is_ready(r)
        if ready and not r.rentry:
            self.clamp_on_ready(r)
        r.rentry = ready
        self.members[r.name] = r
        if not r.active and r.was_active:
            # Going idle: the pool's virtual time moves up to the lowest S still in use (or this
            # member's), so nobody coming back from idle later banks credit for idle time.
            ref = self.lowest_active(exclude=r.name)
            if ref is None:
                ref = r.vs
            if ref > self.vclock:
                self.vclock = ref
                self.events["vclock moved by a member going idle"] += 1
        if not r.active and (r.kind == "removed" or (r.kind == "auto" and r.vs <= self.vclock)):
            # Removed members go once their leases end; auto members once idle and owing no service.
            del self.members[r.name]
            self.events[f"{r.kind} member forgotten"] += 1
        r.was_active = r.active

    def touch(self, r: Member, now: int) -> None:
        """Bring S up to date: S grows by held units / weight over time."""
        if now > r.vt:
            if self.charge_to_expiry:
                unit_ms = sum(g.units * max(0, min(now, g.expiry) - r.vt)
                              for g in self.leases.values() if g.member == r.name)
                if unit_ms > 0:
                    r.vs = r.vs + unit_ms / r.w / 1000
            elif r.held > 0:
                r.vs = r.vs + r.held / r.w * (now - r.vt) / 1000
            r.vt = now

    def place(self, r: Member, wref: Optional[float]) -> None:
        """A member that starts asking (nothing queued). wref: lowest S among ready members."""
        if r.held == 0:
            # Idle: no credit for idle time; start at the lowest waiting S, or the pool's
            # virtual time when nobody waits.
            ref = wref if wref is not None else self.lowest_active()
            if ref is not None and ref > self.vclock:
                self.vclock = ref
            floor = wref if wref is not None else self.vclock
            if floor > r.vs:
                r.vs = floor
                self.events["idle member placed" + (" at lowest waiting S" if wref is not None else "")] += 1
        else:
            # Busy: at most B / weight of credit below the lowest waiter (or, with nobody
            # waiting, the lowest other member in use); B = 4 * capacity * average hold.
            ref = wref if wref is not None else self.lowest_active(exclude=r.name)
            self.events["busy member starts asking" + (" (no reference)" if ref is None else "")] += 1
            if ref is not None:
                floor = ref - self.credit(r)
                if floor > r.vs:
                    r.vs = floor
                    self.events["busy member's credit bounded"] += 1

    # -- wake lists ------------------------------------------------------------------------------

    def push_wake(self, wid: str, msg: str, now: int, ttl: int) -> None:
        entry = self.wake.get(wid)
        if entry is None or not self.wake_live(wid, now):
            entry = self.wake[wid] = [[], 0]
        entry[0].append(msg)
        entry[1] = now + ttl

    def wake_live(self, wid: str, now: int) -> bool:
        entry = self.wake.get(wid)
        return entry is not None and now <= entry[1] + self.wake_slack

    def pop_wake(self, wid: str, now: int) -> Optional[str]:
        if not self.wake_live(wid, now):
            self.wake.pop(wid, None)
            return None
        msgs = self.wake[wid][0]
        msg = msgs.pop(0)
        if not msgs:
            del self.wake[wid]
        return msg

    # -- leases and waiters ---------------------------------------------------------------------

    def grant(self, r: Member, req_id: str, units: int, ttl: int, now: int, wake: bool) -> tuple[int, int]:
        self.touch(r, now)
        r.held += units
        self.token += 1  # fencing: strictly increasing per pool (rule 7)
        self.tokens.append(self.token)
        self.leases[req_id] = Grant(units, self.token, ttl, now, r.name, now + ttl)
        if wake:
            self.events["queued request granted"] += 1
            self.push_wake(req_id, f"ok:{self.token}:{now + ttl}", now, ttl)
        return self.token, now + ttl

    def end_lease(self, lid: str, now: int, expired: Optional[int]) -> bool:
        """Release, revoke or expiry; an expired lease counts as service up to its expiry."""
        g = self.leases.get(lid)
        if g is None:
            return False
        r = self.need(g.member)
        self.touch(r, expired if expired is not None else now)
        del self.leases[lid]
        r.held = max(r.held - g.units, 0)
        self.events["lease expired" if expired is not None else "lease released"] += 1
        if expired is None:
            held_for = (now - g.granted) / 1000
            if self.avg_hold == 0:
                self.avg_hold = held_for
            else:
                self.avg_hold = self.avg_hold + HOLD_ALPHA * (held_for - self.avg_hold)
        self.save(r)
        return True

    def drop_waiter(self, wid: str, now: int, notice: Optional[str]) -> bool:
        q = self.waiter(wid)
        if q is None:
            return False
        self.queue[q.member].remove(q)
        if not self.queue[q.member]:
            del self.queue[q.member]
        del self.alive[wid]
        r = self.need(q.member)
        self.touch(r, now)
        r.wait -= q.units
        self.save(r)
        if notice is not None:
            self.events["request failed: " + notice.split(":")[1]] += 1
            self.push_wake(wid, notice, now, NOTICE_MS)
        return True

    def dispatch(self, now: int) -> bool:
        """Hand free units to waiters in rank order (rule 5); True if cut short by the batch."""
        for _ in range(MAX_GRANTS):
            free = self.capacity - self.held
            if free <= 0 or self.waiting <= 0:
                return False
            r = self.first_ready(now)
            if r is None:
                return False
            q = self.queue[r.name][0]
            if q.units > free:
                self.events["head waits for units (not overtaken)"] += 1
                return False  # the head is never overtaken (rule 4)
            self.queue[r.name].pop(0)
            if not self.queue[r.name]:
                del self.queue[r.name]
            del self.alive[q.id]
            r.wait -= q.units
            self.grant(r, q.id, q.units, q.ttl, now, True)
            self.save(r)
        return True

    def reclaim(self, now: int) -> bool:
        """Reclaim expired leases (in expiry order, each charged up to its expiry) and purge dead
        waiters (rules 6, 8); True if cut short by the batch. Every operation does this before
        anything else touches a member."""
        expired = sorted((g.expiry, lid) for lid, g in self.leases.items() if g.expiry <= now)[:MAX_RECLAIM]
        for exp, lid in expired:
            self.end_lease(lid, now, exp)
        if self.waiting > 0:
            dead = sorted((t, wid) for wid, t in self.alive.items() if t <= now)[:MAX_PURGE]
            for _, wid in dead:
                self.events["dead waiter purged"] += 1
                self.drop_waiter(wid, now, None)
        for wid in [w for w, e in self.wake.items() if now > e[1] + 2]:
            del self.wake[wid]  # certainly expired: forget it
        return len(expired) == MAX_RECLAIM

    def housekeeping(self, now: int) -> bool:
        """Reclaim, then hand off what is free (rule 5); True if either was cut short."""
        more = self.reclaim(now)
        return self.dispatch(now) or more

    def before_work(self, now: int) -> bool:
        """release, cancel, configure, remove_member: reclaim before touching any member."""
        return self.reclaim(now) if self.reclaim_first else False

    def after_work(self, now: int, more: bool) -> bool:
        """... and hand off after their work (reclaiming here too when not done before)."""
        if not self.reclaim_first:
            return self.housekeeping(now) or more
        return self.dispatch(now) or more

    def next_expiry(self, now: int) -> int:
        if not self.leases:
            return -1
        return max(min(g.expiry for g in self.leases.values()) - now, 0)

    # -- operations: one per script, named after it ----------------------------------------------

    def apply(self, op: str, argv: list[str], now: int, *, init_token: Optional[int] = None) -> Any:
        self.tokens = []
        if op == "configure":
            return self.configure(now, argv, init_token)
        if not self.exists:
            raise NotModelled(f"{op} on a missing pool")
        return getattr(self, "op_" + op)(now, argv)

    def configure(self, now: int, argv: list[str], init_token: Optional[int]) -> Any:
        capacity, dw = int(argv[0]), argv[1]
        if self.exists:
            self.capacity = capacity
            if dw != "":
                self.default_weight = dw
        else:
            if init_token is None:
                raise AssertionError("model: creating a pool needs its first token (server clock in us)")
            self.exists, self.capacity, self.default_weight = True, capacity, dw or "1"
            self.token, self.seq, self.vclock, self.avg_hold = init_token, 0, 0.0, 0.0
        more = int(self.before_work(now))
        if capacity > 0:
            # Queued requests a shrink made impossible fail with InvalidRequest (rule 1).
            doomed = sorted((q.units, q.id) for reqs in self.queue.values() for q in reqs if q.units > capacity)
            doomed = doomed[:MAX_GRANTS]
            for units, wid in doomed:
                self.drop_waiter(wid, now, "err:invalid:" + too_big_capacity(units, capacity))
            if len(doomed) == MAX_GRANTS:
                more = 1
        if self.housekeeping(now):  # reclaims nothing new when it reclaimed first
            more = 1
        return ["ok", more]

    def op_acquire(self, now: int, argv: list[str]) -> Any:
        m, units, ttl, rid, mode = argv[0], int(argv[1]), int(argv[2]), argv[3], argv[4]
        alive_ms = int(argv[5])
        if argv[7] == "1" or mode == "park":
            raise NotModelled("parked requests and repeatable ids")
        # Requests that can never be met fail before anything changes (rule 1).
        if self.capacity > 0 and units > self.capacity:
            return ["invalid", too_big_capacity(units, self.capacity)]
        r0 = self.members.get(m)
        if r0 is not None and r0.kind != "removed" and r0.max_units is not None and units > r0.max_units:
            return ["invalid", too_big_cap(units, m, r0.max_units)]
        self.housekeeping(now)
        r = self.load(m)
        if r is None:
            r = self.new_member(m, now)
        elif r.kind == "removed":  # removed while holding: comes back as a new auto member
            self.touch(r, now)
            self.events["removed member back as auto"] += 1
            r.kind, r.weight, r.max_units = "auto", self.default_weight, None
        self.touch(r, now)
        if r.wait == 0:  # FIFO per member: with a request queued, the new one queues behind it
            wref = None
            if self.waiting > 0:
                first = self.first_ready(now)
                wref = first.vs if first is not None else None
            self.place(r, wref)
            fits = units <= self.capacity - self.held and (r.max_units is None or r.held + units <= r.max_units)
            # Granted at once if it fits and nobody waiting ranks ahead (rule 2).
            if fits and wref is not None and r.vs >= wref:
                self.events["fits but a waiter ranks ahead"] += 1
            if fits and (wref is None or r.vs < wref):
                token, exp = self.grant(r, rid, units, ttl, now, False)
                self.save(r)
                return ["ok", str(token), str(exp)]
        if r.wait > 0:
            self.events["queued behind its own request"] += 1
        if mode == "try":
            self.save(r)
            self.dispatch(now)
            return ["busy"]
        self.seq += 1
        self.queue.setdefault(m, []).append(Request(m, self.seq, units, ttl, rid))
        self.alive[rid] = now + alive_ms
        r.wait += units
        self.save(r)
        self.dispatch(now)
        return ["queued", str(self.next_expiry(now))]

    def op_release(self, now: int, argv: list[str]) -> Any:
        more = self.before_work(now)
        g = self.leases.get(argv[0])
        ended = 1 if g is not None and g.expiry > now and self.end_lease(argv[0], now, None) else 0
        return [ended, int(self.after_work(now, more))]

    def op_renew(self, now: int, argv: list[str]) -> Any:
        g = self.leases.get(argv[0])
        if g is not None and g.expiry > now:
            g.expiry = now + int(argv[1])  # the token stays (rule 7); the record keeps its grant ttl
            result: list[Any] = ["ok", str(g.expiry)]
            self.events["lease renewed"] += 1
        else:
            result = ["lost"]
        return result + [int(self.housekeeping(now))]

    def op_wait(self, now: int, argv: list[str]) -> Any:
        wid, alive_ms = argv[0], int(argv[1])
        more = int(self.housekeeping(now))
        q = self.waiter(wid)
        if q is not None:
            r = self.members[q.member]
            why = None
            if self.capacity > 0 and q.units > self.capacity:
                why = too_big_capacity(q.units, self.capacity)
            elif r.max_units is not None and q.units > r.max_units:
                why = too_big_cap(q.units, q.member, r.max_units)
            if why is not None:
                self.drop_waiter(wid, now, None)
                if self.dispatch(now):
                    more = 1
                return ["wake", "err:invalid:" + why, more]
            self.alive[wid] = now + alive_ms  # checked in: alive for another window (rule 8)
            return ["queued", str(self.next_expiry(now)), more]
        msg = self.pop_wake(wid, now)
        return ["gone", more] if msg is None else ["wake", msg, more]

    def op_cancel(self, now: int, argv: list[str]) -> Any:
        wid = argv[0]
        more = self.before_work(now)
        if self.drop_waiter(wid, now, None):
            result: list[Any] = ["cancelled"]
        else:
            msg = self.pop_wake(wid, now)
            result = ["gone"] if msg is None else ["wake", msg]
        return result + [int(self.after_work(now, more))]

    def op_set_member(self, now: int, argv: list[str]) -> Any:
        m, ws, mx = argv
        self.housekeeping(now)
        r = self.load(m) or self.new_member(m, now)
        self.touch(r, now)  # service so far accrues at the old weight
        if r.kind == "removed":
            r.max_units = None
        r.kind, r.weight = "set", ws
        if mx == "-":
            r.max_units = None
        elif mx != "":
            r.max_units = int(mx)
        more = 0
        self.save(r)
        if r.max_units is not None and r.wait > 0:
            # Queued requests above a lowered cap fail (rule 1); live leases run on.
            entries = self.queue[m][:MAX_GRANTS]
            doomed = [q for q in entries if q.units > r.max_units]
            for q in doomed:
                self.drop_waiter(q.id, now, "err:invalid:" + too_big_cap(q.units, m, r.max_units))
            if len(entries) == MAX_GRANTS and doomed:
                more = 1
        if self.housekeeping(now):
            more = 1
        return ["ok", more]

    def op_remove_member(self, now: int, argv: list[str]) -> Any:
        m = argv[0]
        r0 = self.members.get(m)
        if r0 is None or r0.kind == "removed":
            return ["nomember"]
        self.before_work(now)
        entries = list(self.queue.get(m, []))[:MAX_GRANTS]
        for q in entries:
            self.drop_waiter(q.id, now, f"err:removed:member {m} was removed from the pool")
        if len(entries) == MAX_GRANTS:
            self.housekeeping(now)
            return ["ok", 1]
        r = self.load(m)  # None if it joined by acquiring and, now idle, was forgotten
        if r is not None:
            r.kind = "removed"  # its leases run on; the record goes when they end
            self.save(r)
        self.housekeeping(now)  # reclaims nothing new when it reclaimed first
        return ["ok", 0]

    def op_status(self, now: int, argv: list[str]) -> Any:
        self.housekeeping(now)
        return ["ok", str(now), self.pool_fields(), self.member_fields(), {}]

    def op_leases(self, now: int, argv: list[str]) -> Any:
        self.housekeeping(now)
        return ["ok", str(now), self.lease_fields(), {lid: g.expiry for lid, g in self.leases.items()}]

    def op_tick(self, now: int, argv: list[str]) -> Any:
        return int(self.housekeeping(now))

    def op_delete(self, now: int, argv: list[str]) -> Any:
        raise NotModelled("delete")

    # -- the state as Redis holds it (parsed) ----------------------------------------------------

    def pool_fields(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "default_weight": self.default_weight, "held": self.held,
                "waiting": self.waiting, "token": self.token, "seq": self.seq, "vclock": self.vclock,
                "avg_hold": self.avg_hold}

    def member_fields(self) -> dict[str, dict[str, Any]]:
        out = {}
        for m, r in self.members.items():
            h = self.head(m)
            out[m] = {"w": r.weight, "max": r.max_units, "held": r.held, "wait": r.wait, "vs": r.vs, "vt": r.vt,
                      "head": (h.seq, h.units) if h else (0, 0), "kind": r.kind}
        return out

    def lease_fields(self) -> dict[str, tuple[int, int, int, int, str]]:
        return {lid: (g.units, g.token, g.ttl, g.granted, g.member) for lid, g in self.leases.items()}

    def state(self) -> dict[str, Any]:
        """Everything the pool's keys hold, in the shape test_model.read_state() parses Redis into."""
        if not self.exists:
            return {}
        out_of_step = [m for m, r in self.members.items() if r.rentry != self.is_ready(r)]
        assert not out_of_step, f"model: ready flags of {out_of_step} out of step with the queue"
        entries = sorted(((q.member.encode(), q.seq), (q.member, q.seq, q.units, q.ttl, q.id))
                         for reqs in self.queue.values() for q in reqs)
        queue = [e for _, e in entries]
        return {
            "pool": self.pool_fields(),
            "members": self.member_fields(),
            "leases": self.lease_fields(),
            "expiry": {lid: g.expiry for lid, g in self.leases.items()},
            "queue": queue,
            "waiters": {e[4]: e for e in queue},
            "alive": dict(self.alive),
            "sizes": {e[4]: e[2] for e in queue},
            "ready": [((self.queue[r.name][0].seq, r.name), r.vs) for r in self.ranking()],
            "active": {r.name: r.vs for r in self.members.values() if r.active},
            "parked": {},
            "handoff": [],
        }
