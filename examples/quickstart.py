"""A short look at weighted sharing: two teams with weights 1 and 3 compete for 4 GPU slots.

Runs on a private redis-server if one is installed, else on an in-process fakeredis, or on
the Redis at $WSHARE_REDIS_URL. Prints each team's time-averaged share against its ideal.
    python examples/quickstart.py [--seconds 6]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import threading
import time
from collections import defaultdict
from typing import Iterator

import redis

from wshare_redis import Lock, Pool
from wshare_redis.embedded import RedisServer


@contextlib.contextmanager
def some_redis() -> Iterator[tuple[redis.Redis, str]]:
    url = os.environ.get("WSHARE_REDIS_URL")
    if url:
        yield redis.Redis.from_url(url), url
    elif shutil.which("redis-server"):
        with RedisServer() as server:
            yield redis.Redis.from_url(server.url), f"private redis-server at {server.url}"
    else:
        import fakeredis  # pip install 'wshare-redis[demo]'
        yield fakeredis.FakeRedis(), "in-process fakeredis"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    seconds = ap.parse_args().seconds
    with some_redis() as (r, where):
        print(f"Redis: {where}")
        pool = Pool(r, "quickstart-gpu")
        pool.configure(capacity=4)
        pool.set_weight("team-a", 1)
        pool.set_weight("team-b", 3)
        stop = time.monotonic() + seconds

        def worker(team: str, seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                with pool.acquire(team, ttl=10, timeout=10):
                    time.sleep(rng.expovariate(1 / 0.05))  # the job

        print(f"team-a (weight 1) and team-b (weight 3), 6 workers each, share 4 units for {seconds:g}s ...")
        threads = [threading.Thread(target=worker, args=(t, i)) for i in range(6) for t in ("team-a", "team-b")]
        for t in threads:
            t.start()
        # Sample the pool's own view of who holds what (the Redis side is the truth).
        held: dict[str, float] = defaultdict(float)
        samples = 0
        time.sleep(0.5)  # let every worker join the competition first
        while time.monotonic() < stop:
            for member, m in pool.status().members.items():
                held[member] += m.held
            samples += 1
            time.sleep(0.02)
        for t in threads:
            t.join()
        print(f"{'member':8} {'weight':>6} {'ideal':>6} {'achieved':>9}")
        for team, w in (("team-a", 1), ("team-b", 3)):
            print(f"{team:8} {w:6} {4 * w / 4:6.2f} {held[team] / samples:9.2f}")
        ratio = held["team-b"] / max(held["team-a"], 1e-9)
        print(f"team-b / team-a = {ratio:.2f} (ideal 3.00)")

        a, b = Lock(r, "quickstart-report"), Lock(r, "quickstart-report")
        with a:
            first = a.token
        with b:
            print(f"Lock: fencing tokens {first} then {b.token} (strictly increasing)")
        pool.delete()
        Pool(r, "quickstart-report").delete()


if __name__ == "__main__":
    main()
