"""Uncontended cycle rate: wshare try_acquire+release and Lock against the round-trip floor.

Starts a private redis-server (or uses --url) and measures, interleaved over rounds:
the floor (two EVALSHA of `return 1` per cycle), PING, wshare try_acquire+release,
wshare Lock acquire+release, and redis-py's Lock, then prints medians and ratios to the floor.
    python benchmarks/cycle.py [--seconds 2] [--rounds 3] [--url URL]
"""
from __future__ import annotations

import argparse
import statistics
import time

import redis

from wshare_redis import Lock, Pool
from wshare_redis.embedded import RedisServer


def rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return n / (now - t0)


def measure(url: str, seconds: float, rounds: int) -> dict[str, list[float]]:
    r = redis.Redis.from_url(url)
    one = r.register_script("return 1")
    pool = Pool(r, "bench-cycle")
    pool.configure(capacity=4)
    lock = Lock(r, "bench-lock")
    rlock = r.lock("bench-redis-py-lock", timeout=30)

    def floor() -> None:
        one()
        one()

    def wshare_cycle() -> None:
        pool.try_acquire("m").release()

    def lock_cycle() -> None:
        lock.acquire()
        lock.release()

    def redis_py_lock() -> None:
        rlock.acquire()
        rlock.release()

    cases = {"floor: 2 x EVALSHA return 1": floor, "PING": r.ping, "wshare try_acquire+release": wshare_cycle,
             "wshare Lock acquire+release": lock_cycle, "redis-py Lock acquire+release": redis_py_lock}
    for fn in cases.values():
        rate(fn, 0.2)  # warm up: scripts loaded, connections open
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            results[k].append(rate(fn, seconds))
    pool.delete()
    Pool(r, "bench-lock").delete()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--url")
    a = ap.parse_args()
    if a.url:
        results = measure(a.url, a.seconds, a.rounds)
    else:
        with RedisServer() as server:
            results = measure(server.url, a.seconds, a.rounds)
    floor = statistics.median(results["floor: 2 x EVALSHA return 1"])
    print(f"{'uncontended, one client':34} {'cycles/s':>10} {'x floor':>8}")
    for k, v in results.items():
        m = statistics.median(v)
        print(f"{k:34} {m:10,.0f} {m / floor:8.2f}")


if __name__ == "__main__":
    main()
