"""A worker process for the multi-process tests: threads that acquire, hold, release and
record what they saw, one JSON line per lease, so the tests can check the record.

Run: python mp_worker.py --url URL --pool P --member M --threads N --hold-ms H
     --start UNIX_S --stop UNIX_S --out FILE [--units-max U] [--timeout S] [--ttl S] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import random
import threading
import time

import redis

from wshare_redis import AcquireTimeout, Pool


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--member", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--hold-ms", type=float, default=40.0)
    ap.add_argument("--start", type=float, required=True)
    ap.add_argument("--stop", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--units-max", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--ttl", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fixed", action="store_true", help="hold exactly --hold-ms (not exponential)")
    a = ap.parse_args()
    pool = Pool(redis.Redis.from_url(a.url), a.pool)
    records: list[dict] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        rng = random.Random(a.seed * 1000 + i)
        while time.time() < a.start:
            time.sleep(0.005)
        while time.time() < a.stop:
            units = rng.randint(1, a.units_max)
            try:
                lease = pool.acquire(a.member, units=units, ttl=a.ttl, timeout=a.timeout)
            except AcquireTimeout:
                with lock:
                    records.append({"member": a.member, "timeout": True})
                continue
            t0 = time.time()
            time.sleep(a.hold_ms / 1000 if a.fixed else rng.expovariate(1000.0 / a.hold_ms))
            t1 = time.time()
            released = lease.release()
            with lock:
                records.append({"member": a.member, "t0": t0, "t1": t1, "units": units,
                                "token": lease.token, "proc": a.seed, "thread": i,
                                "released": released})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(a.out, "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
