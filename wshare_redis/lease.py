"""A lease: units of a pool held by one caller until released, revoked or expired.

A Lease is a handle, like an open file: it knows its pool, can renew and release itself,
is a context manager (released on exit) and can renew itself in a background thread.
State is per lease object, never thread-local, so any thread may release it.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._checks import ttl_ms
from .errors import LeaseLost, NotReplicated

if TYPE_CHECKING:
    from .pool import Pool

log = logging.getLogger("wshare_redis")

OnLost = Callable[["Lease"], None]


class Lease:
    """Units held by one caller.

    Attributes: ``id`` (unguessable; whoever has it can release it), ``pool`` (name),
    ``member``, ``units``, ``token`` (fencing token: strictly increasing per pool, kept
    across renewals), ``expires_at`` (Unix seconds on the Redis server's clock), ``ttl``
    (seconds a renewal extends the lease by), ``lost`` (True once auto-renewal failed).
    """

    def __init__(self, handle: "Pool", lease_id: str, member: str, units: int, token: int,
                 expires_at: float, ttl: float) -> None:
        self._handle = handle
        self.id = lease_id
        self.pool = handle.name
        self.member = member
        self.units = units
        self.token = token
        self.expires_at = expires_at
        self.ttl = ttl
        self.lost = False
        self.released = False
        self._on_lost: Optional[OnLost] = None
        self._stop: Optional[threading.Event] = None  # made by start_auto_renew (saves time per lease)
        self._renewer: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return (f"Lease(pool={self.pool!r}, member={self.member!r}, units={self.units}, "
                f"token={self.token}, expires_at={self.expires_at:.3f})")

    # -- renewal ------------------------------------------------------------------------

    def renew(self, ttl: float | None = None) -> None:
        """Extend the lease to ``ttl`` seconds from now (default: its own ttl).

        Raises LeaseLost if the lease has ended; the fencing token stays the same.
        """
        if ttl is not None:
            ms = ttl_ms(ttl)
            self.ttl = ms / 1000
        else:
            ms = round(self.ttl * 1000)
        expires_ms = self._handle._renew(self.id, ms)
        if expires_ms is None:
            raise LeaseLost(self.pool, self.id)
        self.expires_at = expires_ms / 1000

    def start_auto_renew(self, on_lost: Optional[OnLost] = None) -> None:
        """Renew every ttl/3 in a daemon thread until released.

        If the lease cannot be renewed (it ended, or Redis stayed unreachable until the lease
        ran out), ``lost`` becomes True, a warning is logged and ``on_lost(lease)`` is called.
        """
        if self._renewer is not None or self.released:
            return
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"wshare-renew-{self.id[:8]}",
                                         daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        deadline = time.monotonic() + self.ttl  # local bound on when the lease may run out
        interval = self.ttl / 3
        stop = self._stop
        assert stop is not None
        while not stop.wait(interval):
            sent = time.monotonic()
            try:
                self.renew()
            except LeaseLost:
                self._mark_lost("it was released, revoked or expired")
                return
            except (RedisConnectionError, RedisTimeoutError, OSError, NotReplicated) as e:
                if time.monotonic() >= deadline:
                    self._mark_lost(f"not renewed (Redis unreachable or replicas behind) until the lease ran out ({e})")
                    return
                log.warning("wshare: renewing lease %s of pool %r failed, retrying: %s", self.id, self.pool, e)
                interval = min(self.ttl / 10, max(deadline - time.monotonic(), 0.0) / 2, 1.0)
            except Exception as e:  # never let the thread die silently holding a lease it lost
                self._mark_lost(f"renewal failed: {e!r}")
                return
            else:
                deadline = sent + self.ttl
                interval = self.ttl / 3

    def _mark_lost(self, why: str) -> None:
        if self._stop is not None and self._stop.is_set():
            return
        self.lost = True
        log.warning("wshare: lease %s of pool %r (member %r) is lost: %s", self.id, self.pool, self.member, why)
        if self._on_lost is not None:
            try:
                self._on_lost(self)
            except Exception:
                log.exception("wshare: on_lost callback failed")

    # -- release --------------------------------------------------------------------------

    def release(self) -> bool:
        """Give the units back; True if the lease was live, False if it had already ended."""
        if self._stop is not None:
            self._stop.set()
        if self.released:
            return False
        ended = self._handle._release(self.id)
        self.released = True
        return ended

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
