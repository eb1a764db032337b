"""Model-based test: hypothesis drives random sequences of pool operations through the public
API against the Lua engine, and every script call the API makes is checked against the
reference model (tests/model.py): the reply, and the whole pool state read back from Redis.

Time. On fakeredis the server clock is this test's: the TIME command and key expiry read a
clock the test moves (patched into fakeredis in-process), so every call's ``now`` is exact.
On a real redis-server time flows: the server's TIME is read before each call and again
(inside the state read) after it, and the model is run for every ms in between; the call
must match the model at one of them. A wake list's key expiry is not ms-exact (Redis checks
it at the script's start, our model at the call's TIME), so at the expiry ms itself both
outcomes are accepted. Every other comparison is exact, but for fractions such as S (to 1e-9
relative, for rounding).
"""
from __future__ import annotations

import itertools
import re
import time
import uuid
from collections import Counter
from typing import Any, Callable, Optional

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from model import NotModelled, PoolModel
from wshare_redis import AcquireTimeout, InvalidRequest, Lease, LeaseLost, MemberRemoved, Pool
from wshare_redis.pool import UNCHANGED, _text, new_id

MEMBERS = ("a", "b", "c", "x")
WEIGHTS = (0.5, 1, 2, 3)
TTLS_MS = (1, 20, 300, 5_000, 30_000, 30_000)
ALIVE_MS = (5, 300, 10_000, 60_000)
REL_TOL = 1e-9
FAKE_JUMPS_MS = (25, 120, 1_500, 12_000)  # time_passes on the fake clock: leases and alive windows run out
REAL_JUMPS_MS = (5, 15, 30, 60)           # ... and on the real server, slept
COVERED_ON_FAKE = {  # rules and replies a random run must have gone through (counts: Backend.events)
    "acquire -> ok", "acquire -> busy", "acquire -> queued", "acquire -> invalid", "lease released",
    "lease renewed", "lease expired", "queued request granted", "dead waiter purged",
    "head waits for units (not overtaken)", "queued behind its own request", "vclock moved by a member going idle",
    "auto member forgotten", "removed member forgotten", "blocking acquire -> lease", "blocking acquire -> timeout",
    "renew -> lost", "cancel -> cancelled", "stale S brought up to date before ranking",
}  # rarer paths (the credit clamp, the refresh bound...) are played out by the *_scenario functions
COVERED_ON_REAL = {"lease expired", "lease released", "queued request granted", "dead waiter purged",
                   "head waits for units (not overtaken)"}


# -- the fakeredis clock ----------------------------------------------------------------------

class FakeClock:
    """Stands in for the ``time`` module inside fakeredis: ``time()`` is the server clock.

    Kept at half a millisecond past a whole ms, so a script's now (ms) is never a rounding
    question; it only moves when the test moves it."""

    START_US = 1_700_000_000_000_500

    def __init__(self) -> None:
        self.us = self.START_US

    def time(self) -> float:
        return self.us / 1_000_000

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    # fakeredis reads time.time() for TIME (server_mixin) and for every command's notion of
    # now, which decides key expiry (_socket._base); nothing else the scripts use reads it.
    import fakeredis._socket._base as socket_base
    import fakeredis.commands_mixins.server_mixin as server_mixin
    clock = FakeClock()
    monkeypatch.setattr(server_mixin, "time", clock)
    monkeypatch.setattr(socket_base, "time", clock)
    return clock


# -- reading the pool's keys back ---------------------------------------------------------------

_MEMBER = re.compile(r"^w=(\S+) max=(-|\d+) held=(\d+) wait=(\d+) vs=(\S+) vt=(\d+) head=(\d+):(\d+) kind=(\w+)$")
_LEASE = re.compile(r"^(\d+):(\d+):(\d+):(\d+):(.*)$", re.S)


def as_int(s: str) -> Any:
    """An integer field, or a marker naming the text (so a format change shows in the diff)."""
    return int(s) if re.fullmatch(r"-?\d+", s) else f"<not an integer: {s!r}>"


def as_float(s: str) -> Any:
    try:
        return float(s)
    except ValueError:
        return f"<not a number: {s!r}>"


def pairs(flat: list[Any]) -> dict[str, Any]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def parse_pool(h: dict[str, str]) -> dict[str, Any]:
    # next_exp and next_dead are lower bounds that let reclaim skip its reads, not pool state:
    # tests/invariants.py checks that they are bounds.
    out: dict[str, Any] = {k: h[k] for k in h if k not in ("capacity", "held", "waiting", "token", "seq",
                                                         "vclock", "avg_hold", "next_exp", "next_dead")}
    for k in ("capacity", "held", "waiting", "token", "seq"):
        if k in h:
            out[k] = as_int(h[k])
    for k in ("vclock", "avg_hold"):
        if k in h:
            out[k] = as_float(h[k])
    return out


def parse_member(s: str) -> Any:
    m = _MEMBER.match(s)
    if not m:
        return f"<malformed record {s!r}>"
    w, mx, held, wait, vs, vt, hseq, hu, kind = m.groups()
    return {"w": w, "max": None if mx == "-" else int(mx), "held": int(held), "wait": int(wait),
            "vs": as_float(vs), "vt": int(vt), "head": (int(hseq), int(hu)), "kind": kind}


def parse_lease(s: str) -> Any:
    m = _LEASE.match(s)
    if not m:
        return f"<malformed lease {s!r}>"
    return (int(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5])


def parse_entry(e: str) -> Any:
    parts = e.split("\0")
    if len(parts) != 5 or not re.fullmatch(r"\d{16}", parts[1]):
        return f"<malformed queue entry {e!r}>"
    return (parts[0], int(parts[1]), as_int(parts[2]), as_int(parts[3]), parts[4])


def parse_ready(e: str) -> Any:
    seq, sep, m = e.partition("\0")
    return (int(seq), m) if sep and re.fullmatch(r"\d{16}", seq) else f"<malformed ready entry {e!r}>"


def _hash(h: dict[Any, Any]) -> dict[str, str]:
    return {_text(a): _text(b) for a, b in h.items()}


def _zset(z: list[tuple[Any, float]]) -> list[tuple[str, float]]:
    return [(_text(a), s) for a, s in z]


def read_state(client: Any, pool: Pool) -> tuple[dict[str, Any], int, dict[str, list[str]]]:
    """Everything the pool's keys hold (parsed), the server time read with it (us), and the
    wake lists by waiter id."""
    k = pool.keys.key
    p = client.pipeline(transaction=True)
    p.time()
    p.hgetall(k("pool"))
    p.hgetall(k("members"))
    p.hgetall(k("leases"))
    for z in ("expiry", "ready", "active", "queue"):
        p.zrange(k(z), 0, -1, withscores=True)
    p.hgetall(k("waiters"))
    p.zrange(k("alive"), 0, -1, withscores=True)
    p.zrange(k("sizes"), 0, -1, withscores=True)
    p.hgetall(k("parked"))
    p.lrange(k("handoff"), 0, -1)
    res = p.execute()
    sec, usec = res[0]
    pool_h, members, leases, waiters, parked = (_hash(res[i]) for i in (1, 2, 3, 8, 11))
    expiry, ready, active, queue, alive, sizes = (_zset(res[i]) for i in (4, 5, 6, 7, 9, 10))
    handoff = [_text(x) for x in res[12]]
    state: dict[str, Any] = {}
    if pool_h:
        bad_queue_scores = [e for e, s in queue if s != 0]
        state = {
            "pool": parse_pool(pool_h),
            "members": {m: parse_member(s) for m, s in members.items()},
            "leases": {lid: parse_lease(s) for lid, s in leases.items()},
            "expiry": dict(expiry),
            "queue": [parse_entry(e) for e, _ in queue] + [f"<queue score not 0: {e!r}>" for e in bad_queue_scores],
            "waiters": {wid: parse_entry(e) for wid, e in waiters.items()},
            "alive": dict(alive),
            "sizes": dict(sizes),
            "ready": [(parse_ready(e), s) for e, s in ready],
            "active": dict(active),
            "parked": parked,
            "handoff": handoff,
        }
    prefix = pool.keys.wake_prefix
    pattern = "".join("\\" + c if c in "\\*?[]" else c for c in prefix) + "*"
    wake_keys = sorted(_text(x) for x in client.scan_iter(match=pattern, count=1000))
    wakes = {}
    if wake_keys:
        p = client.pipeline(transaction=False)
        for key in wake_keys:
            p.lrange(key, 0, -1)
        for key, msgs in zip(wake_keys, p.execute()):
            if msgs:
                wakes[key[len(prefix):]] = [_text(x) for x in msgs]
    return state, int(sec) * 1_000_000 + int(usec), wakes


# -- comparing ------------------------------------------------------------------------------------

def diff(exp: Any, act: Any, path: str = "", out: Optional[list[str]] = None) -> list[str]:
    """Where ``act`` differs from ``exp``: fractions to REL_TOL, everything else exactly."""
    out = [] if out is None else out
    if isinstance(exp, dict) and isinstance(act, dict):
        for key in sorted(exp.keys() | act.keys(), key=repr):
            if key not in act:
                out.append(f"{path}[{key!r}]: missing (expected {exp[key]!r})")
            elif key not in exp:
                out.append(f"{path}[{key!r}]: unexpected {act[key]!r}")
            else:
                diff(exp[key], act[key], f"{path}[{key!r}]", out)
    elif isinstance(exp, (list, tuple)) and isinstance(act, (list, tuple)):
        if len(exp) != len(act):
            out.append(f"{path}: expected {exp!r}, got {act!r}")
        else:
            for i, (e, a) in enumerate(zip(exp, act)):
                diff(e, a, f"{path}[{i}]", out)
    elif (isinstance(exp, (int, float)) and isinstance(act, (int, float))
          and not isinstance(exp, bool) and not isinstance(act, bool)):
        # Whole numbers (times in ms, counts, tokens) exactly; only a fraction such as S may be
        # off by rounding: 1e-9 of a time in ms would be 2 ms.
        whole = float(exp).is_integer() and float(act).is_integer()
        if exp != act and (whole or abs(exp - act) > REL_TOL * max(1.0, abs(exp), abs(act))):
            out.append(f"{path}: expected {exp!r}, got {act!r}")
    elif exp != act:
        out.append(f"{path}: expected {exp!r}, got {act!r}")
    return out


def reply_shape(op: str, reply: Any) -> Any:
    """A script reply in the model's shape: numbers as text, the state in status and leases parsed."""
    if op == "status" and isinstance(reply, list) and reply[:1] == ["ok"]:
        reply = [reply[0], reply[1], parse_pool(pairs(reply[2])),
                 {m: parse_member(s) for m, s in pairs(reply[3]).items()}, pairs(reply[4])]
    elif op == "leases" and isinstance(reply, list) and reply[:1] == ["ok"]:
        reply = [reply[0], reply[1], {lid: parse_lease(s) for lid, s in pairs(reply[2]).items()},
                 {lid: as_int(s) for lid, s in pairs(reply[3]).items()}]
    return _numbers_as_text(reply)


def _numbers_as_text(x: Any) -> Any:
    if isinstance(x, list):
        return [_numbers_as_text(v) for v in x]
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return x


def diff_wakes(model: PoolModel, wakes: dict[str, list[str]], at_ms: int) -> list[str]:
    """Wake lists against the model's, read at ``at_ms``. Around a key's expiry ms either is fine."""
    out = []
    for wid in sorted(model.wake.keys() | wakes.keys()):
        entry, got = model.wake.get(wid), wakes.get(wid)
        if entry is None:
            out.append(f"wake[{wid[:8]}]: unexpected {got!r}")
        elif got is None:
            if at_ms < entry[1] - 1:
                out.append(f"wake[{wid[:8]}]: missing, expected {entry[0]!r} until {entry[1]}")
        elif got != entry[0]:
            out.append(f"wake[{wid[:8]}]: expected {entry[0]!r}, got {got!r}")
    return out


def _kind(reply: Any) -> str:
    """A reply's kind for the coverage counts: "ok", "queued", "wake ok", "err:removed"..."""
    if isinstance(reply, list):
        return " ".join([str(reply[0])] + [_kind(x) for x in reply[1:2] if reply[0] == "wake"])
    if isinstance(reply, str) and ":" in reply:
        return reply.split(":")[0] if reply.startswith("ok:") else ":".join(reply.split(":")[:2])
    return str(reply)


class ModelMismatch(AssertionError):
    pass


# -- the harness: every script call checked against the model ------------------------------------

class Harness:
    """A Pool whose every script call (and every pop of a wake list) is checked against the
    model. ``clock``: the fakeredis clock, or None on a real server."""

    def __init__(self, client: Any, name: str, clock: Optional[FakeClock], model: Optional[PoolModel] = None) -> None:
        self.client = client
        self.clock = clock
        self.model = model or PoolModel()
        self.pool = Pool(_WakeSpy(client, self), name)
        self.pool._scripts = _TracedScripts(self.pool._scripts, self)  # type: ignore[assignment]
        self.calls: list[tuple[str, list[str], int, Any]] = []   # checked calls since begin()
        self.grants: dict[str, tuple[int, int]] = {}             # lease id -> (token, expiry ms)
        self.last_token = 0
        self.blocking: Optional[tuple[int, int]] = None          # fake clock: (start, limit) us
        self.failed = False
        self.checked = 0                                          # calls checked
        self.candidates = 0                                       # (now, slack) pairs tried
        self.events: Counter[str] = Counter()                     # rules exercised, replies seen

    def begin(self) -> None:
        self.calls = []

    def only(self, op: str) -> tuple[list[str], Any]:
        assert [c[0] for c in self.calls] == [op], self.calls
        return self.calls[0][1], self.calls[0][3]

    def server_us(self) -> int:
        if self.clock is not None:
            return self.clock.us
        sec, usec = self.client.time()
        return int(sec) * 1_000_000 + int(usec)

    def script(self, op: str, args: tuple[Any, ...], call: Callable[[], Any]) -> Any:
        if self.failed:
            return call()
        argv = [_text(a) if isinstance(a, bytes) else str(a) for a in args]
        if self.clock is not None and self.blocking is not None:
            self._time_passes_while_blocked(op)
        t0 = self.server_us()
        reply = call()
        self._check(op, argv, t0, lambda m, now, token: m.apply(op, argv, now, init_token=token),
                    reply_shape(op, _text(reply)))
        return reply

    def pop(self, wid: str, timeout: Optional[float]) -> Optional[str]:
        """LPOP (timeout None) or BLPOP of a waiter's wake list, checked like a script call."""
        key = self.pool.keys.wake(wid)
        t0 = self.server_us()
        if timeout is None:
            got = self.client.lpop(key)
        else:
            item = self.client.blpop([key], timeout=timeout)
            got = None if item is None else item[1]
        msg = None if got is None else str(_text(got))
        if not self.failed:
            self._check("pop", [wid], t0, lambda m, now, _: m.pop_wake(wid, now), msg)
        return msg

    def _time_passes_while_blocked(self, op: str) -> None:
        # A blocked waiter checks in when the earliest lease runs out and gives up at its
        # timeout: on the fake clock, that is the time those calls happen at.
        assert self.clock is not None and self.blocking is not None
        start, limit = self.blocking
        target = limit
        if op == "wait" and self.model.leases:
            target = min(limit, min(g.expiry for g in self.model.leases.values()) * 1000 + 500)
        if op in ("wait", "cancel") and target > self.clock.us:
            self.clock.us = target

    def _check(self, op: str, argv: list[str], t0: int, run: Callable[[PoolModel, int, Optional[int]], Any],
               got: Any) -> None:
        """Find a ``now`` between t0 and the state read at which the model gives the reply ``got``
        and the state read; adopt that model, or raise ModelMismatch."""
        state, t1, wakes = read_state(self.client, self.pool)
        if self.clock is not None:
            assert t1 == t0 == self.clock.us
        init_token = None
        if op == "configure" and not self.model.exists:
            # A new pool's first token is the server clock in us at creation (rule 7).
            init_token = state.get("pool", {}).get("token")
            assert isinstance(init_token, int) and t0 <= init_token <= t1, (init_token, t0, t1)
        nows = range(t0 // 1000, t1 // 1000 + 1)
        tried = []
        for slack, now in itertools.product((0, -1, 1), nows):
            m = self.model.clone()
            m.wake_slack, m.tokens, m.events = slack, [], Counter()
            self.candidates += 1
            try:
                expected = run(m, now, init_token)
            except NotModelled:
                raise
            except Exception as e:  # the model choked on what happened: a mismatch too
                tried.append((now, slack, [f"model raised {e!r}"]))
                continue
            problems = diff(_numbers_as_text(expected), got, "reply") + diff(m.state(), state, "state")
            problems += diff_wakes(m, wakes, t1 // 1000)
            if not problems:
                m.wake_slack = 0
                self.model = m
                self.checked += 1
                self.events.update(m.events)
                self.events[f"{op} -> {_kind(got)}"] += 1
                self.calls.append((op, argv, now, got))
                self._note_grants(m)
                return
            tried.append((now, slack, problems))
        self.failed = True
        now, slack, problems = tried[0]
        raise ModelMismatch(
            f"{op}({', '.join(repr(a) for a in argv)}) at now={now} ms (server time {t0}..{t1} us, "
            f"{len(nows)} candidate ms): engine and model disagree:\n  " + "\n  ".join(problems[:25]))

    def _note_grants(self, m: PoolModel) -> None:
        # Fencing tokens strictly increase across every grant the engine made (rule 7).
        for t in m.tokens:
            assert t > self.last_token, (t, self.last_token)
            self.last_token = t
        for lid, g in m.leases.items():
            if lid not in self.grants or self.grants[lid][0] != g.token:
                self.grants[lid] = (g.token, g.expiry)


class _TracedScripts:
    def __init__(self, inner: Any, harness: Harness) -> None:
        self.inner, self.harness = inner, harness

    def call(self, op: str, keys: list[str], args: tuple[Any, ...]) -> Any:
        return self.harness.script(op, args, lambda: self.inner.call(op, keys, args))


class _WakeSpy:
    """The client the Pool sees: the real one, except that its BLPOP of a wake list is checked."""

    def __init__(self, client: Any, harness: Harness) -> None:
        self._client, self._harness = client, harness

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def blpop(self, keys: list[str], timeout: float = 0) -> Any:
        (key,) = keys
        wid = key[len(self._harness.pool.keys.wake_prefix):]
        msg = self._harness.pop(wid, timeout)
        return None if msg is None else (key, msg)


# -- the state machine ------------------------------------------------------------------------

class Backend:
    """Where a machine runs: a client, pool names, the clock (fake) or None (real), time jumps."""

    def __init__(self, client: Any, clock: Optional[FakeClock], jumps_ms: tuple[int, ...],
                 model: Callable[[], PoolModel] = PoolModel) -> None:
        self.client, self.clock, self.jumps_ms, self.model = client, clock, jumps_ms, model
        self.names = (f"model-{uuid.uuid4().hex[:8]}-{i}" for i in itertools.count())
        self.checked = 0
        self.candidates = 0
        self.events: Counter[str] = Counter()

    def harness(self) -> Harness:
        if self.clock is not None:
            self.clock.us = FakeClock.START_US
        return Harness(self.client, next(self.names), self.clock, self.model())

    def done(self, h: Harness) -> None:
        self.checked += h.checked
        self.events.update(h.events)
        self.candidates += h.candidates
        Pool(self.client, h.pool.name).delete()


units_st = st.integers(1, 4)
member_st = st.sampled_from(MEMBERS)
ttl_st = st.sampled_from(TTLS_MS)
pick_st = st.one_of(st.integers(0, 11), st.integers(0, 1000))  # mostly one of the latest ids


class PoolMachine(RuleBasedStateMachine):
    """Random operations through the public API (and the raw queue + check-in path a blocked
    waiter uses); the harness checks each script call; the rules check what the API made of it."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self.h = backend.harness()
        self.pool = self.h.pool
        self.ids: list[str] = []                          # every lease and waiter id used
        self.waiters: dict[str, tuple[str, int, int]] = {}  # raw waiters: id -> (member, units, ttl ms)
        self.handles: dict[str, Lease] = {}

    def teardown(self) -> None:
        self.backend.done(self.h)

    def pick(self, live: list[str], known: list[str], i: int) -> str:
        """Mostly one of the ``live`` ids (0: the most recent), else any ``known`` one, else a
        fresh id nobody used.

        Which rule runs and what it draws never depends on the engine's answers (no
        preconditions): on a real server those answers depend on time, and hypothesis needs
        every run of an example to draw the same way. Only what a draw picks does."""
        if live and i % 4 != 3:
            return live[-1 - (i // 4) % len(live)]
        return known[-1 - i % len(known)] if known else new_id()

    def waiter(self, i: int) -> str:
        model = self.h.model
        live = [w for w in self.waiters if model.waiter(w) is not None or w in model.wake]
        return self.pick(live, list(self.waiters) or self.ids, i)

    def handle(self, i: int) -> Lease:
        lid = self.pick([x for x in self.handles if x in self.h.model.leases], list(self.handles), i)
        return self.handles.get(lid) or Lease(self.pool, lid, "a", 1, 0, 0.0, 1.0)

    # -- configuration --------------------------------------------------------------------------

    @initialize(capacity=st.integers(1, 5), dw=st.sampled_from([None, 1, 2, 0.5]))
    def create(self, capacity: int, dw: Optional[float]) -> None:
        self.pool.configure(capacity=capacity, default_weight=dw)

    @rule(capacity=st.integers(0, 6), dw=st.sampled_from([None, None, 1, 3, 0.5]))
    def configure(self, capacity: int, dw: Optional[float]) -> None:
        self.pool.configure(capacity=capacity, default_weight=dw)

    @rule(m=member_st, weight=st.sampled_from(WEIGHTS),
          max_units=st.one_of(st.just(UNCHANGED), st.none(), st.integers(0, 4)))
    def set_weight(self, m: str, weight: float, max_units: Any) -> None:
        self.pool.set_weight(m, weight, max_units=max_units)

    @rule(m=member_st)
    def remove_member(self, m: str) -> None:
        self.h.begin()
        removed = self.pool.remove_member(m)
        _, reply = self.h.only("remove_member")
        assert removed == (reply[0] == "ok")

    # -- acquiring ------------------------------------------------------------------------------

    @rule(m=member_st, units=units_st, ttl=ttl_st)
    def try_acquire(self, m: str, units: int, ttl: int) -> None:
        self.h.begin()
        try:
            lease = self.pool.try_acquire(m, units=units, ttl=ttl / 1000)
        except InvalidRequest:
            assert self.h.only("acquire")[1][0] == "invalid"
            return
        argv, reply = self.h.only("acquire")
        self.ids.append(argv[3])
        if reply[0] == "ok":
            self.check_lease(lease, argv[3], m, units, ttl)
        else:
            assert reply == ["busy"] and lease is None

    @rule(m=member_st, units=units_st, ttl=ttl_st, alive=st.sampled_from(ALIVE_MS))
    def enqueue(self, m: str, units: int, ttl: int, alive: int) -> None:
        """The first step of a blocking acquire: grant at once or queue a waiter."""
        wid = new_id()
        self.ids.append(wid)
        reply = self.pool._run("acquire", m, units, ttl, wid, "wait", alive, "", "")
        if reply[0] == "ok":
            self.check_lease(Lease(self.pool, wid, m, units, int(reply[1]), int(reply[2]) / 1000, ttl / 1000),
                             wid, m, units, ttl)
        elif reply[0] == "queued":
            self.waiters[wid] = (m, units, ttl)

    @rule(i=pick_st, alive=st.sampled_from(ALIVE_MS))
    def check_in(self, i: int, alive: int) -> None:
        """A blocked waiter checks in: still queued, granted, failed, or purged."""
        wid = self.waiter(i)
        reply = self.pool._run("wait", wid, alive)
        if reply[0] == "wake":
            self.deliver(wid, reply[1])

    @rule(i=pick_st)
    def cancel(self, i: int) -> None:
        wid = self.waiter(i)
        reply = self.pool._run("cancel", wid)
        if reply[0] == "wake":
            self.deliver(wid, reply[1])

    @rule(i=pick_st)
    def read_wake(self, i: int) -> None:
        """A blocked waiter's BLPOP returns what was pushed to it."""
        wid = self.waiter(i)
        msg = self.h.pop(wid, None)
        if msg is not None:
            self.deliver(wid, msg)

    def deliver(self, wid: str, msg: str) -> None:
        m, units, ttl = self.waiters[wid]
        try:
            lease = self.pool._delivered(msg, wid, m, units, ttl, False, None)
        except InvalidRequest:
            assert msg.startswith("err:invalid:"), msg
        except MemberRemoved:
            assert msg.startswith("err:removed:"), msg
        else:
            assert msg.startswith("ok:"), msg
            self.check_lease(lease, wid, m, units, ttl)

    @rule(m=member_st, units=units_st, ttl=ttl_st, timeout=st.sampled_from([0, 5, 20]))
    def blocking_acquire(self, m: str, units: int, ttl: int, timeout: int) -> None:
        self.h.begin()
        if self.h.clock is not None:
            self.h.blocking = (self.h.clock.us, self.h.clock.us + timeout * 1000)
        try:
            lease = self.pool.acquire(m, units=units, ttl=ttl / 1000, timeout=timeout / 1000)
        except AcquireTimeout:
            lease = None
        except InvalidRequest:
            assert self.h.calls[0][3][0] == "invalid", self.h.calls
            return
        finally:
            self.h.blocking = None
        asked = [c[1][3] for c in self.h.calls if c[0] == "acquire"]
        self.ids.extend(asked)
        self.h.events["blocking acquire -> " + ("timeout" if lease is None else "lease")] += 1
        if lease is None:
            # Timed out: it left the queue and holds nothing (rule 8).
            assert not any(wid in self.h.grants for wid in asked), self.h.calls
            assert all(self.h.model.waiter(wid) is None for wid in asked)
        else:
            assert lease.id in asked
            self.check_lease(lease, lease.id, m, units, ttl)

    def check_lease(self, lease: Optional[Lease], lid: str, m: str, units: int, ttl: int) -> None:
        assert lease is not None
        token, expiry = self.h.grants[lid]
        assert (lease.id, lease.member, lease.units, lease.token, lease.expires_at, lease.ttl) == \
            (lid, m, units, token, expiry / 1000, ttl / 1000)
        self.handles[lid] = lease

    # -- leases ---------------------------------------------------------------------------------

    @rule(i=pick_st, ttl=ttl_st)
    def renew(self, i: int, ttl: int) -> None:
        lease = self.handle(i)
        self.h.begin()
        try:
            lease.renew(ttl / 1000)
        except LeaseLost:
            assert self.h.only("renew")[1][0] == "lost"
        else:
            reply = self.h.only("renew")[1]
            assert reply[0] == "ok" and lease.expires_at == int(reply[1]) / 1000

    @rule(i=pick_st)
    def release(self, i: int) -> None:
        lease = self.handle(i)
        released_before = lease.released
        self.h.begin()
        ended = lease.release()
        if released_before:
            assert ended is False and self.h.calls == []
        else:
            assert ended == (self.h.only("release")[1][0] == "1")

    @rule(i=pick_st)
    def revoke(self, i: int) -> None:
        self.h.begin()
        ended = self.pool.revoke(self.pick(list(self.h.model.leases), self.ids, i))
        assert ended == (self.h.only("release")[1][0] == "1")

    # -- time and inspection -----------------------------------------------------------------------

    @rule(dt=st.integers(1, 3))
    def tick(self, dt: int) -> None:
        """A few ms pass (on the real server: about that, sleeping)."""
        self.sleep(dt)

    @rule(j=st.integers(0, 3))
    def time_passes(self, j: int) -> None:
        """Longer: leases and waiters' alive windows run out."""
        self.sleep(self.backend.jumps_ms[j % len(self.backend.jumps_ms)])

    def sleep(self, ms: int) -> None:
        if self.h.clock is not None:
            self.h.clock.us += ms * 1000
        else:
            time.sleep(ms / 1000)

    @rule(which=st.booleans())
    def inspect(self, which: bool) -> None:
        if which:
            self.status()
        else:
            self.leases()

    def status(self) -> None:
        st_ = self.pool.status()
        mf = self.h.model.member_fields()
        pf = self.h.model.pool_fields()
        assert (st_.capacity, st_.held, st_.free, st_.waiting, st_.default_weight, st_.last_token) == \
            (pf["capacity"], pf["held"], max(pf["capacity"] - pf["held"], 0), pf["waiting"],
             float(pf["default_weight"]), pf["token"])
        assert set(st_.members) == set(mf)
        for name, ms in st_.members.items():
            f = mf[name]
            assert (ms.weight, ms.max_units, ms.held, ms.waiting, ms.removed, ms.parked) == \
                (float(f["w"]), f["max"], f["held"], f["wait"], f["kind"] == "removed", 0)
            assert ms.virtual_service == pytest.approx(f["vs"], rel=REL_TOL, abs=REL_TOL)

    def leases(self) -> None:
        got = [(x.id, x.member, x.units, x.token, x.expires_at, x.ttl) for x in self.pool.leases()]
        want = [(lid, g.member, g.units, g.token, g.expiry / 1000, g.ttl / 1000)
                for lid, g in sorted(self.h.model.leases.items(), key=lambda kv: (kv[1].expiry, kv[0]))]
        assert got == want


def run_machine(backend: Backend, examples: int, steps: int, phases: tuple[Phase, ...] = tuple(Phase)) -> None:
    run_state_machine_as_test(
        lambda: PoolMachine(backend),
        settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=True,
                          database=None, phases=phases, print_blob=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                 HealthCheck.data_too_large]))


@pytest.fixture(scope="module")
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()  # one server (and one loaded library) for all examples


def test_engine_matches_model_on_fakeredis(fake_clock: FakeClock, fake_server: fakeredis.FakeServer) -> None:
    client = fakeredis.FakeRedis(server=fake_server)
    backend = Backend(client, fake_clock, jumps_ms=FAKE_JUMPS_MS)
    run_machine(backend, examples=200, steps=40)
    client.close()
    # The run must have gone through the rules it is meant to check, not just agreed on little.
    assert not COVERED_ON_FAKE - set(backend.events), (COVERED_ON_FAKE - set(backend.events), backend.events)


def test_engine_matches_model_on_redis_server(url: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    backend = Backend(client, None, jumps_ms=REAL_JUMPS_MS)
    # No shrinking: on a clock that flows, replays differ and each costs real sleeps. The
    # failure names the call that disagreed and lists every step before it.
    run_machine(backend, examples=50, steps=40, phases=(Phase.explicit, Phase.generate))
    client.close()
    assert not COVERED_ON_REAL - set(backend.events), (COVERED_ON_REAL - set(backend.events), backend.events)


# -- rules random runs rarely reach, played out step by step --------------------------------------

def credit_scenario(h: Harness) -> None:
    """A member that under-used its share and asks for more while holding gets at most
    B / weight of credit (B = 4 * capacity * average hold, 1 s before any release)."""
    assert h.clock is not None
    pool = h.pool
    pool.configure(capacity=4)
    pool.set_weight("a", 1)
    pool.set_weight("b", 1)
    pool.try_acquire("b", units=2, ttl=60)
    pool.try_acquire("b", units=1, ttl=20)
    pool.try_acquire("a", units=1, ttl=60)
    h.clock.us += 25_000_000
    pool.status()  # b's 1-unit lease expired at 20 s: S_b = 3 units * 20 s = 60
    assert h.model.members["b"].vs == 60
    pool.try_acquire("a", units=1, ttl=60)  # S_a = 25, but at most 16 below b's 60
    assert h.model.members["a"].vs == 60 - 4 * 4 * 1.0
    assert pool.try_acquire("b", units=1, ttl=60) is None  # full
    h.clock.us += 1_000_000
    pool.set_weight("c", 2)
    assert pool.try_acquire("c", units=1, ttl=60) is None  # still full ...
    assert h.model.members["c"].vs == 44  # ... but c, idle, was placed at the lowest S in use
    assert h.events["busy member's credit bounded"] == 1


def test_credit_scenario_matches_model(fake_clock: FakeClock, fake_server: fakeredis.FakeServer) -> None:
    credit_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "credit-" + uuid.uuid4().hex, fake_clock))


def waiter_scenario(h: Harness) -> None:
    """Queued requests through every ending: granted and read, failed by a resize, a lowered
    cap and a removal, cancelled in the instant it was granted; idle members placed at the
    lowest waiting S; a request that fits but is outranked."""
    pool = h.pool

    def sleep(ms: int) -> None:
        if h.clock is not None:
            h.clock.us += ms * 1000
        else:
            time.sleep(ms / 1000)

    def enqueue(m: str, units: int = 1) -> tuple[str, list[Any]]:
        wid = new_id()
        return wid, pool._run("acquire", m, units, 60_000, wid, "wait", 60_000, "", "")

    def delivered(wid: str, m: str, msg: str) -> Lease:
        return pool._delivered(msg, wid, m, 1, 60_000, False, None)

    pool.configure(capacity=3)
    for m in "abc":
        pool.set_weight(m, 1)
    assert pool.try_acquire("a", ttl=60) is not None
    held_by_c = pool.try_acquire("c", ttl=60)
    assert held_by_c is not None
    sleep(20)
    assert held_by_c.release()                              # c has used some service: S_c > 0
    c, reply = enqueue("c", 3)
    assert reply[0] == "queued"                             # 3 units, 2 free: c waits at the head
    assert pool.try_acquire("z") is None                    # fits, but c ranks ahead (z placed at S_c)
    d, reply = enqueue("d")
    assert reply[0] == "queued"                             # d, new, starts at the lowest waiting S
    assert h.model.members["d"].vs == h.model.members["c"].vs > 0
    assert pool._run("wait", d, 60_000)[0] == "queued"
    pool.configure(capacity=2)                              # c's 3 units can never be met: it fails, d is served
    with pytest.raises(InvalidRequest):
        delivered(c, "c", h.pop(c, None) or "")
    reply = pool._run("wait", d, 60_000)
    assert reply[0] == "wake"
    lease_d = delivered(d, "d", reply[1])                   # d reads its grant when it checks in
    b, reply = enqueue("b")
    assert reply[0] == "queued"
    pool.set_weight("b", 1, max_units=0)                    # b's request can never be met now
    reply = pool._run("cancel", b)
    assert reply[0] == "wake"
    with pytest.raises(InvalidRequest):
        delivered(b, "b", reply[1])
    x, reply = enqueue("x")
    assert reply[0] == "queued"
    assert pool.remove_member("x")
    with pytest.raises(MemberRemoved):
        delivered(x, "x", h.pop(x, None) or "")
    y, reply = enqueue("y")
    assert reply[0] == "queued"
    assert lease_d.release()                                # y is granted ...
    reply = pool._run("cancel", y)                          # ... in the same instant as it gives up
    assert reply[0] == "wake"
    lease_y = delivered(y, "y", reply[1])                   # so cancel hands the grant back
    e, reply = enqueue("e")
    assert reply[0] == "queued"
    assert lease_y.release()
    delivered(e, "e", h.pop(e, None) or "")                 # e's BLPOP gets its grant
    for event in ("fits but a waiter ranks ahead", "idle member placed at lowest waiting S",
                  "request failed: invalid", "request failed: removed", "wait -> wake ok", "cancel -> wake ok",
                  "pop -> ok", "pop -> err:invalid", "pop -> err:removed", "cancel -> wake err:invalid"):
        assert h.events[event] >= 1, (event, h.events)


def test_waiter_scenario_matches_model_on_fakeredis(fake_clock: FakeClock,
                                                     fake_server: fakeredis.FakeServer) -> None:
    waiter_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "waiters-" + uuid.uuid4().hex, fake_clock))


def test_waiter_scenario_matches_model_on_redis_server(url: str) -> None:
    client = redis.Redis.from_url(url)
    waiter_scenario(Harness(client, "waiters-" + uuid.uuid4().hex, None))
    client.close()


# -- the three rules of the reclaim-first / exact-ranking change, played out on both backends ------

def server_ms(h: Harness) -> int:
    return h.server_us() // 1000


def sleep_until(h: Harness, t_ms: int) -> None:
    """Until the server clock reads ``t_ms`` (the fake clock: exactly then, half a ms past)."""
    if h.clock is not None:
        h.clock.us = max(h.clock.us, t_ms * 1000 + 500)
        return
    while (left := t_ms - server_ms(h)) >= 0:
        time.sleep(left / 1000 + 0.0005)


def enqueue_raw(h: Harness, m: str, units: int = 1, ttl_ms: int = 1_000_000) -> tuple[str, list[Any]]:
    """The first step of a blocking acquire: a waiter id and the acquire reply."""
    wid = new_id()
    return wid, h.pool._run("acquire", m, units, ttl_ms, wid, "wait", 600_000, "", "")


def expiry_scenario(h: Harness) -> None:
    """Rule 1 (reclaim first): a member releases one lease while another of its leases has
    expired but is not reclaimed yet; the expired one counts as service only up to its expiry."""
    pool = h.pool
    pool.configure(capacity=4)
    pool.set_weight("a", 1)
    first = pool.try_acquire("a", ttl=0.1)  # expires 100 ms later
    second = pool.try_acquire("a", ttl=10)
    assert first is not None and second is not None
    expires, g2 = h.grants[first.id][1], h.model.leases[second.id].granted
    s2 = h.model.members["a"].vs  # S as of the second grant (0 on the fake clock)
    sleep_until(h, expires + 50)
    h.begin()
    assert second.release()  # reclaims the expired lease first, then ends this one
    h.only("release")
    now = h.calls[0][2]
    # From the second grant on: the first lease up to its expiry, the second up to now (on
    # the fake clock 0.1 + 0.15 = 0.25, where charging the first up to now would give 0.3).
    assert h.model.members["a"].vs == pytest.approx(s2 + (expires - g2 + now - g2) / 1000, rel=REL_TOL)
    if h.clock is not None:
        assert h.model.members["a"].vs == pytest.approx(0.25, rel=REL_TOL)
    assert (h.events["lease expired"], h.events["lease released"]) == (1, 1)


def stale_s_scenario(h: Harness, u: int) -> None:
    """Rule 2 (exact ranking): stored S lags for members holding units; the first-ranked one is
    brought up to date before it wins. ``u``: ms per step (the fake clock: 1 s).

    Capacity 4, weights 1. At 0, a holds 2 units, b 1, c 1 (c's lease for 10 steps); a queues
    1. At 5, b queues 1: a's stored S (0) is brought up to date to 10 when b's request is
    placed. At 10, c's lease expires: b (true S 10) must get the unit, not a (true S 20),
    though a ranks first by stored S at first (10 at step 5, tie won by a's earlier head)."""
    pool = h.pool
    pool.configure(capacity=4)
    for m in "abc":
        pool.set_weight(m, 1)
    t0 = server_ms(h)
    assert pool.try_acquire("a", units=2, ttl=1000) is not None
    assert pool.try_acquire("b", ttl=1000) is not None
    held_by_c = pool.try_acquire("c", ttl=10 * u / 1000)
    assert held_by_c is not None
    wa, reply = enqueue_raw(h, "a")
    assert reply[0] == "queued"
    sleep_until(h, t0 + 5 * u)
    refreshed = h.events["stale S brought up to date before ranking"]
    wb, reply = enqueue_raw(h, "b")
    assert reply[0] == "queued"
    assert h.events["stale S brought up to date before ranking"] == refreshed + 1  # a's, for b's placement
    if h.clock is not None:
        assert (h.model.members["a"].vs, h.model.members["b"].vs) == (10, 5)
    sleep_until(h, h.grants[held_by_c.id][1])  # c's lease expires
    h.begin()
    pool.status()
    assert h.model.leases[wb].member == "b" and h.model.waiter(wa) is not None  # b got the unit
    assert h.events["stale S brought up to date before ranking"] >= refreshed + 2  # b's and a's
    if h.clock is not None:
        assert (h.model.members["a"].vs, h.model.members["b"].vs, h.model.members["c"].vs) == (20, 10, 10)
    msg = h.pop(wb, None)
    assert msg is not None and msg.startswith("ok:")


def refresh_limit_scenario(h: Harness) -> None:
    """Rule 2's bound: one ranking decision brings at most MAX_REFRESH (16) stale S up to date,
    then takes whatever ranks first. 18 members each hold a unit and queue one; time passes;
    m17 releases: m00..m15 are refreshed, and m16, still stale, gets the unit (with no bound,
    all would tie and m00, the earliest head, would)."""
    pool = h.pool
    names = [f"m{i:02d}" for i in range(18)]
    pool.configure(capacity=len(names))
    leases = {m: pool.try_acquire(m, ttl=1000) for m in names}
    waiters = {}
    for m in names:
        waiters[m], reply = enqueue_raw(h, m)
        assert reply[0] == "queued"
    # Long enough that any S brought up to date ranks after every stale one.
    grants = sorted(h.model.leases[lease.id].granted for lease in leases.values() if lease is not None)
    sleep_until(h, server_ms(h) + max(1000 if h.clock is not None else 100, 3 * (grants[-1] - grants[0])))
    limits = h.events["ranking refresh limit reached"]
    lease = leases["m17"]
    assert lease is not None and lease.release()
    assert h.events["ranking refresh limit reached"] == limits + 1
    granted = [m for m in names if waiters[m] in h.model.leases]
    assert len(granted) == 1
    if h.clock is not None:
        assert granted == ["m16"]
        assert [h.model.members[m].vs for m in names] == [1.0] * 18  # m16's brought up to date by its grant


def clamp_scenario(h: Harness, how: str, u: int) -> None:
    """Rule 3 (credit clamp on becoming ready): a held back by its own cap (1 on capacity 4)
    while b holds 3 units; its S falls far behind b's. When a's head fits its cap again, a
    keeps at most credit = 4 * capacity * average hold / weight below the lowest ready S.
    how: "expiry" (capacity shrinks to 1, then a's lease expires) or "cap" (a's cap is raised
    to 2). ``u``: ms per step (the fake clock: 1 s, the average hold time then 1 s too)."""
    pool = h.pool
    pool.configure(capacity=4)
    pool.set_weight("a", 1, max_units=1)
    pool.set_weight("b", 1)
    t0 = server_ms(h)
    primer = pool.try_acquire("b", ttl=1000)  # a first lease held 1 step: the average hold time
    assert primer is not None
    sleep_until(h, t0 + u)
    assert primer.release()
    assert pool.try_acquire("a", ttl=100 * u / 1000 if how == "expiry" else 1000) is not None
    wa, reply = enqueue_raw(h, "a")
    assert reply[0] == "queued"
    assert not h.model.is_ready(h.model.members["a"])  # its cap holds it back
    assert pool.try_acquire("b", units=3, ttl=1000) is not None
    t1 = server_ms(h)
    sleep_until(h, t1 + 70 * u)
    wb, reply = enqueue_raw(h, "b")
    assert reply[0] == "queued"
    if how == "expiry":
        pool.configure(capacity=1)
    assert h.events["S clamped on becoming ready"] == 0
    sleep_until(h, t1 + 100 * u)
    ref = h.model.members["b"].vs  # the lowest ready S, as stored
    if how == "expiry":
        pool.status()  # a's lease expires: its head fits its cap again
    else:
        pool.set_weight("a", 1, max_units=2)
    a = h.model.members["a"]
    assert h.model.is_ready(a) and h.events["S clamped on becoming ready"] == 1
    assert a.vs == pytest.approx(ref - h.model.credit(a), rel=REL_TOL)
    if h.clock is not None:
        # b: 1 unit for 1 s, then 3 units for 70 s: 211. a: 1 + 100 = 101, clamped to
        # 211 - 4 * capacity * 1 s: 207 on capacity 1, 195 on capacity 4.
        assert ref == 211
        assert a.vs == (207 if how == "expiry" else 195)
    assert h.model.waiter(wa) is not None and h.model.waiter(wb) is not None


def test_expired_lease_counts_as_service_only_up_to_its_expiry(fake_clock: FakeClock,
                                                                fake_server: fakeredis.FakeServer) -> None:
    expiry_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "expiry-" + uuid.uuid4().hex, fake_clock))


def test_expired_lease_counts_as_service_only_up_to_its_expiry_on_redis_server(url: str) -> None:
    client = redis.Redis.from_url(url)
    expiry_scenario(Harness(client, "expiry-" + uuid.uuid4().hex, None))
    client.close()


def test_stale_s_is_brought_up_to_date_before_ranking(fake_clock: FakeClock,
                                                       fake_server: fakeredis.FakeServer) -> None:
    stale_s_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "stale-" + uuid.uuid4().hex, fake_clock), 1000)


def test_stale_s_is_brought_up_to_date_before_ranking_on_redis_server(url: str) -> None:
    client = redis.Redis.from_url(url)
    stale_s_scenario(Harness(client, "stale-" + uuid.uuid4().hex, None), 30)
    client.close()


def test_ranking_refreshes_at_most_max_refresh(fake_clock: FakeClock, fake_server: fakeredis.FakeServer) -> None:
    refresh_limit_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "limit-" + uuid.uuid4().hex,
                                   fake_clock))


def test_ranking_refreshes_at_most_max_refresh_on_redis_server(url: str) -> None:
    client = redis.Redis.from_url(url)
    refresh_limit_scenario(Harness(client, "limit-" + uuid.uuid4().hex, None))
    client.close()


@pytest.mark.parametrize("how", ["expiry", "cap"])
def test_credit_clamped_on_becoming_ready(how: str, fake_clock: FakeClock, fake_server: fakeredis.FakeServer) -> None:
    clamp_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "clamp-" + uuid.uuid4().hex, fake_clock),
                   how, 1000)


@pytest.mark.parametrize("how", ["expiry", "cap"])
def test_credit_clamped_on_becoming_ready_on_redis_server(how: str, url: str) -> None:
    client = redis.Redis.from_url(url)
    clamp_scenario(Harness(client, "clamp-" + uuid.uuid4().hex, None), how, 5)
    client.close()


# -- the comparison can fail: models with one rule wrong are caught ---------------------------------

class TiesToLatestHead(PoolModel):
    def ranking(self) -> list:
        return sorted(super().ranking(), key=lambda r: (r.vs, -self.queue[r.name][0].seq))


class HeadOvertaken(PoolModel):
    def ranking(self) -> list:  # members whose head fits the free units first
        free = self.capacity - self.held
        return sorted(super().ranking(), key=lambda r: self.queue[r.name][0].units > free)


class IdleKeepsItsCredit(PoolModel):
    def place(self, r: Any, wref: Optional[float]) -> None:
        if r.held > 0:
            super().place(r, wref)


class ExpiryChargedToReclaim(PoolModel):
    """An expired lease is charged as held until the call that reclaims it."""

    def __init__(self) -> None:
        super().__init__(charge_to_expiry=False)

    def end_lease(self, lid: str, now: int, expired: Optional[int]) -> bool:
        return super().end_lease(lid, now, None if expired is None else now)


class WorkBeforeReclaim(PoolModel):
    """The engine before rule 1: release, cancel, configure and remove_member do their work
    first, so a member's unreclaimed expired lease is charged up to that work."""

    reclaim_first = False

    def __init__(self) -> None:
        super().__init__(charge_to_expiry=False)


class RankedByStoredS(PoolModel):
    """The engine before rule 2: ranking by stored S, stale or not."""

    max_refresh = 0


class RefreshWithoutBound(PoolModel):
    max_refresh = 1_000_000


class NoClampOnReady(PoolModel):
    """The engine before rule 3: a member held back by its cap keeps all its credit."""

    def clamp_on_ready(self, r: Any) -> None:
        pass


class CreditOfThreePeriods(PoolModel):
    credit_periods = 3


# HeadOvertaken is left to its scenario: the random search found it within 100 examples in
# some test orders only (the generated ids differ), the scenario always does.
@pytest.mark.parametrize("mutant", [TiesToLatestHead, IdleKeepsItsCredit, ExpiryChargedToReclaim,
                                    WorkBeforeReclaim, RankedByStoredS])
def test_a_wrong_rule_in_the_model_is_caught(mutant: type, fake_clock: FakeClock,
                                              fake_server: fakeredis.FakeServer) -> None:
    backend = Backend(fakeredis.FakeRedis(server=fake_server), fake_clock, FAKE_JUMPS_MS, model=mutant)
    with pytest.raises(ModelMismatch):
        run_machine(backend, examples=100, steps=40, phases=(Phase.explicit, Phase.generate))


def test_a_wrong_credit_bound_is_caught(fake_clock: FakeClock, fake_server: fakeredis.FakeServer) -> None:
    with pytest.raises(ModelMismatch, match="vs"):
        credit_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "credit-" + uuid.uuid4().hex, fake_clock,
                                CreditOfThreePeriods()))


def head_scenario(h: Harness) -> None:
    """Rule 4 (the head is never overtaken): capacity 3, a holds 2. b queues a 2-unit request,
    then c a 1-unit one that would fit the free unit; b ranks first (same S, earlier head),
    so the unit stays free until a releases, and then both are granted."""
    pool = h.pool

    def enqueue(m: str, units: int) -> str:
        wid = new_id()
        assert pool._run("acquire", m, units, 60_000, wid, "wait", 60_000, "", "")[0] == "queued"
        return wid

    pool.configure(capacity=3)
    pool.set_weight("b", 1)
    pool.set_weight("c", 1)
    holder = pool.try_acquire("a", units=2, ttl=60)
    assert holder is not None
    b = enqueue("b", 2)
    c = enqueue("c", 1)                                     # fits, but b's head ranks first
    assert (pool.status().held, pool.status().waiting) == (2, 3)
    assert holder.release()
    assert (pool.status().held, pool.status().waiting) == (3, 0)
    assert all((h.pop(wid, None) or "").startswith("ok:") for wid in (b, c))


def test_head_scenario_matches_model(fake_clock: FakeClock, fake_server: fakeredis.FakeServer) -> None:
    head_scenario(Harness(fakeredis.FakeRedis(server=fake_server), "head-" + uuid.uuid4().hex, fake_clock))


SCENARIOS: dict[str, Callable[[Harness], None]] = {
    "head": head_scenario,
    "expiry": expiry_scenario,
    "stale": lambda h: stale_s_scenario(h, 1000),
    "limit": refresh_limit_scenario,
    "clamp-expiry": lambda h: clamp_scenario(h, "expiry", 1000),
    "clamp-cap": lambda h: clamp_scenario(h, "cap", 1000),
}


@pytest.mark.parametrize("mutant, scenario", [
    (ExpiryChargedToReclaim, "expiry"), (WorkBeforeReclaim, "expiry"), (RankedByStoredS, "stale"),
    (RefreshWithoutBound, "limit"), (NoClampOnReady, "clamp-expiry"), (NoClampOnReady, "clamp-cap"),
    (HeadOvertaken, "head"),
])
def test_a_wrong_rule_is_caught_by_its_scenario(mutant: type, scenario: str, fake_clock: FakeClock,
                                                fake_server: fakeredis.FakeServer) -> None:
    h = Harness(fakeredis.FakeRedis(server=fake_server), scenario + "-" + uuid.uuid4().hex, fake_clock, mutant())
    with pytest.raises(ModelMismatch, match="disagree"):
        SCENARIOS[scenario](h)
