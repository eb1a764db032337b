"""Chaos soak: dozens of worker processes share one pool on a real redis-server for minutes
while this orchestrator SIGKILLs holders and waiters (and starts replacements), reweights
members, resizes the pool and revokes leases. Every process records what it saw, one JSON
line per event, and workers/soak_check.py checks the records (rules in its docstring).

    python workers/soak.py [--url URL] [--minutes M] [--procs N] [--seed S] [--dir DIR] [--keep]

Without --url a private redis-server is started (wshare_redis.embedded.RedisServer). The
pool lives under a fresh prefix and is deleted at the end. Prints its figures; exits 1 on
any violation (the run directory with all records is then kept and named).

Each phase of the run: an action (reweight, and in most phases a resize), a settle time, a
calm window with no action at all (where shares are measured), then a chaos stretch of
random SIGKILLs (each process replaced shortly after) and revocations. Chaos stops early
enough that every killed lease and dead waiter must be gone before the final check.

The child mode (``soak.py child ...``) is one worker process: a few threads that acquire
(blocking with random timeouts, or try_acquire), hold, sometimes renew, and release until
the stop time, recording each step before or after it happens, flushed per event.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from soak_check import Report, check, load_records  # noqa: E402
from wshare_redis import AcquireTimeout, InvalidRequest, LeaseLost, Pool  # noqa: E402
from wshare_redis.embedded import RedisServer  # noqa: E402
from wshare_redis.status import parse_member  # noqa: E402

#: Share of worker iterations that use try_acquire instead of a blocking acquire.
TRY_FRACTION = 0.2
#: Share of 1-unit holds that last about the ttl (renewed every ttl/3).
LONG_FRACTION = 0.03
#: Raw keys that must be empty once every worker has stopped.
DRAINED = ("leases", "expiry", "queue", "waiters", "alive", "sizes", "parked", "handoff", "ready", "active")


class Recorder:
    """Appends one JSON line per event to a file, each with one write(2): a SIGKILL loses at
    most the event in flight, and threads never interleave within a line."""

    def __init__(self, path: Path, **fixed: Any) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.fixed = fixed

    def write(self, ev: str, **fields: Any) -> None:
        os.write(self.fd, (json.dumps({"ev": ev, **self.fixed, **fields}, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- the worker process ----------------------------------------------------------------------

def child_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="soak.py child")
    for opt in ("--url", "--prefix", "--pool", "--member", "--out"):
        ap.add_argument(opt, required=True)
    for opt in ("--proc", "--threads", "--units-max", "--seed", "--parent"):
        ap.add_argument(opt, type=int, required=True)
    for opt in ("--ttl", "--max-timeout", "--mean-hold", "--stop"):
        ap.add_argument(opt, type=float, required=True)
    a = ap.parse_args(argv)
    client = redis.Redis.from_url(a.url, socket_timeout=15)
    pool = Pool(client, a.pool, prefix=a.prefix)
    rec = Recorder(Path(a.out), src="w", proc=a.proc)
    rec.write("start", pid=os.getpid(), member=a.member, t=time.time())
    threads = [threading.Thread(target=_work, args=(pool, rec, a, i), daemon=True) for i in range(a.threads)]
    for t in threads:
        t.start()
    # Every step of a thread is bounded (timeouts, holds), so this is only a guard.
    give_up = a.stop + a.max_timeout + 3 * a.ttl + 60
    for t in threads:
        t.join(max(give_up - time.time(), 0.1))
    if any(t.is_alive() for t in threads):
        rec.write("error", th=None, t=time.time(), msg="a thread did not finish")
        os._exit(3)
    rec.write("stop", t=time.time())
    client.close()


def _work(pool: Pool, rec: Recorder, a: argparse.Namespace, th: int) -> None:
    rng = random.Random(a.seed * 1000 + th)
    while time.time() < a.stop and os.getppid() == a.parent:
        units = rng.randint(1, a.units_max)
        t_req = time.time()
        try:
            if rng.random() < TRY_FRACTION:
                mode = "try"
                lease = pool.try_acquire(a.member, units=units, ttl=a.ttl)
                if lease is None:
                    rec.write("busy", th=th, t_req=t_req, t=time.time(), units=units)
                    time.sleep(rng.uniform(0.01, 0.06))
                    continue
            else:
                mode = "wait"
                timeout = rng.uniform(0.02, 0.2) if rng.random() < 0.3 else rng.uniform(0.2, a.max_timeout)
                rec.write("req", th=th, t=t_req, units=units, timeout=round(timeout, 3))
                try:
                    lease = pool.acquire(a.member, units=units, ttl=a.ttl, timeout=timeout)
                except AcquireTimeout:
                    rec.write("timeout", th=th, t_req=t_req, t=time.time(), units=units)
                    continue
        except InvalidRequest as e:  # a shrink or a lowered cap made the request impossible
            rec.write("invalid", th=th, t_req=t_req, t=time.time(), units=units, msg=str(e))
            time.sleep(0.05)
            continue
        except Exception as e:
            rec.write("error", th=th, t=time.time(), msg=f"acquire: {type(e).__name__}: {e}")
            time.sleep(0.1)
            continue
        rec.write("grant", th=th, id=lease.id, member=a.member, units=units, token=lease.token,
                  exp_ms=round(lease.expires_at * 1000), ttl_ms=round(lease.ttl * 1000), t_req=t_req,
                  t=time.time(), mode=mode)
        _hold(lease, rec, a, th, rng, long=units == 1 and rng.random() < LONG_FRACTION)
        t_rel = time.time()
        rec.write("release", th=th, id=lease.id, t=t_rel)
        try:
            ended = lease.release()
        except Exception as e:
            rec.write("error", th=th, t=time.time(), msg=f"release: {type(e).__name__}: {e}")
            continue
        rec.write("released", th=th, id=lease.id, t_req=t_rel, t=time.time(), ended=ended)


def _hold(lease: Any, rec: Recorder, a: argparse.Namespace, th: int, rng: random.Random, long: bool) -> None:
    """Hold the lease for a random time, renewing every ttl/3 (long holds only, in practice).
    Long holds are of 1 unit: one lease should not move a member's share much (fairness)."""
    if long:
        duration = rng.uniform(0.5, 1.2) * a.ttl
    else:
        duration = min(rng.expovariate(1 / a.mean_hold), 5 * a.mean_hold)
    start = time.monotonic()
    end, renew_at = start + duration, start + a.ttl / 3
    while True:
        now = time.monotonic()
        if now >= end:
            return
        if now >= renew_at:
            t_req = time.time()
            try:
                lease.renew()
            except LeaseLost:  # revoked (or expired while this process stalled)
                rec.write("renew", th=th, id=lease.id, t_req=t_req, t=time.time(), ok=False)
                return
            except Exception as e:
                rec.write("error", th=th, t=time.time(), msg=f"renew: {type(e).__name__}: {e}")
                return
            rec.write("renew", th=th, id=lease.id, t_req=t_req, t=time.time(), ok=True,
                      exp_ms=round(lease.expires_at * 1000))
            renew_at = time.monotonic() + a.ttl / 3
        time.sleep(max(min(end, renew_at) - time.monotonic(), 0))


# -- the orchestrator ------------------------------------------------------------------------

_VT = re.compile(r"\bvt=(\d+)\b")


def _member(name: str, record: str, now_ms: int) -> list[Any]:
    """[weight, max_units, held, queued, S now] from a member's raw record. S (virtual service,
    unit-seconds per weight) is stored as of its time vt and grows by held/weight meanwhile."""
    weight, max_units, held, waiting, vs, _removed = parse_member(name, record)
    vt = _VT.search(record)
    if vt is not None and held:
        vs += held / weight * max(now_ms - int(vt.group(1)), 0) / 1000
    return [weight, max_units, held, waiting, vs]


@dataclass(frozen=True)
class Plan:
    """The shape of a run; ``plan_for`` scales it to the run's length."""

    seconds: float
    procs: int
    threads: int
    members: dict[str, tuple[float, Optional[int], int]]  # name -> (weight, max_units, units per request up to)
    capacity: int
    capacities: tuple[int, int]   # resizes pick from this range
    ttl: float
    margin: float
    max_timeout: float
    mean_hold: float
    phase: float
    settle: float
    calm: float
    kill_rate: float              # per second of chaos
    revoke_rate: float
    snapshot_every: float = 0.2
    weights: tuple[float, ...] = (0.5, 1, 1.5, 2, 3, 4, 6)


def plan_for(seconds: float, procs: int, threads: int = 3) -> Plan:
    members: dict[str, tuple[float, Optional[int], int]] = {
        "alpha": (1, None, 2), "beta": (2, None, 1), "gamma": (3, 3, 2), "delta": (1.5, 2, 1), "eps": (4, None, 2)}
    if procs < 16:
        members.pop("eps")
    if seconds < 60:  # the short soak of the test suite
        return Plan(seconds=seconds, procs=procs, threads=threads, members=members, capacity=6,
                    capacities=(4, 9), ttl=1.0, margin=2.0, max_timeout=1.5, mean_hold=0.06, phase=8.0,
                    settle=1.0, calm=4.0, kill_rate=2.0, revoke_rate=1.5)
    return Plan(seconds=seconds, procs=procs, threads=threads, members=members, capacity=8, capacities=(4, 14),
                ttl=1.5, margin=2.0, max_timeout=3.0, mean_hold=0.08, phase=10.0, settle=1.5, calm=4.5,
                kill_rate=1.0, revoke_rate=2.0)


@dataclass
class Child:
    proc: int
    member: str
    popen: subprocess.Popen
    killed: bool = False


@dataclass
class Orchestrator:
    plan: Plan
    url: str
    run_dir: Path
    seed: int
    log: Callable[[str], None]
    rng: random.Random = field(init=False)
    children: dict[int, Child] = field(default_factory=dict)
    next_proc: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=15)
        self.prefix = f"soak-{secrets.token_hex(4)}"
        self.pool = Pool(self.client, "soak", prefix=self.prefix)
        self.rec = Recorder(self.run_dir / "orch.jsonl", src="orch")
        self.weights = {m: w for m, (w, _, _) in self.plan.members.items()}
        self.caps = {m: c for m, (_, c, _) in self.plan.members.items()}
        self.capacity = self.plan.capacity
        self.last_kill = 0.0
        self.last_snapshot: dict[str, Any] = {}
        self.stop_at = 0.0
        self.pending: list[tuple[float, str, int]] = []  # replacements due: (time, member, replaced proc)

    # -- workers ----------------------------------------------------------------------------

    def spawn(self, member: str, replaces: Optional[int] = None) -> None:
        proc = self.next_proc
        self.next_proc += 1
        p = self.plan
        cmd = [sys.executable, str(Path(__file__).resolve()), "child", "--url", self.url, "--prefix", self.prefix,
               "--pool", self.pool.name, "--member", member, "--out", str(self.run_dir / f"w{proc:04d}.jsonl"),
               "--proc", str(proc), "--threads", str(p.threads), "--units-max", str(p.members[member][2]),
               "--seed", str(self.seed * 100_000 + proc), "--parent", str(os.getpid()), "--ttl", str(p.ttl),
               "--max-timeout", str(p.max_timeout), "--mean-hold", str(p.mean_hold), "--stop", str(self.stop_at)]
        path = [str(HERE.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        with open(self.run_dir / f"w{proc:04d}.err", "wb") as err:
            popen = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        self.children[proc] = Child(proc, member, popen)
        self.rec.write("spawn", proc=proc, pid=popen.pid, member=member, replaces=replaces, t=time.time())

    def reap(self) -> None:
        for ch in list(self.children.values()):
            code = ch.popen.poll()
            if code is not None:
                self.rec.write("exit", proc=ch.proc, pid=ch.popen.pid, code=code, t=time.time())
                del self.children[ch.proc]

    def kill(self, ch: Child, *, straggler: bool = False) -> None:
        t = time.time()
        ch.killed = True
        ch.popen.send_signal(signal.SIGKILL)
        ch.popen.wait(30)
        self.last_kill = max(self.last_kill, t)
        self.rec.write("kill", proc=ch.proc, pid=ch.popen.pid, t=t, t_after=time.time(), straggler=straggler)

    def kill_all(self) -> None:
        """Kill and reap every child still running (also on the way out of a failure)."""
        for ch in list(self.children.values()):
            if ch.popen.poll() is None:
                ch.popen.kill()
            ch.popen.wait()
        self.children.clear()

    # -- actions ----------------------------------------------------------------------------

    def reweight(self) -> None:
        m = self.rng.choice(sorted(self.weights))
        weight = self.rng.choice([w for w in self.plan.weights if w != self.weights[m]])
        cap = self.caps[m]
        if self.rng.random() < 0.35:  # change the cap too; never below the largest request (2)
            cap = self.rng.choice([c for c in (2, 3, 4, None) if c != cap])
        t_req = time.time()
        self.pool.set_weight(m, weight, max_units=cap)
        self.rec.write("reweight", member=m, weight=weight, max_units=cap, old_weight=self.weights[m],
                       old_max=self.caps[m], t_req=t_req, t=time.time())
        self.weights[m], self.caps[m] = weight, cap

    def resize(self, up: bool) -> None:
        lo, hi = self.plan.capacities
        choices = [c for c in range(lo, hi + 1) if (c > self.capacity if up else c < self.capacity)]
        if not choices:
            choices = [c for c in range(lo, hi + 1) if c != self.capacity]
        new = self.rng.choice(choices)
        t_req = time.time()
        self.pool.configure(capacity=new)
        self.rec.write("resize", capacity=new, old=self.capacity, t_req=t_req, t=time.time())
        self.capacity = new

    def holding(self, ch: Child) -> bool:
        """Whether one of the child's threads holds a lease now, from the tail of its records."""
        try:
            with open(self.run_dir / f"w{ch.proc:04d}.jsonl", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(f.tell() - 16384, 0))
                lines = f.read().splitlines()[1:]
        except OSError:
            return False
        last: dict[Any, str] = {}
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "th" in r:
                last[r["th"]] = r["ev"] if r["ev"] != "renew" or r["ok"] else "lost"
        return any(ev in ("grant", "renew", "release") for ev in last.values())

    def chaos_kill(self) -> None:
        alive = [ch for ch in self.children.values() if not ch.killed and ch.popen.poll() is None]
        if not alive:
            return
        holders = [ch for ch in alive if self.rng.random() < 0.5 and self.holding(ch)]
        victim = self.rng.choice(holders or alive)  # half the time, a process holding a lease
        self.kill(victim)
        self.pending.append((time.time() + self.rng.uniform(0.1, 0.8), victim.member, victim.proc))

    def revoke(self) -> None:
        snap = self.snapshot()  # fresh: most leases live for tens of ms only
        live = sorted((lid, v) for lid, v in snap["leases"].items() if v[4] is not None and v[4] > snap["server_ms"])
        if not live:
            return
        lid, (units, token, _ttl, _g, _exp, member) = self.rng.choice(live)
        t_req = time.time()
        ended = self.pool.revoke(lid)
        self.rec.write("revoke", id=lid, token=token, member=member, units=units, t_req=t_req, t=time.time(),
                       ended=ended)

    def snapshot(self) -> dict[str, Any]:
        """One atomic read of the pool's raw keys (no script: nothing is reclaimed by it)."""
        k = self.pool.keys.key
        pipe = self.client.pipeline(transaction=True)
        pipe.time()
        pipe.hgetall(k("pool"))
        pipe.hgetall(k("members"))
        pipe.hgetall(k("leases"))
        pipe.zrange(k("expiry"), 0, -1, withscores=True)
        pipe.hkeys(k("waiters"))
        t_req = time.time()
        (sec, usec), pool, members, leases, expiry, waiters = pipe.execute()
        exp = {lid: int(score) for lid, score in expiry}
        parsed = {}
        for lid, record in leases.items():
            units, token, ttl, granted, member = record.split(":", 4)
            parsed[lid] = [int(units), int(token), int(ttl), int(granted), exp.get(lid), member]
        snap = {"t_req": t_req, "t": time.time(), "server_ms": int(sec) * 1000 + int(usec) // 1000,
                "capacity": int(pool.get("capacity", 0)), "held": int(pool.get("held", 0)),
                "waiting": int(pool.get("waiting", 0)), "avg_hold": float(pool.get("avg_hold", 0)), "leases": parsed,
                "expiry_only": sorted(set(exp) - set(leases)), "waiters": sorted(waiters),
                "members": {m: _member(m, r, int(sec) * 1000 + int(usec) // 1000) for m, r in members.items()}}
        self.rec.write("snapshot", **snap)
        self.last_snapshot = snap
        return snap

    # -- the run ----------------------------------------------------------------------------

    def clock_offset_ms(self) -> float:
        """Server clock minus ours (ms), from the fastest of a few TIME round trips; 0 when it
        is within the measurement's own error (the same host reads the same clock)."""
        best = None
        for _ in range(5):
            a = time.time()
            sec, usec = self.client.time()
            b = time.time()
            if best is None or b - a < best[0]:
                best = (b - a, int(sec) * 1000 + int(usec) / 1000 - (a + b) * 500)
        assert best is not None
        return best[1] if abs(best[1]) > 20 + best[0] * 1000 else 0.0

    def schedule(self, t0: float, chaos_end: float) -> list[tuple[float, str, Any]]:
        p, rng = self.plan, self.rng
        actions: list[tuple[float, str, Any]] = []
        start, n = t0, 0
        while start + p.settle + p.calm <= chaos_end:
            actions.append((start, "reweight", None))
            if n < 2 or rng.random() < 0.6:  # the first two: one up, one down
                actions.append((start + 0.001, "resize", n % 2 == 0))
            calm_from = start + p.settle
            actions.append((calm_from, "window", (n, calm_from, calm_from + p.calm)))
            chaos_from, end = calm_from + p.calm, min(start + p.phase, chaos_end)
            for kind, rate in (("kill", p.kill_rate), ("revoke", p.revoke_rate)):
                times = []
                t = chaos_from + rng.expovariate(rate)
                while t < end:
                    times.append(t)
                    t += rng.expovariate(rate)
                if not times and end - chaos_from > 0.5:
                    times = [rng.uniform(chaos_from, end)]
                actions += [(t, kind, None) for t in times]
            start, n = start + p.phase, n + 1
        return sorted(actions, key=lambda a: a[0])

    def run(self) -> Report:
        p = self.plan
        offset = self.clock_offset_ms()
        self.pool.configure(capacity=p.capacity)
        for m, (w, cap, _) in p.members.items():
            self.pool.set_weight(m, w, max_units=cap)
        self.rec.write("config", t=time.time(), pool=self.pool.name, prefix=self.prefix, capacity=p.capacity,
                       members={m: {"weight": w, "max_units": c, "units_max": u} for m, (w, c, u) in p.members.items()},
                       ttl_s=p.ttl, margin_s=p.margin, max_timeout_s=p.max_timeout, clock_offset_ms=offset,
                       procs=p.procs, threads=p.threads, seed=self.seed)
        t_begin = time.time()
        self.stop_at = t_begin + p.seconds
        members = sorted(p.members)
        for i in range(p.procs):
            self.spawn(members[i % len(members)])
        # Chaos ends early enough that every killed lease (ttl) and every dead waiter (its
        # timeout + 1 s) is gone, with margin, while the workers still run.
        tail = max(p.ttl + p.margin, p.max_timeout + 1 + p.margin) + 1.0
        t0 = t_begin + min(3.0, p.seconds / 8)  # let the workers start and fill the queue
        actions = self.schedule(t0, self.stop_at - tail)
        next_snap = time.time()
        self.log(f"soak: {p.procs} processes x {p.threads} threads, {len(p.members)} members, "
                 f"{p.seconds:.0f}s, {sum(a[1] == 'window' for a in actions)} phases; records in {self.run_dir}")
        while time.time() < self.stop_at:
            now = time.time()
            if now >= next_snap:
                self.snapshot()
                next_snap = now + p.snapshot_every
            while actions and actions[0][0] <= time.time():
                _, kind, arg = actions.pop(0)
                self.act(kind, arg)
            for item in [x for x in self.pending if x[0] <= time.time()]:
                self.pending.remove(item)
                self.spawn(item[1], replaces=item[2])
            self.reap()
            wake = min([next_snap] + [a[0] for a in actions[:1]] + [x[0] for x in self.pending])
            time.sleep(min(max(wake - time.time(), 0.001), 0.05))
        self.finish()
        self.rec.close()
        return check(load_records(self.run_dir))

    def act(self, kind: str, arg: Any) -> None:
        try:
            if kind == "reweight":
                self.reweight()
            elif kind == "resize":
                self.resize(up=arg)
            elif kind == "window":
                phase, start, end = arg
                self.rec.write("window", phase=phase, start=start, end=end)
            elif kind == "kill":
                self.chaos_kill()
            elif kind == "revoke":
                self.revoke()
        except Exception as e:  # recorded; the checker counts it as a violation
            self.rec.write("orch-error", what=kind, msg=repr(e), t=time.time())

    def finish(self) -> None:
        p = self.plan
        # Workers stop by themselves: a thread's last acquire times out, its last hold ends.
        deadline = self.stop_at + p.max_timeout + 1.5 * p.ttl + 20
        while self.children and time.time() < deadline:
            self.reap()
            time.sleep(0.05)
        for ch in list(self.children.values()):
            self.kill(ch, straggler=True)
        self.reap()
        # Every killed lease has expired and every dead waiter passed its deadline, with margin.
        clean_at = self.last_kill + max(p.ttl, p.max_timeout + 1) + p.margin
        time.sleep(max(clean_at - time.time(), 0))
        st = self.pool.status()  # one call: reclaims what has expired, purges dead waiters
        n_leases = len(self.pool.leases())
        snap = self.snapshot()
        k = self.pool.keys.key
        raw = {}
        for suffix in DRAINED:
            kind = self.client.type(k(suffix))
            size = {"hash": self.client.hlen, "zset": self.client.zcard, "list": self.client.llen}.get(
                kind, lambda _k: 0)(k(suffix))
            raw[suffix] = size
        wake = [key for key in self.client.scan_iter(match=self.pool.keys.wake_prefix + "*", count=1000)
                if self.client.pttl(key) < 0]
        self.pool.delete()
        left = sorted(self.client.scan_iter(match=self.prefix + ":*", count=1000))
        self.rec.write("final", t=time.time(), status={"held": st.held, "waiting": st.waiting, "leases": n_leases},
                       raw=raw, members=snap["members"], wake_without_expiry=wake, after_delete=left)


def run_soak(*, url: Optional[str] = None, seconds: float = 180.0, procs: int = 32, seed: int = 1,
             run_dir: Optional[Path] = None, threads: int = 3,
             log: Callable[[str], None] = lambda s: print(s, flush=True)) -> tuple[Report, Path]:
    """Run a soak and check it; returns the report and the directory holding the records.
    Every child process is killed and reaped on the way out, also on failure."""
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="wshare-soak-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    server = RedisServer().start() if url is None else None
    orch = None
    try:
        orch = Orchestrator(plan_for(seconds, procs, threads), server.url if server else str(url), run_dir, seed, log)
        report = orch.run()
    finally:
        if orch is not None:
            orch.kill_all()
            orch.rec.close()
            orch.client.close()
        if server is not None:
            server.stop()
    return report, run_dir


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="Redis URL (default: start a private redis-server)")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--procs", type=int, default=32, help="worker processes (each with --threads threads)")
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, help="where the records go (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the records also when the soak passes")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    a = ap.parse_args(argv)
    started = time.time()
    report, run_dir = run_soak(url=a.url, seconds=a.minutes * 60, procs=a.procs, seed=a.seed, run_dir=a.dir,
                               threads=a.threads)
    print(report.format())
    for row in report.fairness:
        print("  fairness", json.dumps(row, separators=(",", ":")))
    print(f"soak took {time.time() - started:.1f}s")
    if a.json:
        print(json.dumps({**report.counts, "violations": report.total_violations}))
    if report.ok and not a.keep and a.dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"records kept in {run_dir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
