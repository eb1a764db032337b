"""The checker of the chaos soak (workers/soak.py): reads the JSON lines that every worker
process and the orchestrator wrote and counts violations of the pool's rules.

Clocks. Workers and orchestrator record their own wall clock (time.time(), seconds); lease
times (``exp_ms``, a snapshot's ``server_ms`` and lease ``granted`` field) are the Redis
server's clock in ms. A grant's server time is exact: g = expires_at - ttl as the grant
script set it. Client times are put on the server clock with the offset the orchestrator
measured (``clock_offset_ms``; 0 on loopback, where both read the same kernel clock).

Every rule below is checked only from what was observed, so it cannot fire on a correct run:

capacity, member-cap
    A lease is *surely live* from its grant g until e_lo, a lower bound of its end: the
    smallest of its last recorded expiry, the moment a release that may have ended it was
    sent, and the moment a revocation that ended it was sent; raised to the last snapshot
    that saw it live. Leases are taken in token (server) order; at each grant the units of
    the leases surely live at that instant (e_lo >= g + 1 ms, since g is truncated to the
    ms), this one included, must not exceed the capacity in force, nor the member's
    max_units. A shrink or a lowered cap revokes nothing, so units held may exceed a new
    capacity; what is checked is that no grant pushes them above the capacity in force when
    it is made. Inside a resize's (or cap change's) window [request sent, reply received]
    either value may be in force, and the larger one counts.
token-unique, token-order, token-causal, lease-identity
    Tokens (recorded and seen in snapshots) are unique; sorted by token, server grant times
    never decrease; a lease returned to its client before another was even requested has
    the smaller token; a lease seen in a snapshot has the token, units, member and grant
    time its holder recorded (renewal keeps the token).
after-end
    No lease ends twice (release or revocation returning True at most once), and no renewal,
    release or revocation succeeds when sent after the lease expired (its last recorded
    expiry + 1 ms) or after a revocation or release of it had returned True.
kill-units
    For every SIGKILLed process, each lease it may have held (recorded, not known released)
    is absent from every snapshot taken later than kill + ttl + margin: its expiry was not
    extended after the kill and its units were reclaimed (counters then shows they went
    back to the pool). Verified only when such a snapshot exists (the count is reported).
stale-lease
    No snapshot during the run holds a lease whose expiry is more than margin in the past:
    expired units go back to the pool (the next operation on the pool reclaims them, and
    blocked waiters wake at the earliest expiry).
stale-waiter
    No waiter entry is seen longer than max_timeout + 1 s + margin after it was first seen:
    a waiter leaves at its timeout, and a dead one is purged 1 s after its deadline.
counters
    In every snapshot (one MULTI read of the raw keys) the pool's ``held`` is the sum of the
    units of the lease records, each member's ``held`` the sum of its leases, ``waiting``
    the sum of the members' queued units, and the expiry index lists exactly the leases.
fairness
    Judged in every calm window (no orchestrator action: the soak schedules one per phase,
    after a settle time), from its first snapshot after any leases granted before a shrink
    are gone to its last, if saturated (units queued in >= 80% of its snapshots) and never
    above capacity. Each member's time-averaged units held (leases' intervals [g, e_lo]) is
    within fair_rel * due + fair_abs + lump of what rule 3 makes it due: the weighted
    water-filling of the units in use, starting from each member's virtual service S in the
    first snapshot (due_service). With equal S that is exactly
    wshare_redis.status.fair_shares (reported as "fair"); where the chaos before the window
    left a member ahead or behind in S (dead waiters are granted, replacements start late),
    the others catch up first, which the plain fair share does not model. Demand is each
    member's average held + queued units in the window, capped by max_units (a member
    asking for up to u units at a time may stay up to u - 1 below its cap: a request that
    would overshoot it waits). "lump" is the largest share one lease contributed: service
    comes in whole leases, and a member granted a long lease at the lowest S keeps it while
    its S passes the others'. fair_rel and fair_abs default to 0.1 and 0.25 units: wide for
    a noisy 2-core machine (runs show errors of a few hundredths of a unit; lump is
    typically 0.2-0.4), narrow enough that shares ignoring the weights fail.
credit
    "due" follows the engine's S wherever it is; this rule checks that S never carries more
    credit than rule 3 documents. In the same windows no member may hold more than its plain
    fair share by more than the bounded catch-up: (held - fair) x window <= B + (fair_rel *
    fair + fair_abs + lump) x window, with B = 4 x capacity x the pool's average hold time
    (unit-seconds, as of the window's first snapshot).
final
    After all workers stopped and every killed holder's ttl and every dead waiter's deadline
    had passed (plus margin), one status call leaves no lease, waiter, queued unit or held
    unit in the pool, its raw keys hold none either, no wake list lacks an expiry; after
    Pool.delete() a SCAN of the soak's prefix finds no key at all.
worker
    No worker recorded an unexpected exception, every worker not killed by the orchestrator
    exited 0, every killed one died of SIGKILL, and none had to be killed at the end.
"""
from __future__ import annotations

import heapq
import json
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from wshare_redis.status import fair_shares

#: Messages kept per rule (all violations are counted).
KEEP_PER_RULE = 8
#: A calm window is saturated if units were queued in at least this share of its snapshots.
SATURATED = 0.8
#: Snapshots a calm window needs to be judged.
MIN_WINDOW_SNAPSHOTS = 5
#: README rule 3: catch-up credit is at most this many times capacity x average hold time.
CREDIT_PERIODS = 4


@dataclass
class Report:
    counts: dict[str, Any] = field(default_factory=dict)
    violations: Counter = field(default_factory=Counter)
    messages: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    fairness: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())

    @property
    def ok(self) -> bool:
        return self.total_violations == 0

    def violate(self, rule: str, message: str) -> None:
        self.violations[rule] += 1
        if len(self.messages[rule]) < KEEP_PER_RULE:
            self.messages[rule].append(message)

    def format(self) -> str:
        c = self.counts
        lines = [
            f"processes {c.get('processes', 0)} (restarts {c.get('restarts', 0)}), "
            f"operations {c.get('operations', 0)}, grants {c.get('grants', 0)} "
            f"(+{c.get('unrecorded_leases', 0)} seen only in snapshots; "
            f"{c.get('grants_filling_capacity', 0)} filled the capacity exactly)",
            f"kills {c.get('kills', 0)} (holding {c.get('kills_holding', 0)}, waiting "
            f"{c.get('kills_waiting', 0)}), killed leases checked {c.get('kill_checks', 0)}, "
            f"units back after a kill within {c.get('max_units_back_s', 0):.2f}s (ttl {c.get('ttl_s', 0):g}s)",
            f"reweights {c.get('reweights', 0)}, resizes {c.get('resizes', 0)} (up {c.get('resizes_up', 0)}, "
            f"down {c.get('resizes_down', 0)}), revocations {c.get('revocations', 0)} "
            f"(of {c.get('revoke_calls', 0)} calls)",
            f"timeouts {c.get('timeouts', 0)}, busy try_acquire {c.get('busy', 0)}, invalid {c.get('invalid', 0)}, "
            f"renewals {c.get('renewals', 0)}, lost leases {c.get('lost', 0)}, snapshots {c.get('snapshots', 0)}",
            f"fairness windows checked {c.get('fair_windows', 0)} (skipped {c.get('fair_skipped', 0)}), "
            f"worst share error {c.get('fair_worst', 0):.2f} of tolerance, worst catch-up "
            f"{c.get('credit_worst', 0):.2f} of its bound",
            f"violations {self.total_violations}" + (f": {dict(self.violations)}" if self.violations else ""),
        ]
        for rule, msgs in self.messages.items():
            for m in msgs:
                lines.append(f"  [{rule}] {m}")
        return "\n".join(lines)


def load_records(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every record of a soak's run directory. A line cut short by a SIGKILL is skipped."""
    out = []
    for path in sorted(Path(run_dir).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


# -- model -------------------------------------------------------------------------------------

@dataclass
class LeaseInfo:
    id: str
    member: str
    units: int
    token: int
    g: float                 # server grant time, ms
    ttl: float               # ms
    exp: float               # last known expiry, ms (server)
    proc: Optional[int] = None
    t_req: Optional[float] = None   # client ms: request sent
    t_ret: Optional[float] = None   # client ms: grant returned
    recorded: bool = True
    ops: list[tuple] = field(default_factory=list)     # (kind, t_req, t_ret, result, exp)
    seen: list[tuple[float, float]] = field(default_factory=list)  # (snapshot server ms, exp there)
    e_lo: float = 0.0


class Timeline:
    """A limit the orchestrator changed at known times (None: no limit). Inside a change's
    window [request sent, reply received] either value may be in force: the larger counts."""

    def __init__(self, initial: Optional[int]) -> None:
        self.initial = initial
        self.changes: list[tuple[float, float, Optional[int]]] = []

    def add(self, start: float, end: float, new: Optional[int]) -> None:
        self.changes.append((start, end, new))
        self.changes.sort(key=lambda c: c[0])

    def at(self, x: float) -> Optional[int]:
        cur = self.initial
        for start, end, new in self.changes:
            if x < start:
                break
            if x <= end:
                return None if cur is None or new is None else max(cur, new)
            cur = new
        return cur

    def during(self, a: float, b: float) -> Optional[int]:
        """The largest limit in force at any instant of [a, b]."""
        vals = [self.at(a), self.at(b)] + [self.at(s) for s, _, _ in self.changes if a <= s <= b]
        return None if any(v is None for v in vals) else max(v for v in vals if v is not None)


def _ms(t: Optional[float], off: float) -> Optional[float]:
    return None if t is None else t * 1000.0 + off


# -- the checker -------------------------------------------------------------------------------

def check(records: Iterable[dict[str, Any]], *, margin_s: Optional[float] = None, fair_rel: float = 0.1,
          fair_abs: float = 0.25, require_final: bool = True) -> Report:
    """Check a soak's records (see the module docstring for the rules); returns the Report."""
    rep = Report()
    recs = list(records)
    orch = [r for r in recs if r.get("src") == "orch"]
    work = [r for r in recs if r.get("src") != "orch"]
    config = next((r for r in orch if r["ev"] == "config"), None)
    if config is None:
        rep.violate("final", "no config record: the orchestrator did not start")
        return rep
    off = float(config.get("clock_offset_ms", 0.0))
    margin = float(margin_s if margin_s is not None else config.get("margin_s", 2.0)) * 1000
    max_timeout = float(config.get("max_timeout_s", 5.0)) * 1000
    c = rep.counts
    c["ttl_s"] = config.get("ttl_s", 0)

    capacity = Timeline(config["capacity"])
    caps = {m: Timeline(v.get("max_units")) for m, v in config["members"].items()}
    for r in orch:
        if r["ev"] == "resize":
            capacity.add(_ms(r["t_req"], off), _ms(r["t"], off), r["capacity"])
        elif r["ev"] == "reweight":
            caps.setdefault(r["member"], Timeline(None)).add(_ms(r["t_req"], off), _ms(r["t"], off),
                                                             r["max_units"])

    snapshots = sorted((r for r in orch if r["ev"] == "snapshot"), key=lambda s: s["server_ms"])
    snap_times = [s["server_ms"] for s in snapshots]
    leases = _leases(work, orch, snapshots, off, rep)

    _check_tokens(leases, rep)
    _check_after_end(leases, rep)
    _check_capacity(leases, capacity, caps, rep)
    _check_snapshots(snapshots, leases, margin, max_timeout, rep)
    _check_kills(work, orch, leases, snap_times, margin, off, rep)
    _check_fairness(orch, snapshots, leases, capacity, off, fair_rel, fair_abs, rep)
    _check_workers(work, orch, rep)
    _check_final(orch, rep, require_final)

    ev = Counter(r["ev"] for r in work)
    revokes = [r for r in orch if r["ev"] == "revoke"]
    resizes = [r for r in orch if r["ev"] == "resize"]
    spawns = [r for r in orch if r["ev"] == "spawn"]
    c.update(
        processes=len(spawns), restarts=sum(1 for r in spawns if r.get("replaces") is not None),
        grants=ev["grant"], timeouts=ev["timeout"], busy=ev["busy"], invalid=ev["invalid"],
        renewals=ev["renew"], lost=sum(1 for r in work if r["ev"] == "renew" and not r["ok"]) +
        sum(1 for r in work if r["ev"] == "released" and not r["ended"]),
        operations=ev["grant"] + ev["timeout"] + ev["busy"] + ev["invalid"] + ev["error"] + ev["renew"] +
        ev["release"],
        reweights=sum(1 for r in orch if r["ev"] == "reweight"), resizes=len(resizes),
        resizes_up=sum(1 for r in resizes if r["capacity"] > r["old"]),
        resizes_down=sum(1 for r in resizes if r["capacity"] < r["old"]),
        revoke_calls=len(revokes), revocations=sum(1 for r in revokes if r.get("ended")),
        snapshots=len(snapshots), unrecorded_leases=sum(1 for L in leases.values() if not L.recorded),
    )
    return rep


def _leases(work: list[dict], orch: list[dict], snapshots: list[dict], off: float,
            rep: Report) -> dict[str, LeaseInfo]:
    leases: dict[str, LeaseInfo] = {}
    for r in work:
        if r["ev"] != "grant":
            continue
        if r["id"] in leases:
            rep.violate("token-unique", f"lease id {r['id']} granted twice")
            continue
        leases[r["id"]] = LeaseInfo(
            id=r["id"], member=r["member"], units=r["units"], token=r["token"], g=r["exp_ms"] - r["ttl_ms"],
            ttl=r["ttl_ms"], exp=r["exp_ms"], proc=r["proc"], t_req=_ms(r["t_req"], off), t_ret=_ms(r["t"], off))
    for r in work:
        L = leases.get(r.get("id", ""))
        if L is None or r["ev"] == "grant":
            continue
        if r["ev"] == "renew":
            L.ops.append(("renew", _ms(r["t_req"], off), _ms(r["t"], off), r["ok"], r.get("exp_ms")))
        elif r["ev"] == "release":  # sent; the result may never have been recorded (killed)
            L.ops.append(("release", _ms(r["t"], off), None, None, None))
        elif r["ev"] == "released":
            L.ops = [o for o in L.ops if not (o[0] == "release" and o[2] is None and o[1] == _ms(r["t_req"], off))]
            L.ops.append(("release", _ms(r["t_req"], off), _ms(r["t"], off), r["ended"], None))
    for s in snapshots:
        T = s["server_ms"]
        for lid, (units, token, ttl, granted, exp, member) in s["leases"].items():
            L = leases.get(lid)
            if L is None:
                L = leases[lid] = LeaseInfo(id=lid, member=member, units=units, token=token, g=granted, ttl=ttl,
                                            exp=exp if exp is not None else granted + ttl, recorded=False)
            elif (L.token, L.units, L.member, L.g) != (token, units, member, granted):
                rep.violate("lease-identity", f"lease {lid[:8]} recorded as token {L.token}, {L.units} units of "
                            f"{L.member} granted at {L.g:.0f}; a snapshot shows token {token}, {units} units of "
                            f"{member} granted at {granted}")
            if exp is not None:
                L.seen.append((T, exp))
                if not L.recorded:
                    L.exp = max(L.exp, exp)
    for r in orch:
        if r["ev"] == "revoke" and r["id"] in leases:
            leases[r["id"]].ops.append(("revoke", _ms(r["t_req"], off), _ms(r["t"], off), r.get("ended"), None))
    for L in leases.values():
        L.ops.sort(key=lambda o: o[1])
        exp = L.exp if not L.recorded else max([L.exp] + [o[4] for o in L.ops if o[0] == "renew" and o[3]])
        L.exp = exp
        ends = [exp] + [o[1] for o in L.ops if o[0] in ("release", "revoke") and o[3] is not False]
        L.e_lo = max([min(ends)] + [T for T, x in L.seen if x > T])
    return leases


def _check_tokens(leases: dict[str, LeaseInfo], rep: Report) -> None:
    dup = [t for t, n in Counter(L.token for L in leases.values()).items() if n > 1]
    for t in dup:
        rep.violate("token-unique", f"token {t} was granted to {sum(L.token == t for L in leases.values())} leases")
    order = sorted(leases.values(), key=lambda L: L.token)
    for a, b in zip(order, order[1:]):
        if b.g < a.g:
            rep.violate("token-order", f"token {b.token} granted at server ms {b.g:.0f}, before token {a.token} "
                        f"at {a.g:.0f}")
    # A lease returned to its client before another lease was requested must have the smaller token.
    low_ret, low_id = float("inf"), ""
    for L in reversed(order):
        if L.t_req is None:
            continue
        if low_ret < L.t_req:
            rep.violate("token-causal", f"lease {low_id[:8]} was returned at {low_ret:.1f} ms with a larger "
                        f"token than lease {L.id[:8]} (token {L.token}) requested later, at {L.t_req:.1f} ms")
        if L.t_ret is not None and L.t_ret < low_ret:
            low_ret, low_id = L.t_ret, L.id


def _check_after_end(leases: dict[str, LeaseInfo], rep: Report) -> None:
    for L in leases.values():
        exp, ended_at, ends = L.g + L.ttl, None, 0
        for kind, t_req, t_ret, result, new_exp in L.ops:
            if result is not True:
                continue
            late = t_req > exp + 1 or (ended_at is not None and t_req > ended_at)
            if late:
                why = "it expired" if t_req > exp + 1 else "it had ended"
                rep.violate("after-end", f"{kind} of lease {L.id[:8]} (token {L.token}) sent at {t_req:.0f} ms "
                            f"succeeded after {why} (expiry {exp:.0f} ms)")
            if kind == "renew":
                exp = new_exp
            else:
                ends += 1
                if ended_at is None or (t_ret is not None and t_ret < ended_at):
                    ended_at = t_ret
        if ends > 1:
            rep.violate("after-end", f"lease {L.id[:8]} (token {L.token}) ended {ends} times "
                        "(releases and revocations returning True)")


def _check_capacity(leases: dict[str, LeaseInfo], capacity: Timeline, caps: dict[str, Timeline],
                    rep: Report) -> None:
    live: list[tuple[float, int, LeaseInfo]] = []
    total, by_member = 0, Counter()
    full = 0  # grants that filled the capacity exactly: the check was tight there
    for n, L in enumerate(sorted(leases.values(), key=lambda L: L.token)):
        while live and live[0][0] < L.g + 1:
            _, _, A = heapq.heappop(live)
            total -= A.units
            by_member[A.member] -= A.units
        total += L.units
        by_member[L.member] += L.units
        cap = capacity.during(L.g, L.g + 1)
        full += total == cap
        if cap is not None and total > cap:
            rep.violate("capacity", f"grant of token {L.token} ({L.units} units to {L.member} at server ms "
                        f"{L.g:.0f}) made {total} units surely held, capacity {cap}")
        mcap = caps[L.member].during(L.g, L.g + 1) if L.member in caps else None
        if mcap is not None and by_member[L.member] > mcap:
            rep.violate("member-cap", f"grant of token {L.token} made {by_member[L.member]} units surely held by "
                        f"{L.member}, max_units {mcap}")
        heapq.heappush(live, (L.e_lo, n, L))
    rep.counts["grants_filling_capacity"] = full


def _check_snapshots(snapshots: list[dict], leases: dict[str, LeaseInfo], margin: float, max_timeout: float,
                     rep: Report) -> None:
    first_seen: dict[str, float] = {}
    waiter_bound = max_timeout + 1000 + margin
    for s in snapshots:
        T = s["server_ms"]
        held = Counter()
        for lid, (units, _token, _ttl, _g, exp, member) in s["leases"].items():
            held[member] += units
            if exp is None:
                rep.violate("counters", f"snapshot at {T}: lease {lid[:8]} has no expiry entry")
            elif exp < T - margin:
                rep.violate("stale-lease", f"snapshot at {T}: lease {lid[:8]} of {member} expired {T - exp:.0f} "
                            "ms ago and still holds its units")
        for lid in s.get("expiry_only", []):
            rep.violate("counters", f"snapshot at {T}: expiry entry {lid[:8]} has no lease record")
        if sum(held.values()) != s["held"]:
            rep.violate("counters", f"snapshot at {T}: pool held {s['held']} but its leases hold "
                        f"{sum(held.values())} units")
        members = s["members"]
        for m in set(held) | set(members):
            mh = members[m][2] if m in members else 0
            if mh != held[m]:
                rep.violate("counters", f"snapshot at {T}: member {m} held {mh} but its leases hold {held[m]}")
        if sum(v[3] for v in members.values()) != s["waiting"]:
            rep.violate("counters", f"snapshot at {T}: pool waiting {s['waiting']} but members queue "
                        f"{sum(v[3] for v in members.values())} units")
        for wid in s["waiters"]:
            t0 = first_seen.setdefault(wid, T)
            if T - t0 > waiter_bound:
                rep.violate("stale-waiter", f"waiter {wid[:8]} still queued {(T - t0) / 1000:.1f}s after it "
                            f"was first seen (bound {waiter_bound / 1000:.1f}s)")


def _thread_state(events: list[dict], t: float) -> tuple[bool, bool]:
    """(holding, waiting): what a process's threads were doing at client time t."""
    state: dict[Any, str] = {}
    for r in events:
        if r["t"] > t or "th" not in r:
            continue
        e = r["ev"]
        if e == "req":
            state[r["th"]] = "waiting"
        elif e in ("grant", "release") or (e == "renew" and r["ok"]):
            state[r["th"]] = "holding"
        else:
            state[r["th"]] = "idle"
    return "holding" in state.values(), "waiting" in state.values()


def _check_kills(work: list[dict], orch: list[dict], leases: dict[str, LeaseInfo], snap_times: list[float],
                 margin: float, off: float, rep: Report) -> None:
    by_proc: dict[int, list[dict]] = defaultdict(list)
    for r in work:
        if "proc" in r and "t" in r:
            by_proc[r["proc"]].append(r)
    for evs in by_proc.values():
        evs.sort(key=lambda r: r["t"])
    leases_of: dict[int, list[LeaseInfo]] = defaultdict(list)
    for L in leases.values():
        if L.proc is not None:
            leases_of[L.proc].append(L)
    kills = [r for r in orch if r["ev"] == "kill" and not r.get("straggler")]
    checked, worst = 0, 0.0
    holding_kills = waiting_kills = 0
    for k in kills:
        holding, waiting = _thread_state(by_proc.get(k["proc"], []), k["t"])
        holding_kills += holding
        waiting_kills += waiting
        t_kill = _ms(k["t"], off)
        for L in leases_of.get(k["proc"], []):
            if L.g > t_kill or any(o[0] == "release" and o[3] is True for o in L.ops):
                continue
            deadline = t_kill + L.ttl + margin
            last_seen = max((T for T, _ in L.seen), default=None)
            if last_seen is not None and last_seen > deadline:
                rep.violate("kill-units", f"lease {L.id[:8]} ({L.units} units of {L.member}) of process "
                            f"{k['proc']} killed at {t_kill:.0f} ms is still held {(last_seen - t_kill) / 1000:.2f}s "
                            f"later (ttl {L.ttl / 1000:g}s + margin {margin / 1000:g}s)")
            i = bisect_right(snap_times, max(t_kill, last_seen or t_kill))
            if i < len(snap_times):
                worst = max(worst, snap_times[i] - t_kill)
                if snap_times[-1] > deadline:
                    checked += 1
    rep.counts.update(kills=len(kills), kills_holding=holding_kills, kills_waiting=waiting_kills,
                      kill_checks=checked, max_units_back_s=worst / 1000)


def due_service(total: float, weights: dict[str, float], limits: dict[str, float],
                start: dict[str, float]) -> dict[str, float]:
    """What rule 3 (freed units go to the member with the lowest S = integral of held / weight)
    gives, in the fluid limit, to members entering a window at virtual service ``start`` and
    asking for at most ``limits`` (unit-seconds) when ``total`` unit-seconds are served: S
    rises as one water level V, member m gets weight * (V - start[m]) up to its limit. With
    equal starting S this is exactly the weighted water-filling of fair_shares."""
    def served(level: float) -> dict[str, float]:
        return {m: min(limits[m], weights[m] * max(level - start[m], 0.0)) for m in weights}
    if total >= sum(limits.values()):
        return dict(limits)
    lo, hi = min(start.values(), default=0.0), max(start.values(), default=0.0) + total / max(
        min(weights.values(), default=1.0), 1e-9) + 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if sum(served(mid).values()) < total:
            lo = mid
        else:
            hi = mid
    return served(hi)


def _check_fairness(orch: list[dict], snapshots: list[dict], leases: dict[str, LeaseInfo], capacity: Timeline,
                    off: float, fair_rel: float, fair_abs: float, rep: Report) -> None:
    checked = skipped = 0
    worst = worst_credit = 0.0
    config = next(r for r in orch if r["ev"] == "config")
    units_max = {m: v.get("units_max", 1) for m, v in config["members"].items()}
    for w in (r for r in orch if r["ev"] == "window"):
        snaps = [s for s in snapshots if _ms(w["start"], off) <= s["server_ms"] <= _ms(w["end"], off)]
        row: dict[str, Any] = {"phase": w.get("phase"), "snapshots": len(snaps)}
        rep.fairness.append(row)
        cap = capacity.during(snaps[0]["server_ms"], snaps[-1]["server_ms"]) if snaps else None
        # Leases granted before a shrink may still hold more than the capacity: start after them.
        while snaps and cap is not None and snaps[0]["held"] > cap:
            snaps.pop(0)
        if len(snaps) < MIN_WINDOW_SNAPSHOTS:
            row["skip"] = "too few snapshots"
            skipped += 1
            continue
        a, b = snaps[0]["server_ms"], snaps[-1]["server_ms"]  # S is known at these instants
        span = (b - a) / 1000
        row["seconds"] = round(span, 2)
        if sum(1 for s in snaps if s["waiting"] > 0) < SATURATED * len(snaps):
            row["skip"] = "not saturated"
        elif cap is None or any(s["held"] > cap for s in snaps):
            row["skip"] = "held above capacity"
        if "skip" in row:
            skipped += 1
            continue
        achieved: Counter = Counter()
        lump = 0.0  # the most one lease added to a share: service comes in whole leases
        for L in leases.values():
            overlap = min(L.e_lo, b) - max(L.g, a)
            if overlap > 0:
                achieved[L.member] += L.units * overlap / (b - a)
                lump = max(lump, L.units * overlap / (b - a))
        members = snaps[0]["members"]
        weights = {m: v[0] for m, v in members.items()}
        demands = {}
        for m, v in members.items():
            d = sum(s["members"].get(m, [0, None, 0, 0])[2] + s["members"].get(m, [0, None, 0, 0])[3]
                    for s in snaps) / len(snaps)
            if v[1] is not None:
                # A request that would overshoot the cap waits, so a member asking for up to u
                # units at a time can be stuck up to u - 1 units below its cap.
                slack = units_max.get(m, 1) - 1
                d = min(d, min(max(achieved[m], v[1] - slack), v[1]))
            demands[m] = d
        used = sum(achieved.values())
        fair = fair_shares(used, weights, demands)
        start = {m: float(v[4]) if len(v) > 4 else 0.0 for m, v in members.items()}
        # Rule 3's bound on catch-up: B = 4 x capacity x average hold time, in unit-seconds.
        credit = CREDIT_PERIODS * cap * float(snaps[0].get("avg_hold", 0.0))
        # A member far behind the others catches up by at most B / weight: the engine raises
        # its S to within that of the lowest ready S whenever it starts competing again.
        # A member idle at the start (holding and asking nothing) is placed at the lowest S of
        # the active ones when it starts asking, so it has no catch-up coming either.
        active = {m: x for m, x in start.items() if members[m][2] or members[m][3]}
        floor = min(active.values(), default=min(start.values(), default=0.0))
        effective = {}
        for m, x in start.items():
            others = min((y for k, y in active.items() if k != m), default=floor)
            effective[m] = max(x, others - credit / weights[m]) if m in active else max(x, floor)
        due = {m: x / span for m, x in due_service(used * span, weights, {m: d * span for m, d in demands.items()},
                                                   effective).items()}
        row.update(capacity=cap, used=round(used, 2), lump=round(lump, 2), members={
            m: {"weight": weights[m], "max_units": members[m][1], "demand": round(demands[m], 2),
                "S0": round(start[m], 2), "held": round(achieved[m], 2), "fair": round(fair[m], 2),
                "due": round(due[m], 2)} for m in sorted(weights)})
        checked += 1
        row["credit_bound"] = round(credit, 2)
        for m in weights:
            excess = (achieved[m] - fair[m]) * span
            allowed = credit + (fair_rel * fair[m] + fair_abs + lump) * span
            worst_credit = max(worst_credit, excess / allowed)
            if excess > allowed:
                rep.violate("credit", f"phase {w.get('phase')}: {m} (weight {weights[m]:g}, max_units "
                            f"{members[m][1]}, S {start[m]:.2f} at the start, others' lowest "
                            f"{min((x for k, x in start.items() if k != m), default=0):.2f}) held {achieved[m]:.2f} "
                            f"units on average against a fair share of {fair[m]:.2f}: {excess:.1f} unit-seconds "
                            f"more in {span:.1f}s, beyond the catch-up bound {credit:.1f} (+ tolerance)")
        for m in weights:
            allowed = fair_rel * due[m] + fair_abs + lump
            err = abs(achieved[m] - due[m])
            worst = max(worst, err / allowed)
            if err > allowed:
                rep.violate("fairness", f"phase {w.get('phase')}: {m} (weight {weights[m]:g}, max_units "
                            f"{members[m][1]}, S {start[m]:.2f} at the start) held {achieved[m]:.2f} units on "
                            f"average, due {due[m]:.2f} (fair share {fair[m]:.2f}; tolerance {allowed:.2f}; "
                            f"{used:.2f} units in use of {cap})")
    rep.counts.update(fair_windows=checked, fair_skipped=skipped, fair_worst=worst, credit_worst=worst_credit)


def _check_workers(work: list[dict], orch: list[dict], rep: Report) -> None:
    for r in work:
        if r["ev"] == "error":
            rep.violate("worker", f"process {r.get('proc')} thread {r.get('th')}: {r.get('msg')}")
    killed = {r["proc"] for r in orch if r["ev"] == "kill"}
    for r in orch:
        if r["ev"] == "kill" and r.get("straggler"):
            rep.violate("worker", f"process {r['proc']} (pid {r['pid']}) did not stop by itself")
        elif r["ev"] == "exit":
            want = -9 if r["proc"] in killed else 0
            if r["code"] != want:
                rep.violate("worker", f"process {r['proc']} (pid {r['pid']}) exited with {r['code']}, not {want}")
        elif r["ev"] == "orch-error":
            rep.violate("worker", f"orchestrator {r.get('what')}: {r.get('msg')}")


def _check_final(orch: list[dict], rep: Report, required: bool) -> None:
    final = next((r for r in orch if r["ev"] == "final"), None)
    if final is None:
        if required:
            rep.violate("final", "no final record: the soak did not finish")
        return
    st = final["status"]
    if st["held"] or st["waiting"] or st["leases"]:
        rep.violate("final", f"after the workers stopped: held {st['held']}, waiting {st['waiting']}, "
                    f"leases {st['leases']}")
    for key, size in final["raw"].items():
        if size:
            rep.violate("final", f"after the workers stopped the raw key {key} still has {size} entries")
    for m, v in final["members"].items():
        if v[2] or v[3]:
            rep.violate("final", f"after the workers stopped member {m} has held {v[2]}, queued {v[3]}")
    for key in final["wake_without_expiry"]:
        rep.violate("final", f"wake list {key} has no expiry")
    for key in final["after_delete"]:
        rep.violate("final", f"key {key} left after Pool.delete()")
