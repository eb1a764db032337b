"""`wshare run`: run a command while holding units of a pool, like flock(1) for quotas.

The lease is renewed in the background while the command runs and released when it ends,
also on SIGINT, SIGTERM or SIGHUP (forwarded to the command first). If the lease is lost
(revoked, or it expired because Redis was unreachable for longer than its TTL), a line
goes to stderr and the command gets SIGTERM, since it no longer runs under quota, then
SIGKILL if it is still running ``kill_after`` seconds later (``keep_on_lost=True`` lets it
finish). With ``max_hold`` the lease is renewed for that long at most, and the command is
then treated as on a lost lease, so a hung command cannot hold its units for ever. The exit status is the command's own (128 + N when it was ended by signal N).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .lease import Lease
from .pool import Pool

EX_TEMPFAIL = 75  # sysexits.h: "try again later", what `flock -w` callers expect on timeout
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """A signal arrived while waiting for units; exit with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum} while waiting for units")
        self.signum = signum


@dataclass(frozen=True)
class RunConfig:
    member: str
    units: int = 1
    ttl: float = 30.0
    timeout: Optional[float] = None
    keep_on_lost: bool = False
    kill_after: Optional[float] = 10.0  # SIGKILL this long after a lost lease's SIGTERM (None: never)
    max_hold: Optional[float] = None  # stop renewing after this long: the command is then stopped as on a loss


def _terminal_sent_it() -> bool:
    """True when we are the foreground job of a terminal: a SIGINT then came from the
    keyboard and already reached the child (same process group), so it is not forwarded."""
    try:
        with open("/dev/tty") as tty:
            return os.tcgetpgrp(tty.fileno()) == os.getpgrp()
    except OSError:
        return False


def _kill_after(proc: "subprocess.Popen[bytes]", seconds: float) -> None:
    """SIGKILL ``proc`` if it has not ended ``seconds`` after its SIGTERM: a command that
    ignores SIGTERM must not keep running outside its quota."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        print(f"wshare: the command did not end {seconds:g}s after SIGTERM; sending SIGKILL",
              file=sys.stderr, flush=True)
        proc.kill()


def run_command(pool: Pool, cfg: RunConfig, argv: Sequence[str]) -> int:
    """Acquire, run ``argv`` with WSHARE_* variables set, release; return the exit status.

    Raises AcquireTimeout (the caller exits 75) and the usual errors before the command starts.
    """
    lost = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def on_lost(lease: Lease) -> None:
        lost.set()
        if cfg.keep_on_lost:
            action = "it keeps running"
        elif cfg.kill_after is None:
            action = "stopping it (SIGTERM)"
        else:
            action = f"stopping it (SIGTERM, SIGKILL after {cfg.kill_after:g}s)"
        print(f"wshare: lease {lease.id} on pool {pool.name!r} was lost while the command ran; {action}",
              file=sys.stderr, flush=True)
        if not cfg.keep_on_lost and child and child[0].poll() is None:
            child[0].terminate()
            if cfg.kill_after is not None:
                threading.Thread(target=_kill_after, args=(child[0], cfg.kill_after), daemon=True).start()

    def interrupted(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    # While waiting, a signal leaves the queue cleanly (acquire gives up on any exception).
    waiting = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        lease = pool.acquire(cfg.member, units=cfg.units, ttl=cfg.ttl, timeout=cfg.timeout,
                             auto_renew=True, on_lost=on_lost, max_hold=cfg.max_hold)
    finally:
        for signum, handler in waiting.items():
            signal.signal(signum, handler)
    previous: dict[signal.Signals, Any] = {}
    try:
        env = dict(os.environ, WSHARE_LEASE_ID=lease.id, WSHARE_FENCING_TOKEN=str(lease.token),
                   WSHARE_POOL=pool.name, WSHARE_MEMBER=cfg.member, WSHARE_UNITS=str(cfg.units))

        def forward(signum: int, _frame: Any) -> None:
            if child and child[0].poll() is None:
                if signum == signal.SIGINT and _terminal_sent_it():
                    return
                child[0].send_signal(signum)

        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, forward)
        try:
            child.append(subprocess.Popen(list(argv), env=env))
        except FileNotFoundError:
            print(f"wshare: command not found: {argv[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"wshare: permission denied: {argv[0]}", file=sys.stderr)
            return 126
        rc = child[0].wait()
        return 128 - rc if rc < 0 else rc
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        lease.release()
