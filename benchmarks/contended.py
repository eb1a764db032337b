"""Contended benchmark (issue 5, sections 3 and 4): 8 processes share one lock or a small pool.

Each worker process repeatedly acquires, holds for about 1 ms (``time.sleep(0.001)``) and
releases, for a fixed window. Section 3 (capacity 1): wshare ``Lock``, a wshare ``Pool`` of
capacity 1 shared by one member, redis-py's ``Lock`` (default 0.1 s polling and 1 ms polling)
and python-redis-lock. Section 4 (capacity 4): a wshare ``Pool`` of capacity 4 against
dramatiq's ``ConcurrentRateLimiter(limit=4)`` retried every 1 ms. Each section also runs a
bound: ``capacity`` tokens in a bare Redis list, taken with BLPOP and given back with RPUSH
(Redis serves blocked clients first come, first served). That is the cheapest fair hand-off
Redis offers: one plain command each way, no script, no expiry, no crash safety, no weights.
What it reaches is what this machine allows any fair hand-off through Redis.

Measures per configuration:
- acquisitions/s over the window, and their ratio to the hold-time ceiling
  (capacity / mean measured hold time, i.e. what a zero-cost hand-off would reach);
- hand-off latency p50/p99: from a release (perf_counter just before ``release()``) to the
  grant (perf_counter just after ``acquire()`` returns) in another process. Each grant is
  paired with the latest earlier release not yet paired; grants that pair with a release of
  the same process are re-acquisitions, not hand-offs. ``time.perf_counter`` is
  CLOCK_MONOTONIC on Linux, one clock for every process on the machine;
- Jain's fairness index over the processes' acquisition counts;
- capacity 1 only: how often the process that released last also got the next grant
  (fair FIFO hand-off among 8 processes gives 0%; a fair lottery about 1/8).

The caller owns the Redis server behind ``url``: every configuration FLUSHes its database.

    python benchmarks/contended.py --url redis://127.0.0.1:6431/0 [--quick]
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import sys
import time
import traceback
from collections import Counter
from typing import Any, Callable, Optional

PROCS = 8
HOLD_S = 0.001
LEASE_S = 10            # lease / lock expiry where a library takes one
LEAD_S = 0.4            # from sending a configuration to the workers to the window's start
DRAIN_S = 2.0           # after the window, how long a waiting acquire may still block
SECTION_1 = "3 contended cap 1"
SECTION_4 = "4 contended cap 4"

# (section, name, adapter key, capacity)
CONFIGS: list[tuple[str, str, str, int]] = [
    (SECTION_1, "wshare Lock", "wshare-lock", 1),
    (SECTION_1, "wshare Pool cap 1, one member", "wshare-pool", 1),
    (SECTION_1, "redis-py Lock, sleep 0.1 (default)", "redispy-default", 1),
    (SECTION_1, "redis-py Lock, sleep 0.001", "redispy-1ms", 1),
    (SECTION_1, "python-redis-lock", "prl", 1),
    (SECTION_1, "bound: BLPOP/RPUSH token list", "token-list", 1),
    (SECTION_4, "wshare Pool cap 4, one member", "wshare-pool", 4),
    (SECTION_4, "dramatiq CRL limit 4, retry 1 ms", "dramatiq-1ms", 4),
    (SECTION_4, "bound: BLPOP/RPUSH token list", "token-list", 4),
]

Adapter = tuple[Callable[[float], bool], Callable[[], Any], Callable[[], None]]


# -- adapters: run inside the worker processes ---------------------------------------------
# Each returns (acquire(deadline) -> bool, release(), close()). acquire waits by the library's
# own mechanism until granted (True) or until the perf_counter deadline passes (False).

def _remaining(deadline: float) -> float:
    return max(0.001, deadline - time.perf_counter())


def _adapter(kind: str, url: str, key: str, capacity: int) -> Adapter:
    import redis
    r = redis.Redis.from_url(url)
    r.ping()  # connect before the window opens
    close = r.close

    if kind == "wshare-lock":
        from wshare_redis import AcquireTimeout, Lock
        lock = Lock(r, key, ttl=LEASE_S)

        def acquire(deadline: float) -> bool:
            try:
                lock.acquire(timeout=_remaining(deadline))
                return True
            except AcquireTimeout:
                return False
        return acquire, lock.release, close

    if kind == "wshare-pool":
        from wshare_redis import AcquireTimeout, Pool
        pool = Pool(r, key)
        held: list[Any] = []

        def acquire(deadline: float) -> bool:
            try:
                held.append(pool.acquire("m", ttl=LEASE_S, timeout=_remaining(deadline)))
                return True
            except AcquireTimeout:
                return False

        def release() -> Any:
            return held.pop().release()
        return acquire, release, close

    if kind in ("redispy-default", "redispy-1ms"):
        kw: dict[str, Any] = {"timeout": LEASE_S}
        if kind == "redispy-1ms":
            kw["sleep"] = 0.001
        rlock = r.lock(key, **kw)

        def acquire(deadline: float) -> bool:
            return bool(rlock.acquire(blocking=True, blocking_timeout=_remaining(deadline)))
        return acquire, rlock.release, close

    if kind == "prl":
        import redis_lock
        plock = redis_lock.Lock(r, key, expire=LEASE_S)

        def acquire(deadline: float) -> bool:
            # timeout: an int in [1, expire]; it only bounds the BLPOP wait for a signal.
            t = min(LEASE_S, max(1, math.ceil(deadline - time.perf_counter())))
            return bool(plock.acquire(blocking=True, timeout=t))
        return acquire, plock.release, close

    if kind == "dramatiq-1ms":
        from dramatiq.rate_limits import ConcurrentRateLimiter
        from dramatiq.rate_limits.backends import RedisBackend
        limiter = ConcurrentRateLimiter(RedisBackend(client=r), key, limit=capacity)
        cms: list[Any] = []

        def acquire(deadline: float) -> bool:
            while True:
                cm = limiter.acquire(raise_on_failure=False)
                if cm.__enter__():
                    cms.append(cm)
                    return True
                cm.__exit__(None, None, None)
                if time.perf_counter() >= deadline:
                    return False
                time.sleep(0.001)

        def release() -> Any:
            return cms.pop().__exit__(None, None, None)
        return acquire, release, close

    if kind == "token-list":
        def acquire(deadline: float) -> bool:
            return r.blpop([key], timeout=_remaining(deadline)) is not None

        def release() -> Any:
            return r.rpush(key, b"t")
        return acquire, release, close

    raise ValueError(f"unknown adapter {kind!r}")


def _run_config(idx: int, url: str, kind: str, key: str, capacity: int,
                start_at: float, end_at: float, hold_s: float) -> dict[str, Any]:
    acquire, release, close = _adapter(kind, url, key, capacity)
    grants: list[float] = []
    releases: list[float] = []
    errors: Counter[str] = Counter()
    first_error: dict[str, str] = {}
    timeouts = 0
    late = time.perf_counter() - start_at
    while time.perf_counter() < start_at:
        time.sleep(max(0.0, min(0.01, start_at - time.perf_counter())))
    stop_waiting = end_at + DRAIN_S
    try:
        while time.perf_counter() < end_at:
            try:
                ok = acquire(stop_waiting)
            except Exception as e:  # errors under contention are data
                name = "acquire: " + type(e).__name__
                errors[name] += 1
                first_error.setdefault(name, repr(e)[:300])
                time.sleep(0.001)
                continue
            if not ok:
                timeouts += 1
                continue
            t_grant = time.perf_counter()
            time.sleep(hold_s)
            t_release = time.perf_counter()
            try:
                release()
            except Exception as e:
                name = "release: " + type(e).__name__
                errors[name] += 1
                first_error.setdefault(name, repr(e)[:300])
            grants.append(t_grant)
            releases.append(t_release)
    finally:
        close()
    return {"idx": idx, "grants": grants, "releases": releases, "timeouts": timeouts,
            "errors": dict(errors), "first_error": first_error, "late_s": late}


def _worker_loop(idx: int, url: str, conn: Any, results: Any) -> None:
    """A worker process: pre-import the libraries, then run configurations sent by the parent."""
    import warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    import redis  # noqa: F401
    import redis_lock  # noqa: F401
    import dramatiq.rate_limits  # noqa: F401
    import wshare_redis  # noqa: F401
    results.put({"idx": idx, "ready": True})
    while True:
        cmd = conn.recv()
        if cmd is None:
            return
        try:
            results.put(_run_config(idx, url, *cmd))
        except Exception:
            results.put({"idx": idx, "fatal": traceback.format_exc()})


# -- analysis ------------------------------------------------------------------------------

def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = math.floor(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def jain(counts: list[int]) -> float:
    total = sum(counts)
    squares = sum(c * c for c in counts)
    return total * total / (len(counts) * squares) if squares else float("nan")


def analyse(results: list[dict[str, Any]], capacity: int, start_at: float,
            end_at: float) -> dict[str, Any]:
    """Pair every grant with the latest earlier unpaired release (for capacity 1: the
    release just before it) and compute the row's measures over grants in the window."""
    events: list[tuple[float, int, int]] = []  # (time, 0 release / 1 grant, process)
    counts: list[int] = []
    holds: list[float] = []
    for res in results:
        n = 0
        for g, rel in zip(res["grants"], res["releases"]):
            events.append((g, 1, res["idx"]))
            events.append((rel, 0, res["idx"]))
            if start_at <= g < end_at:
                n += 1
                holds.append(rel - g)
        counts.append(n)
    events.sort()
    unpaired: list[tuple[float, int]] = []  # releases not yet taken by a grant (a stack)
    free_at_start = capacity
    handoffs: list[float] = []
    same = paired_in_window = violations = 0
    for t, kind, proc in events:
        if kind == 0:
            unpaired.append((t, proc))
            continue
        if unpaired:
            t_rel, releaser = unpaired.pop()
        elif free_at_start:
            free_at_start -= 1
            continue
        else:
            violations += 1  # more holders than capacity
            continue
        if not (start_at <= t < end_at and t_rel >= start_at):
            continue
        paired_in_window += 1
        if releaser == proc:
            same += 1
        else:
            handoffs.append(t - t_rel)
    window = end_at - start_at
    total = sum(counts)
    mean_hold = sum(holds) / len(holds) if holds else float("nan")
    ceiling = capacity / mean_hold if holds else float("nan")
    return {
        "acq_per_s": total / window,
        "ceiling": ceiling,
        "ceiling_ratio": (total / window) / ceiling if holds else float("nan"),
        "handoff_p50_ms": 1e3 * _pct(handoffs, 50),
        "handoff_p99_ms": 1e3 * _pct(handoffs, 99),
        "jain": jain(counts),
        "same_process": same / paired_in_window if paired_in_window else float("nan"),
        "counts": counts,
        "mean_hold_ms": 1e3 * mean_hold,
        "violations": violations,
    }


# -- the parent ----------------------------------------------------------------------------

def _prepare(url: str, kind: str, key: str, capacity: int) -> None:
    import redis
    r = redis.Redis.from_url(url)
    try:
        r.flushdb()
        if kind == "wshare-lock":
            from wshare_redis import Lock
            lock = Lock(r, key, ttl=LEASE_S)  # created on first use: do that use here
            lock.acquire(timeout=1.0)
            lock.release()
        elif kind == "wshare-pool":
            from wshare_redis import Pool
            Pool(r, key).configure(capacity=capacity)
        elif kind == "token-list":
            r.rpush(key, *[b"t"] * capacity)
    finally:
        r.close()


def _collect(results: Any, n: int, deadline: float, what: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        try:
            out.append(results.get(timeout=max(0.1, deadline - time.perf_counter())))
        except Exception:
            raise RuntimeError(f"contended benchmark: only {len(out)} of {n} workers answered ({what})")
    fatal = [x["fatal"] for x in out if "fatal" in x]
    if fatal:
        raise RuntimeError(f"contended benchmark: a worker failed ({what}):\n{fatal[0]}")
    return out


def run(url: str, quick: bool) -> list[dict]:
    """Run sections 3 and 4 against the Redis at ``url`` (FLUSHed); return one row per config.

    A full run goes round the configurations three times with 2 s windows and reports each
    measure's median over the rounds, so a burst of load from elsewhere on a shared machine
    skews one window of a row, not the row."""
    window, rounds = (1.5, 1) if quick else (2.0, 3)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    pipes, procs = [], []
    measured: dict[int, list[dict[str, Any]]] = {n: [] for n in range(len(CONFIGS))}
    try:
        for i in range(PROCS):
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=_worker_loop, args=(i, url, child_end, results), daemon=True)
            p.start()
            pipes.append(parent_end)
            procs.append(p)
        _collect(results, PROCS, time.perf_counter() + 60, "start-up")
        for _ in range(rounds):
            for n, (section, name, kind, capacity) in enumerate(CONFIGS):
                key = f"bench-contended-{n}"
                _prepare(url, kind, key, capacity)
                start_at = time.perf_counter() + LEAD_S
                end_at = start_at + window
                for conn in pipes:
                    conn.send((kind, key, capacity, start_at, end_at, HOLD_S))
                out = _collect(results, PROCS, end_at + DRAIN_S + 30, name)
                out.sort(key=lambda x: x["idx"])
                a = analyse(out, capacity, start_at, end_at)
                _warn(name, out, a)
                measured[n].append(a)
    finally:
        for conn in pipes:
            try:
                conn.send(None)
            except OSError:
                pass
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()  # our own child, by its handle
                p.join()
    rows: list[dict] = []
    for n, (section, name, _kind, capacity) in enumerate(CONFIGS):
        runs = measured[n]

        def med(key: str) -> float:
            values = [x[key] for x in runs if x[key] == x[key]]  # NaN-free
            return statistics.median(values) if values else float("nan")
        rows.append({
            "section": section,
            "name": name,
            "acq_per_s": med("acq_per_s"),
            "ceiling_ratio": med("ceiling_ratio"),
            "handoff_p50_ms": med("handoff_p50_ms"),
            "handoff_p99_ms": med("handoff_p99_ms"),
            "jain": med("jain"),
            "same_process": med("same_process") if capacity == 1 else None,
        })
    return rows


def _warn(name: str, out: list[dict[str, Any]], a: dict[str, Any]) -> None:
    """Say on stderr what would make a row misleading: errors, late starts, overlapping holders."""
    errors: Counter[str] = Counter()
    first: dict[str, str] = {}
    for x in out:
        errors.update(x["errors"])
        for k, v in x["first_error"].items():
            first.setdefault(k, v)
    notes = []
    if errors:
        notes.append(f"errors {dict(errors)}, first: {next(iter(first.values()))}")
    late = max(x["late_s"] for x in out)
    if late > 0:
        notes.append(f"a worker was ready {late * 1e3:.0f} ms after the window opened")
    if a["violations"]:
        notes.append(f"{a['violations']} grants beyond capacity")
    if notes:
        print(f"contended benchmark, {name}: " + "; ".join(notes), file=sys.stderr)


def _f(value: Optional[float], width: int, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or value != value:
        return "-".rjust(width)
    return (format(value * scale, spec) + suffix).rjust(width)


def format_rows(rows: list[dict]) -> str:
    """An aligned text table (under 100 columns), one block per section."""
    head = (f"{'':34} {'acq/s':>7} {'ceiling':>7} {'x ceil':>6} {'x bound':>7} {'hand-off ms':>13} "
            f"{'Jain':>5} {'same':>5}")
    sub = f"{'':34} {'':>7} {'':>7} {'':>6} {'':>7} {'p50':>6} {'p99':>6} {'':>5} {'proc':>5}"
    bounds = {row["section"]: row["acq_per_s"] for row in rows if row["name"].startswith("bound:")}
    lines: list[str] = []
    section = None
    for row in rows:
        bound = bounds.get(row["section"])
        if row["section"] != section:
            section = row["section"]
            if lines:
                lines.append("")
            lines += [f"{section}, {PROCS} processes, hold ~{HOLD_S * 1e3:g} ms", head, sub]
        ratio = row["ceiling_ratio"]
        ceiling = row["acq_per_s"] / ratio if ratio and ratio == ratio else None
        lines.append(
            f"{row['name'][:34]:34} {_f(row['acq_per_s'], 7, ',.0f')} {_f(ceiling, 7, ',.0f')} "
            f"{_f(ratio, 6, '.2f')} {_f(row['acq_per_s'] / bound if bound else None, 7, '.2f')} "
            f"{_f(row['handoff_p50_ms'], 6, '.2f')} "
            f"{_f(row['handoff_p99_ms'], 6, '.2f')} {_f(row['jain'], 5, '.3f')} "
            f"{_f(row['same_process'], 5, '.0f', 100.0, '%')}")
    lines += ["", "ceiling: capacity / mean hold; hand-off: release to another process's grant;",
              "x bound: acq/s over the bound's (a bare BLPOP/RPUSH token list: the fastest fair",
              "hand-off through Redis, with no expiry, crash safety or weights);",
              "same proc: grants (capacity 1) taken by the process that released last."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="a private Redis; its database is FLUSHed")
    ap.add_argument("--quick", action="store_true", help="1.5 s windows instead of 5 s")
    a = ap.parse_args()
    print(format_rows(run(a.url, a.quick)))


if __name__ == "__main__":
    main()
