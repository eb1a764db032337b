"""Weighted shares, scaling and memory: sections 5, 6 and 7 of the benchmark (issue 5).

    python benchmarks/scaling.py --url redis://127.0.0.1:6441/0 [--quick]

The URL must point at a private Redis: the run FLUSHes its database and resets its
statistics (CONFIG RESETSTAT). ``run(url, quick)`` returns the rows; ``format_rows`` prints them.

5. weighted: members with weights 1:2:3:4 (2 worker processes x 4 threads each, holding
   for an exponentially distributed ~20 ms) saturate a pool of 8. Each member's time-averaged
   held units (sampled from ``pool.status()``, the server's truth, every ~20 ms) against its
   ideal 8 * w / sum(w); then the weight-1 member is reweighted to 5 and the time until every
   member's rolling 0.5 s share is within 10% of its new ideal is reported.
6. scaling: mean client latency of one try_acquire+release cycle (one client) and server time
   per script call (INFO commandstats, fcall/evalsha usec per call) with 1 / 100 / 10,000 members
   registered, 0 / 100 / 1,000 waiters queued and 10,000 live leases, as ratios to 1 member.
   The states are separate pools built first and measured interleaved over rounds (median).
7. memory: MEMORY USAGE (SAMPLES 0) of the pool's keys before and after adding N members,
   N leases and N waiters: bytes per member, lease and waiter.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

import redis

from cycle import timed  # the same timing loop as the uncontended section
from wshare_redis import Pool
from wshare_redis.keys import KEY_SUFFIXES
from wshare_redis.pool import new_id

Row = dict[str, Any]

LONG_TTL = 600.0  # seconds: leases and parked requests set up for a measurement outlive it


def _row(section: str, name: str, value: float, unit: str, ratio: Optional[float] = None,
         note: str = "") -> Row:
    return {"section": section, "name": name, "value": float(value), "unit": unit,
            "ratio": None if ratio is None else float(ratio), "note": note}


def _bulk(pool: Pool, op: str, arg_lists: list[list[Any]], batch: int = 500) -> list[Any]:
    """Run one script op many times through pipelines (the script is loaded first)."""
    replies: list[Any] = []
    if not arg_lists:
        return replies
    script = getattr(pool._scripts, op)
    replies.append(script(keys=pool._script_keys, args=arg_lists[0]))  # loads it (NOSCRIPT-safe)
    for i in range(1, len(arg_lists), batch):
        pipe = pool.client.pipeline(transaction=False)
        for args in arg_lists[i:i + batch]:
            script(keys=pool._script_keys, args=args, client=pipe)
        replies.extend(pipe.execute())
    return replies


def _set_members(pool: Pool, names: list[str], weight: float = 1.0, max_units: str = "") -> None:
    for reply in _bulk(pool, "set_member", [[m, repr(float(weight)), max_units] for m in names]):
        if reply[0] != b"ok" and reply[0] != "ok":
            raise RuntimeError(f"set_member failed: {reply!r}")


def _grant_many(pool: Pool, member: str, n: int, units: int = 1) -> list[str]:
    """n leases of ``member`` (long TTL), granted through pipelined try-acquires."""
    ids = [new_id() for _ in range(n)]
    args = [[member, units, int(LONG_TTL * 1000), i, "try", 0, "", ""] for i in ids]
    for reply in _bulk(pool, "acquire", args):
        if reply[0] not in (b"ok", "ok"):
            raise RuntimeError(f"expected a grant, got {reply!r}")
    return ids


def _park_many(pool: Pool, members: list[str], units: int) -> list[str]:
    """One parked request (no client blocks on it) of ``units`` per entry of ``members``."""
    ids = [new_id() for _ in members]
    args = [[m, units, int(LONG_TTL * 1000), i, "park", 0, "", "1"] for m, i in zip(members, ids)]
    for reply in _bulk(pool, "acquire", args):
        if reply[0] not in (b"queued", "queued"):
            raise RuntimeError(f"expected the request to queue, got {reply!r}")
    return ids


# -- section 5: weighted shares ------------------------------------------------------------------

def _worker(url: str, pool_name: str, member: str, threads: int, hold: float, stop_at: float) -> None:
    """A worker process: ``threads`` threads acquire 1 unit, hold ~Exp(hold) s, release."""
    client = redis.Redis.from_url(url)
    pool = Pool(client, pool_name)

    def loop(seed: int) -> None:
        rnd = random.Random(seed)
        while time.time() < stop_at:
            try:
                lease = pool.acquire(member, units=1, ttl=10.0, timeout=min(1.0, max(stop_at - time.time(), 0.01)))
            except Exception:  # AcquireTimeout at the end of the run, or the server going away
                if time.time() >= stop_at:
                    return
                time.sleep(0.01)
                continue
            time.sleep(rnd.expovariate(1.0 / hold))
            try:
                lease.release()
            except Exception:
                return

    ts = [threading.Thread(target=loop, args=(os.getpid() * 100 + k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _sample(pool: Pool, until: float, every: float, out: list[tuple[float, dict[str, int]]]) -> None:
    nxt = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= until:
            return
        if now < nxt:
            time.sleep(nxt - now)
        st = pool.status()
        out.append((time.monotonic(), {m: s.held for m, s in st.members.items()}))
        nxt += every


def _mean_held(samples: list[tuple[float, dict[str, int]]], members: list[str]) -> dict[str, float]:
    n = max(len(samples), 1)
    return {m: sum(s.get(m, 0) for _, s in samples) / n for m in members}


def weighted(url: str, quick: bool) -> list[Row]:
    client = redis.Redis.from_url(url)
    capacity, hold, procs, threads = 8, 0.020, 2, 4
    weights = {"w1": 1.0, "w2": 2.0, "w3": 3.0, "w4": 4.0}
    new_weights = dict(weights, w1=5.0)
    warm, window, after = (1.0, 5.0, 4.0) if quick else (2.0, 15.0, 10.0)
    pool = Pool(client, "bench-weighted")
    pool.delete()
    pool.configure(capacity=capacity)
    for m, w in weights.items():
        pool.set_weight(m, w)
    members = list(weights)
    start_up = 1.5  # processes start and import before the clock below begins
    stop_at = time.time() + start_up + warm + window + after + 1.0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.abspath(__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    children = []
    for m in members:
        for _ in range(procs):
            spec = json.dumps([url, pool.name, m, threads, hold, stop_at])
            children.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", spec], env=env))
    rows: list[Row] = []
    try:
        time.sleep(start_up + warm)
        samples: list[tuple[float, dict[str, int]]] = []
        t0 = time.monotonic()
        _sample(pool, t0 + window, 0.02, samples)
        mean = _mean_held(samples, members)
        wsum = sum(weights.values())
        errors = {}
        for m in members:
            ideal = capacity * weights[m] / wsum
            errors[m] = abs(mean[m] - ideal) / ideal
        held_total = sum(mean.values())
        detail = " ".join(f"{m}:{mean[m]:.2f}/{capacity * weights[m] / wsum:.2f}" for m in members)
        rows.append(_row("5 weighted", "max rel. error of time-avg share", 100 * max(errors.values()), "%",
                         None, f"w 1:2:3:4, cap {capacity}, {len(samples)} samples over {window:.0f} s; "
                               f"held/ideal {detail}; mean held {held_total:.2f}"))
        for m in members:
            ideal = capacity * weights[m] / wsum
            rows.append(_row("5 weighted", f"share of {m} (weight {weights[m]:g})", mean[m], "units",
                             mean[m] / ideal, f"ideal {ideal:.3f}; ratio = achieved/ideal"))
        # Reweight w1 1 -> 5 and time the settling of the rolling 0.5 s shares.
        pool.set_weight("w1", new_weights["w1"])
        t_re = time.monotonic()
        post: list[tuple[float, dict[str, int]]] = []
        _sample(pool, t_re + after, 0.02, post)
        nsum = sum(new_weights.values())
        ideal_new = {m: capacity * new_weights[m] / nsum for m in members}
        roll, settle, stayed, checked = 0.5, None, 0, 0
        ideal_old = {m: capacity * weights[m] / wsum for m in members}
        steady = [_mean_held([s for s in samples if t - roll < s[0] <= t], members)
                  for t, _ in samples if t - samples[0][0] >= roll]
        steady_ok = sum(all(abs(sh[m] - ideal_old[m]) / ideal_old[m] <= 0.10 for m in members) for sh in steady)
        steady_pct = 100 * steady_ok / max(len(steady), 1)
        for i, (t, _) in enumerate(post):
            if t - t_re < roll:
                continue
            win = [s for s in samples + post[:i + 1] if t - roll < s[0] <= t]
            share = _mean_held(win, members)
            ok = all(abs(share[m] - ideal_new[m]) / ideal_new[m] <= 0.10 for m in members)
            if settle is not None:
                checked += 1
                stayed += ok
            elif ok:
                settle = t - t_re
        tail = [s for s in post if s[0] - t_re >= (settle if settle is not None else after / 2) + roll]
        tail_mean = _mean_held(tail, members)
        tail_err = max(abs(tail_mean[m] - ideal_new[m]) / ideal_new[m] for m in members) if tail else float("nan")
        if settle is None:
            rows.append(_row("5 weighted", "settle time after reweight w1 1->5", float("nan"), "s", None,
                             f"rolling {roll} s shares never all within 10% in {after:.0f} s"))
        else:
            rows.append(_row("5 weighted", "settle time after reweight w1 1->5", settle, "s", None,
                             f"first {roll} s window (ending then) all within 10% of new ideal; "
                             f"later windows within 10%: {100 * stayed / max(checked, 1):.0f}% "
                             f"(before the reweight, against the old ideals: {steady_pct:.0f}%: "
                             f"sampling noise); {roll} s is the earliest possible"))
        rows.append(_row("5 weighted", "max rel. error after settling", 100 * tail_err, "%", None,
                         "time-avg over the rest of the window, weights 5:2:3:4: " +
                         " ".join(f"{m}:{tail_mean[m]:.2f}/{ideal_new[m]:.2f}" for m in members)))
    finally:
        deadline = time.time() + 3.0
        for p in children:
            try:
                p.wait(timeout=max(stop_at + 2.0 - time.time(), 0.1) if time.time() < deadline else 0.1)
            except subprocess.TimeoutExpired:
                pass
        for p in children:
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            pool.delete()
        except Exception:
            pass
    return rows


# -- section 6: scaling ------------------------------------------------------------------------------

def _commandstat(client: redis.Redis) -> tuple[int, float]:
    info = client.info("commandstats")
    # FCALL on Redis 7+ (the Functions library), EVALSHA on older servers and bulk set-up
    stats = [info.get(k) or {} for k in ("cmdstat_fcall", "cmdstat_evalsha")]
    calls = sum(int(st.get("calls", 0)) for st in stats)
    usec = sum(float(st.get("usec", 0.0)) for st in stats)
    return calls, (usec / calls if calls else 0.0)


def _time_ops(fn: Callable[[], None], seconds: float) -> tuple[float, int]:
    """Mean microseconds per call of fn over about ``seconds``, and the number of calls."""
    n, elapsed = timed(fn, seconds, batch=20)
    return elapsed / n * 1e6, n


class _State:
    def __init__(self, name: str, note: str, cycle: Callable[[], None], renew: Callable[[], None]) -> None:
        self.name, self.note, self.cycle, self.renew = name, note, cycle, renew
        self.client_us: list[float] = []
        self.server_us: list[float] = []
        self.renew_us: list[float] = []


def _cycle_of(pool: Pool, member: str) -> Callable[[], None]:
    def cycle() -> None:
        lease = pool.try_acquire(member, units=1, ttl=30.0)
        if lease is None:
            raise RuntimeError(f"pool {pool.name}: try_acquire of {member} was not granted")
        lease.release()
    return cycle


def _build_states(client: redis.Redis, quick: bool) -> list[_State]:
    n_members = 1_000 if quick else 10_000
    n_leases = 1_000 if quick else 10_000
    waiter_counts = (100, 1_000)
    states = []

    def base_pool(name: str, capacity: int) -> Pool:
        pool = Pool(client, name)
        pool.configure(capacity=capacity)
        pool.set_weight("m", 1)
        return pool

    def add(pool: Pool, name: str, note: str, measured: str = "m") -> None:
        # The measured member holds one long lease, renewed by the "renew" op.
        lease = pool.try_acquire(measured, units=1, ttl=LONG_TTL)
        if lease is None:
            raise RuntimeError(f"{name}: no unit for the measured member's long lease")
        states.append(_State(name, note, _cycle_of(pool, measured), lambda: lease.renew(LONG_TTL)))

    p = base_pool("bench-s-1m", 4)
    add(p, "1 member", "baseline")
    p = base_pool("bench-s-100m", 4)
    _set_members(p, [f"reg-{i}" for i in range(99)])
    add(p, "100 members", "registered, idle")
    p = base_pool("bench-s-manym", 4)
    _set_members(p, [f"reg-{i}" for i in range(n_members - 1)])
    add(p, f"{n_members:,} members", "registered, idle" + (" (quick: 1,000, full: 10,000)" if quick else ""))
    for w in waiter_counts:
        # Waiters of 10 members capped at 2 units that each hold 1 unit and ask for 2: queued
        # requests that are not ready (their head exceeds the cap), so the measured member's
        # request ranks first and its try_acquire is granted while 1 unit stays free.
        p = base_pool(f"bench-s-{w}w", 10 + 2 + 1)
        capped = [f"capped-{i}" for i in range(10)]
        _set_members(p, capped, 1.0, "2")
        for c in capped:
            _grant_many(p, c, 1)
        _park_many(p, [capped[i % 10] for i in range(w)], 2)
        add(p, f"{w:,} waiters", "parked 2-unit requests of 10 capped members (not ready)")
    for w in waiter_counts:
        # Waiters that rank ahead: w members with one parked 2-unit request each, a hog holds
        # all but 1 unit. The measured member's 1-unit request would rank behind them (rule 2),
        # so its cycle is not granted: only renew is measured here.
        p = base_pool(f"bench-s-{w}rw", 20)
        lease = p.try_acquire("m", units=1, ttl=LONG_TTL)
        assert lease is not None
        _grant_many(p, "hog", 18)
        _park_many(p, [f"waiter-{i}" for i in range(w)], 2)
        if p.try_acquire("m", units=1, ttl=30.0) is not None:
            raise RuntimeError("expected ranked waiters to keep the measured member waiting")
        st = _State(f"{w:,} ranked waiters", f"{w} members each with a parked 2-unit request, ranked "
                    "ahead of m (1 unit free): try_acquire is busy, so renew only", lambda: None,
                    (lambda lease: lambda: lease.renew(LONG_TTL))(lease))
        st.cycle = None  # type: ignore[assignment]
        states.append(st)
    p = base_pool("bench-s-leases", 2 * n_leases + 4)
    _grant_many(p, "hog", n_leases)
    add(p, f"{n_leases:,} leases", "held by one member, 10 min TTL" + (" (quick: 1,000)" if quick else ""))
    return states


def scaling(url: str, quick: bool) -> list[Row]:
    client = redis.Redis.from_url(url)
    t_build = time.perf_counter()
    states = _build_states(client, quick)
    build_s = time.perf_counter() - t_build
    seconds, rounds = (0.25, 3) if quick else (0.6, 5)
    for st in states:  # warm up: connections open, scripts loaded
        if st.cycle:
            _time_ops(st.cycle, 0.05)
        _time_ops(st.renew, 0.02)
    one = client.register_script("return 1")

    def floor() -> None:
        one()
        one()

    floor_state = _State("floor", "2 x EVALSHA of `return 1`", floor, lambda: None)
    _time_ops(floor, 0.05)
    for k in range(rounds):
        for st in [floor_state] + states[k % len(states):] + states[:k % len(states)]:  # rotate order
            if st.cycle:
                client.config_resetstat()
                us, n = _time_ops(st.cycle, seconds)
                calls, per_call = _commandstat(client)
                if calls < 2 * n:
                    raise RuntimeError(f"commandstats saw {calls} evalsha calls for {n} cycles")
                st.client_us.append(us)
                st.server_us.append(per_call)
            if st is not floor_state:
                st.renew_us.append(_time_ops(st.renew, seconds / 3)[0])
    base = states[0]
    b_client = statistics.median(base.client_us)
    b_server = statistics.median(base.server_us)
    b_renew = statistics.median(base.renew_us)
    f_client = statistics.median(floor_state.client_us)
    f_server = statistics.median(floor_state.server_us)
    rows = [_row("6 scaling", "floor: 2 x EVALSHA return 1", f_client, "us", f_client / b_client,
                 "reference, same rounds; ratio = floor/baseline cycle (the issue's uncontended ratio)"),
            _row("6 scaling", "server/call, EVALSHA return 1", f_server, "us", None,
                 "reference: the server's fixed cost of a script call on this machine")]
    for st in states:
        if st.cycle:
            c = statistics.median(st.client_us)
            s = statistics.median(st.server_us)
            rows.append(_row("6 scaling", f"cycle, {st.name}", c, "us", c / b_client,
                             f"try_acquire+release, one client; {st.note}"))
            rows.append(_row("6 scaling", f"server/call, {st.name}", s, "us", s / b_server,
                             "fcall/evalsha usec per call (acquire and release)"))
    for st in states:
        r = statistics.median(st.renew_us)
        rows.append(_row("6 scaling", f"renew, {st.name}", r, "us", r / b_renew,
                         "lease.renew, one client" + ("; " + st.note if st.cycle is None else "")))
    rows.append(_row("6 scaling", "setup time", build_s, "s", None,
                     f"pipelined; medians of {rounds} interleaved rounds of {seconds} s per state"))
    return rows


# -- section 7: memory ---------------------------------------------------------------------------

def _pool_bytes(pool: Pool) -> int:
    total = 0
    for suffix in KEY_SUFFIXES:
        used = pool.client.memory_usage(pool.keys.key(suffix), samples=0)
        total += int(used or 0)
    return total


def memory(url: str, quick: bool) -> list[Row]:
    client = redis.Redis.from_url(url)
    n = 2_000 if quick else 10_000
    rows = []
    note = f"MEMORY USAGE SAMPLES 0 over the pool's keys, N = {n:,}"

    pool = Pool(client, "bench-mem-members")
    pool.configure(capacity=4)
    before = _pool_bytes(pool)
    _set_members(pool, [f"member-{i:06d}" for i in range(n)])
    rows.append(_row("7 memory", "per member (registered)", (_pool_bytes(pool) - before) / n, "bytes", None,
                     note + "; 13-byte names"))
    pool.delete()

    pool = Pool(client, "bench-mem-leases")
    pool.configure(capacity=n + 1)
    pool.set_weight("m", 1)
    pool.try_acquire("m", units=1, ttl=LONG_TTL)  # the member is active before: only leases count
    before = _pool_bytes(pool)
    _grant_many(pool, "m", n)
    rows.append(_row("7 memory", "per lease", (_pool_bytes(pool) - before) / n, "bytes", None,
                     note + "; one member, 32-hex ids (:leases + :expiry)"))
    pool.delete()

    pool = Pool(client, "bench-mem-waiters")
    pool.configure(capacity=1)
    pool.set_weight("m", 1)
    pool.set_weight("hog", 1)
    pool.try_acquire("hog", units=1, ttl=LONG_TTL)
    _park_many(pool, ["m"], 1)  # the member is already waiting: only the queue entries count
    before = _pool_bytes(pool)
    _park_many(pool, ["m"] * n, 1)
    rows.append(_row("7 memory", "per waiter (parked)", (_pool_bytes(pool) - before) / n, "bytes", None,
                     note + "; one member (:queue :waiters :sizes :parked); a blocking waiter has "
                            ":alive instead of :parked"))
    pool.delete()
    return rows


# -- entry points ------------------------------------------------------------------------------

def run(url: str, quick: bool) -> list[Row]:
    """Run sections 5, 6 and 7 against the private Redis at ``url`` (FLUSHDB, CONFIG RESETSTAT)."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    rows = weighted(url, quick)
    client.flushdb()
    rows += scaling(url, quick)
    client.flushdb()
    rows += memory(url, quick)
    client.flushdb()
    return rows


def _fmt_value(v: float) -> str:
    if v != v:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def format_rows(rows: list[Row]) -> str:
    """An aligned text table under 100 columns; notes go on their own indented lines."""
    import textwrap
    out, section = [], None
    head = f"{'measure':46} {'value':>10} {'unit':6} {'ratio':>6}"
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            out += ["", f"[{section}]", head]
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        out.append(f"{r['name'][:46]:46} {_fmt_value(r['value']):>10} {r['unit'][:6]:6} {ratio:>6}")
        if r.get("note"):
            out += textwrap.wrap(r["note"], width=96, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(out).lstrip("\n")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":  # a section-5 worker process
        url, pool_name, member, threads, hold, stop_at = json.loads(sys.argv[2])
        _worker(url, pool_name, member, int(threads), float(hold), float(stop_at))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="a private Redis: it is flushed and its stats reset")
    ap.add_argument("--quick", action="store_true", help="short windows and smaller counts (CI)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = run(a.url, a.quick)
    print(format_rows(rows))
    print(f"\n(took {time.perf_counter() - t0:.1f} s{', quick' if a.quick else ''})")


if __name__ == "__main__":
    main()
