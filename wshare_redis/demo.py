"""`wshare demo`: weighted sharing live, with real worker processes, in about 30 seconds.

Three members (weights 1, 2, 3) each run more workers than their share on a pool of 8
units. Mid-run one member is reweighted and then the pool is resized. Shares are sampled
from the pool's own status (the Redis side is the truth) and each phase ends in a table of
achieved against ideal time-averaged shares. With no Redis given and none answering at the
default URL, the demo runs on a private redis-server, or on an in-process fakeredis server.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connect import DEFAULT_URL, connect, mask_url, reachable, redact
from .embedded import RedisServer
from .errors import WshareError
from .pool import Pool
from .scripts import library
from .status import PoolStatus, fair_shares
from .view import bars

POOL = "wshare-demo"
MEMBERS = {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}
PROCESSES_PER_MEMBER = 2
SLOTS_PER_PROCESS = 4      # 8 workers per member: more than any member's share
WORK_SECONDS = 0.2         # mean time a worker holds its unit per task
SETTLE = 0.15              # fraction of each phase left out of the averages


@dataclass
class Phase:
    title: str
    capacity: int
    weights: dict[str, float]
    samples: list[PoolStatus] = field(default_factory=list)

    def ideal(self) -> dict[str, float]:
        demand = {m: float(PROCESSES_PER_MEMBER * SLOTS_PER_PROCESS) for m in self.weights}
        return fair_shares(self.capacity, self.weights, demand)

    def achieved(self) -> dict[str, float]:
        kept = self.samples[int(len(self.samples) * SETTLE):]
        if not kept:
            return {m: 0.0 for m in self.weights}
        return {m: sum(s.members[m].held for s in kept if m in s.members) / len(kept) for m in self.weights}


@contextlib.contextmanager
def demo_redis(url: Optional[str]) -> Iterator[tuple[str, str]]:
    """(url, description) of the Redis to use; embedded ones stop when the block ends."""
    if url:
        yield url, f"Redis at {mask_url(url)}"
    elif reachable(DEFAULT_URL):
        yield DEFAULT_URL, f"the Redis answering at {DEFAULT_URL}"
    elif shutil.which("redis-server"):
        with RedisServer() as embedded:
            yield embedded.url, f"a private redis-server, {embedded.url}"
    else:
        from fakeredis import TcpFakeServer  # the [demo] extra
        server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        _keep_connections_after_errors(server)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = str(server.server_address[0]), int(server.server_address[1])
        fake_url = f"redis://{host}:{port}/0"
        try:
            with naming_errors(fake_url):
                _load_library(fake_url)
            yield fake_url, f"an in-process fakeredis server, {host}:{port}"
        finally:
            server.shutdown()
            server.server_close()


# fakeredis's TCP server (seen in 2.40) closes a client's connection right after any error
# reply: its handler gets the reply re-raised as a ResponseError by the connection behind the
# socket, takes that for a failure, writes the error and leaves its read loop. The client's next
# command then races the close and, when it wins, fails with "Connection closed by server."; one
# that did was the Functions library load following the first FCALL's "Function not found".
# Two workarounds, each enough for that: the demo's server answers an error reply like any
# other reply, and the library is loaded before anyone calls it.
def _keep_connections_after_errors(server: Any) -> None:
    """Make ``server`` (a fakeredis TcpFakeServer) keep a connection open after an error reply."""
    try:
        from fakeredis._clients._tcp_server import TCPFakeRequestHandler
    except ImportError:  # another fakeredis layout: its handler as it is
        return
    if server.RequestHandlerClass is not TCPFakeRequestHandler:
        return

    class KeepConnection(TCPFakeRequestHandler):
        def setup(self) -> None:
            super().setup()
            connection = getattr(self, "current_client", None)
            read = getattr(connection, "read_response", None)
            if read is None:
                return

            def read_response(**kwargs: Any) -> Any:
                try:
                    return read(**kwargs)
                except ResponseError as e:  # a reply like any other: written as an error reply
                    return e

            setattr(connection, "read_response", read_response)

    server.RequestHandlerClass = KeepConnection


def _load_library(url: str) -> None:
    """Load the wshare Functions library on a fresh connection (no error reply comes first)."""
    client = connect(url)
    try:
        client.function_load(library()[0], replace=True)
    finally:
        client.close()


def worker_command(member: str) -> list[str]:
    """The worker program from workers/ (a source checkout), else the same code via the CLI."""
    args = ["--pool", POOL, "--member", member, "--work", str(WORK_SECONDS), "--ttl", "5",
            "--concurrency", str(SLOTS_PER_PROCESS)]
    script = Path(__file__).resolve().parent.parent / "workers" / "quota_worker.py"
    if script.is_file():
        return [sys.executable, str(script), *args]
    return [sys.executable, "-m", "wshare_redis.cli", "worker", *args]


class DemoRedisError(WshareError):
    """A Redis error during the demo, naming the Redis the demo used (the CLI would name its
    own --url, by default localhost, which the demo may not have used at all)."""


@contextlib.contextmanager
def naming_errors(url: str) -> Iterator[None]:
    """Redis errors in the block as DemoRedisError naming ``url`` (masked), worded as the CLI's."""
    try:
        yield
    except RedisError as e:
        where, reason = mask_url(url), redact(str(e).strip() or type(e).__name__, url)
        if isinstance(e, AuthenticationError):
            message = f"Redis at {where} refused the credentials: {reason}"
        elif isinstance(e, NoPermissionError):
            message = f"Redis at {where} denied a command (ACL): {reason}"
        elif isinstance(e, (RedisConnectionError, RedisTimeoutError)):
            message = f"cannot reach Redis at {where}: {reason.splitlines()[0]}"
        else:
            message = f"Redis error at {where}: {reason}"
        raise DemoRedisError(message) from e


def run_demo(*, url: Optional[str], duration: float, prefix: str = "wshare") -> int:
    tty = sys.stdout.isatty()
    say = print
    with demo_redis(url) as (redis_url, where), naming_errors(redis_url):
        client = connect(redis_url)
        pool = Pool(client, POOL, prefix=prefix)
        say(f"wshare demo on {where}")
        pool.delete()  # a leftover from an interrupted run
        pool.configure(capacity=8)
        for member, weight in MEMBERS.items():
            pool.set_weight(member, weight)
        phases = [
            Phase("weights 1:2:3 on 8 units", 8, dict(MEMBERS)),
            Phase("alpha reweighted 1 -> 4", 8, dict(MEMBERS, alpha=4.0)),
            Phase("pool resized 8 -> 12 units", 12, dict(MEMBERS, alpha=4.0)),
        ]
        n = PROCESSES_PER_MEMBER * SLOTS_PER_PROCESS
        say(f"{len(MEMBERS)} members x {n} workers ({PROCESSES_PER_MEMBER} processes each) compete; "
            f"{duration:g} s in {len(phases)} phases")
        env = dict(os.environ, WSHARE_REDIS_URL=redis_url, WSHARE_PREFIX=prefix)
        logs = tempfile.NamedTemporaryFile("w+b", prefix="wshare-demo-", suffix=".log", delete=False)
        procs = [subprocess.Popen(worker_command(m), env=env, stdout=logs, stderr=logs)
                 for m in MEMBERS for _ in range(PROCESSES_PER_MEMBER)]
        try:
            try:
                _wait_for_workers(pool, procs)
            except RuntimeError as e:
                say(f"wshare demo: {e}; the workers' output is in {logs.name}")
                return 1
            for i, phase in enumerate(phases):
                if i == 1:
                    pool.set_weight("alpha", 4.0)
                if i == 2:
                    pool.configure(capacity=12)
                _run_phase(pool, phase, i, len(phases), duration / len(phases), tty)
        except KeyboardInterrupt:
            say("\ninterrupted")
            return 130
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            leftover = pool.status() if _exists(pool) else None
            pool.delete()
            client.close()
            logs.close()
        if tty:
            say("\x1b[H\x1b[2J", end="")
            say(f"wshare demo on {where}")
        os.unlink(logs.name)
        say(report(phases, duration))
        if leftover is not None and (leftover.held or leftover.waiting):
            say(f"note: {leftover.held} unit(s) held, {leftover.waiting} waiting after the workers stopped")
        return 0


def _exists(pool: Pool) -> bool:
    try:
        pool.status()
        return True
    except Exception:
        return False


def _wait_for_workers(pool: Pool, procs: list[subprocess.Popen[bytes]], limit: float = 30.0) -> None:
    """Until every member has more demand than it can be granted (everyone competes)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker process exited at start")
        st = pool.status()
        if all(m in st.members and st.members[m].waiting > 0 for m in MEMBERS):
            return
        time.sleep(0.1)
    raise RuntimeError("the workers did not start competing within 30 s")


def _run_phase(pool: Pool, phase: Phase, index: int, total: int, seconds: float, tty: bool) -> None:
    start = time.monotonic()
    end = start + seconds
    next_view = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        phase.samples.append(pool.status())
        if now >= next_view:
            st = phase.samples[-1]
            head = f"phase {index + 1}/{total}: {phase.title}  ({end - now:4.1f} s left)"
            if tty:
                print("\x1b[H\x1b[2J" + head + "\n" + bars(st, 78) + "\n  # held   | fair share", flush=True)
                next_view = now + 0.5
            else:
                parts = " ".join(f"{m} {st.members[m].held:>2}" for m in MEMBERS if m in st.members)
                print(f"  phase {index + 1}/{total} {end - now:4.1f} s left, units held: {parts}", flush=True)
                next_view = now + 2.0
        time.sleep(0.05)


def report(phases: list[Phase], duration: float) -> str:
    per = duration / len(phases)
    lines = ["", "Achieved time-averaged shares against the ideal weighted max-min shares",
             f"(units held, sampled from the pool's status; first {SETTLE:.0%} of each phase skipped)"]
    worst = 0.0
    for i, phase in enumerate(phases):
        ideal, got = phase.ideal(), phase.achieved()
        lines += ["", f"Phase {i + 1} ({i * per:.0f}-{(i + 1) * per:.0f} s): {phase.title}",
                  f"  {'member':<8} {'weight':>6} {'ideal':>7} {'achieved':>9} {'error':>7}"]
        for m, w in phase.weights.items():
            err = (got[m] - ideal[m]) / ideal[m] if ideal[m] else 0.0
            worst = max(worst, abs(err))
            lines.append(f"  {m:<8} {w:>6g} {ideal[m]:>7.2f} {got[m]:>9.2f} {err:>+7.1%}")
        lines.append(f"  {'total':<8} {sum(phase.weights.values()):>6g} {sum(ideal.values()):>7.2f} "
                     f"{sum(got.values()):>9.2f}")
    lines += ["", f"largest deviation from the ideal share: {worst:.1%}"]
    return "\n".join(lines)
