"""A lease: units of a pool held by one caller until released, revoked or expired.

A Lease is a handle, like an open file: it knows its pool, can renew and release itself,
is a context manager (released on exit) and can renew itself in a background thread.
State is per lease object, never thread-local, so any thread may release it.
``LeaseBase`` and ``RenewalPlan`` are shared with the asyncio lease
(``wshare_redis.asyncio.Lease``), which renews in a task instead.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._checks import check_seconds, ttl_ms
from .errors import LeaseLost, NotReplicated

if TYPE_CHECKING:
    from .pool import Pool

log = logging.getLogger("wshare_redis")

OnLost = Callable[[Any], Any]


class LeaseBase:
    """What every lease has, sync or asyncio: its fields (see ``Lease``), renewal bookkeeping
    and how a loss is reported."""

    def __init__(self, handle: Any, lease_id: str, member: str, units: int, token: int,
                 expires_at: float, ttl: float) -> None:
        self._handle = handle
        self.id = lease_id
        self.pool: str = handle.name
        self.member = member
        self.units = units
        self.token = token
        self.expires_at = expires_at
        self.ttl = ttl
        self.lost = False
        self.released = False
        self._on_lost: Optional[OnLost] = None
        self._max_hold: Optional[float] = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(pool={self.pool!r}, member={self.member!r}, units={self.units}, "
                f"token={self.token}, expires_at={self.expires_at:.3f})")

    def start_auto_renew(self, on_lost: Optional[OnLost] = None, max_hold: Optional[float] = None) -> None:
        raise NotImplementedError

    def _renewal_ms(self, ttl: float | None) -> int:
        """The ms a renewal asks for; a new ``ttl`` (seconds) becomes the lease's own."""
        if ttl is None:
            return round(self.ttl * 1000)
        ms = ttl_ms(ttl)
        self.ttl = ms / 1000
        return ms

    def _renewed(self, expires_ms: Optional[int]) -> None:
        if expires_ms is None:
            raise LeaseLost(self.pool, self.id)
        self.expires_at = expires_ms / 1000

    def _renewal_stopped(self) -> bool:
        """True once released: a failing renewal then is no loss worth reporting."""
        return self.released

    def _mark_lost(self, why: str) -> Any:
        """Record the loss, warn and call ``on_lost``; returns what it returned (the asyncio
        lease awaits it if it is awaitable)."""
        if self._renewal_stopped():
            return None
        self.lost = True
        log.warning("wshare: lease %s of pool %r (member %r) is lost: %s", self.id, self.pool, self.member, why)
        if self._on_lost is not None:
            try:
                return self._on_lost(self)
            except Exception:
                log.exception("wshare: on_lost callback failed")
        return None


class RenewalPlan:
    """When an auto-renewing lease renews next, and when failures make it lost: renew every
    ttl/3; after a Redis error retry sooner, until the lease may have run out. With
    ``max_hold`` (seconds), renewing stops that long after the start: the lease is reported
    lost then and runs out at its TTL, so a hung holder cannot keep its units for ever."""

    def __init__(self, lease: LeaseBase, max_hold: Optional[float] = None) -> None:
        self.lease = lease
        now = time.monotonic()
        self.deadline = now + lease.ttl  # local bound on when the lease may run out
        self.interval = lease.ttl / 3
        self.max_hold = max_hold
        self.hold_until = None if max_hold is None else now + max_hold

    def next_wait(self) -> float:
        """Seconds until the next renewal, or until max_hold is reached if sooner."""
        if self.hold_until is None:
            return self.interval
        return min(self.interval, max(self.hold_until - time.monotonic(), 0.0))

    def held_too_long(self) -> Optional[str]:
        """Why renewing stops now (max_hold reached), or None."""
        if self.hold_until is not None and time.monotonic() >= self.hold_until:
            return (f"held for max_hold ({self.max_hold:g}s): no longer renewed, it runs out at its TTL "
                    f"(about {max(self.deadline - time.monotonic(), 0.0):.1f}s from now)")
        return None

    def renewed(self, sent: float) -> None:
        self.deadline = sent + self.lease.ttl
        self.interval = self.lease.ttl / 3

    def failed(self, e: Exception) -> Optional[str]:
        """Why the lease is lost after this failed renewal, or None to retry in ``interval``."""
        lease = self.lease
        if isinstance(e, LeaseLost):
            return "it was released, revoked or expired"
        if isinstance(e, (RedisConnectionError, RedisTimeoutError, OSError, NotReplicated)):
            if time.monotonic() >= self.deadline:
                return f"not renewed (Redis unreachable or replicas behind) until the lease ran out ({e})"
            log.warning("wshare: renewing lease %s of pool %r failed, retrying: %s", lease.id, lease.pool, e)
            self.interval = min(lease.ttl / 10, max(self.deadline - time.monotonic(), 0.0) / 2, 1.0)
            return None
        return f"renewal failed: {e!r}"  # never let the renewal die silently holding a lease it lost


class Lease(LeaseBase):
    """Units held by one caller.

    Attributes: ``id`` (unguessable; whoever has it can release it), ``pool`` (name),
    ``member``, ``units``, ``token`` (fencing token: strictly increasing per pool, kept
    across renewals), ``expires_at`` (Unix seconds on the Redis server's clock), ``ttl``
    (seconds a renewal extends the lease by), ``lost`` (True once auto-renewal failed).
    """

    _handle: "Pool"

    def __init__(self, handle: "Pool", lease_id: str, member: str, units: int, token: int,
                 expires_at: float, ttl: float) -> None:
        super().__init__(handle, lease_id, member, units, token, expires_at, ttl)
        self._stop: Optional[threading.Event] = None  # made by start_auto_renew (saves time per lease)
        self._renewer: Optional[threading.Thread] = None

    # -- renewal ------------------------------------------------------------------------

    def renew(self, ttl: float | None = None) -> None:
        """Extend the lease to ``ttl`` seconds from now (default: its own ttl).

        Raises LeaseLost if the lease has ended; the fencing token stays the same.
        """
        self._renewed(self._handle._renew(self.id, self._renewal_ms(ttl)))

    def start_auto_renew(self, on_lost: Optional[OnLost] = None, max_hold: Optional[float] = None) -> None:
        """Renew every ttl/3 in a daemon thread until released, or for at most ``max_hold``
        seconds (None: no limit).

        If the lease cannot be renewed (it ended, or Redis stayed unreachable until the lease
        ran out), or ``max_hold`` has passed, ``lost`` becomes True, a warning is logged and
        ``on_lost(lease)`` is called (past max_hold the lease still runs until its TTL: stop
        the work then).
        """
        if self._renewer is not None or self.released:
            return
        self._on_lost = on_lost
        self._max_hold = None if max_hold is None else check_seconds(max_hold, "max_hold")
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"wshare-renew-{self.id[:8]}",
                                         daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        plan = RenewalPlan(self, self._max_hold)
        stop = self._stop
        assert stop is not None
        while not stop.wait(plan.next_wait()):
            why = plan.held_too_long()
            if why is not None:
                self._mark_lost(why)
                return
            sent = time.monotonic()
            try:
                self.renew()
            except Exception as e:
                why = plan.failed(e)
                if why is not None:
                    self._mark_lost(why)
                    return
            else:
                plan.renewed(sent)

    def _renewal_stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

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
