"""Section 1-2 of the benchmark: the round-trip floor and uncontended acquire+release cycles.

One client, interleaved rounds: two EVALSHA of `return 1` per cycle (the floor), PING,
wshare try_acquire+release, wshare Lock, redis-py Lock, python-redis-lock. Medians, and
ratios to the floor computed within the run.
    python benchmarks/cycle.py [--url URL] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import redis

from wshare_redis import Lock, Pool

FLOOR = "floor: 2 x EVALSHA return 1"


def timed(fn: Callable[[], Any], seconds: float, batch: int = 50) -> tuple[int, float]:
    """Call fn in batches for about ``seconds``: (calls made, seconds taken)."""
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= end:
            return n, now - t0


def rate(fn: Callable[[], Any], seconds: float) -> float:
    n, elapsed = timed(fn, seconds)
    return n / elapsed


def cases(r: redis.Redis) -> dict[str, Callable[[], Any]]:
    one = r.register_script("return 1")
    pool = Pool(r, "bench-cycle")
    pool.configure(capacity=4)
    lock = Lock(r, "bench-lock")
    rlock = r.lock("bench-redis-py-lock", timeout=30)

    def floor() -> None:
        one()
        one()

    def lock_cycle() -> None:
        lock.acquire()
        lock.release()

    def redis_py_lock() -> None:
        rlock.acquire()
        rlock.release()

    out: dict[str, Callable[[], Any]] = {
        FLOOR: floor, "PING": r.ping, "wshare try_acquire+release": lambda: pool.try_acquire("m").release(),
        "wshare Lock acquire+release": lock_cycle, "redis-py Lock acquire+release": redis_py_lock}
    try:
        import redis_lock  # python-redis-lock, the [bench] extra
        prl = redis_lock.Lock(r, "bench-prl", expire=30)

        def prl_cycle() -> None:
            prl.acquire()
            prl.release()
        out["python-redis-lock acquire+release"] = prl_cycle
    except ImportError:
        pass
    return out


def run(url: str, quick: bool) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(url)
    todo = cases(r)
    seconds, rounds = (0.4, 2) if quick else (2.0, 3)
    for fn in todo.values():
        rate(fn, 0.2)  # warm up: scripts loaded, connections open
    results: dict[str, list[float]] = {k: [] for k in todo}
    for _ in range(rounds):
        results[FLOOR].append(rate(todo[FLOOR], seconds))
        for k, fn in todo.items():
            if k != FLOOR:
                results[k].append(rate(fn, seconds))
    Pool(r, "bench-cycle").delete()
    Pool(r, "bench-lock").delete()
    floor = statistics.median(results[FLOOR])
    return [{"section": "1-2 uncontended, one client", "name": k, "value": statistics.median(v),
             "unit": "cycles/s", "ratio": statistics.median(v) / floor, "note": ""} for k, v in results.items()]


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'uncontended, one client':40} {'cycles/s':>10} {'x floor':>8}"]
    lines += [f"{r['name']:40} {r['value']:10,.0f} {r['ratio']:8.2f}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.url:
        print(format_rows(run(a.url, a.quick)))
    else:
        from wshare_redis.embedded import RedisServer
        with RedisServer() as server:
            print(format_rows(run(server.url, a.quick)))


if __name__ == "__main__":
    main()
