"""A generic quota worker: repeatedly takes units of a pool, works, releases them.

What the demo and docker-compose run (through workers/quota_worker.py or `wshare worker`).
SIGTERM or SIGINT stop it cleanly: a waiting request leaves the queue, a held lease is
released, and the process exits 0.
"""
from __future__ import annotations

import logging
import random
import signal
import threading
from dataclasses import dataclass
from typing import Any, Optional

from .errors import AcquireCancelled
from .pool import Pool

log = logging.getLogger("wshare_redis.worker")


class Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT to end the worker."""


@dataclass(frozen=True)
class WorkerConfig:
    pool: str
    member: str
    units: int = 1
    work: float = 0.5          # mean seconds of work per task (exponentially distributed)
    ttl: float = 10.0
    concurrency: int = 1       # tasks held at once by this process (threads)
    weight: Optional[float] = None  # set the member's weight at start
    tasks: Optional[int] = None     # stop after this many tasks per thread (None: run until stopped)


def run_worker(client: Any, cfg: WorkerConfig, stop: Optional[threading.Event] = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when called from the main thread).
    Returns the number of tasks done."""
    pool = Pool(client, cfg.pool)
    if cfg.weight is not None:
        pool.set_weight(cfg.member, cfg.weight)
    stop = stop or threading.Event()
    done = [0]
    lock = threading.Lock()

    def loop(i: int) -> None:
        rng = random.Random()
        n = 0
        while not stop.is_set() and (cfg.tasks is None or n < cfg.tasks):
            try:
                lease = pool.acquire(cfg.member, units=cfg.units, ttl=cfg.ttl, auto_renew=True, cancel=stop)
            except AcquireCancelled:
                break
            try:
                log.info("%s: got %d unit(s), token %d", cfg.member, lease.units, lease.token)
                stop.wait(rng.expovariate(1 / cfg.work) if cfg.work > 0 else 0)
            finally:
                lease.release()
            n += 1
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True, name=f"wshare-worker-{i}")
               for i in range(cfg.concurrency)]
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, _frame: Any) -> None:
            log.info("%s: signal %d, stopping", cfg.member, signum)
            stop.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(5)  # each thread leaves the queue or releases within its next step
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("%s: stopped after %d task(s)", cfg.member, done[0])
    return done[0]
