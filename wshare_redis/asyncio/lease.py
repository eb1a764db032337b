"""The asyncio lease: ``await lease.renew()``, ``await lease.release()``, ``async with lease``,
auto-renewal in a task. Fields and rules are ``wshare_redis.lease.LeaseBase``'s."""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import TYPE_CHECKING, Optional

from .._checks import check_seconds
from ..lease import LeaseBase, OnLost, RenewalPlan
from ._dispatch import detached

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["Lease"]

log = logging.getLogger("wshare_redis")


class Lease(LeaseBase):
    """Units held by one caller (the asyncio twin of ``wshare_redis.Lease``).

    Attributes: ``id`` (unguessable; whoever has it can release it), ``pool`` (name),
    ``member``, ``units``, ``token`` (fencing token: strictly increasing per pool, kept
    across renewals), ``expires_at`` (Unix seconds on the Redis server's clock), ``ttl``
    (seconds a renewal extends the lease by), ``lost`` (True once auto-renewal failed).
    State is per lease object, so any task may renew or release it.
    """

    _handle: "Pool"

    def __init__(self, handle: "Pool", lease_id: str, member: str, units: int, token: int,
                 expires_at: float, ttl: float) -> None:
        super().__init__(handle, lease_id, member, units, token, expires_at, ttl)
        self._renewer: Optional[asyncio.Task[None]] = None
        self._releasing = False

    async def renew(self, ttl: float | None = None) -> None:
        """Extend the lease to ``ttl`` seconds from now (default: its own ttl).

        Raises LeaseLost if the lease has ended; the fencing token stays the same.
        """
        ms = self._renewal_ms(ttl)
        self._renewed(await self._handle._drive(self._handle._flow_renew(self.id, ms)))

    def start_auto_renew(self, on_lost: Optional[OnLost] = None, max_hold: Optional[float] = None) -> None:
        """Renew every ttl/3 in a task of the running loop until released, or for at most
        ``max_hold`` seconds (None: no limit).

        If the lease cannot be renewed (it ended, or Redis stayed unreachable until the lease
        ran out), or ``max_hold`` has passed, ``lost`` becomes True, a warning is logged and
        ``on_lost(lease)`` is called (and awaited if it returns an awaitable); past max_hold
        the lease still runs until its TTL.
        """
        if self._renewer is not None or self.released:
            return
        self._on_lost = on_lost
        self._max_hold = None if max_hold is None else check_seconds(max_hold, "max_hold")
        self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(),
                                                               name=f"wshare-renew-{self.id[:8]}")

    async def _renew_loop(self) -> None:
        plan = RenewalPlan(self, self._max_hold)
        while True:
            await asyncio.sleep(plan.next_wait())
            if self._releasing:
                return
            why = plan.held_too_long()
            if why is None:
                sent = time.monotonic()
                try:
                    await self.renew()
                except Exception as e:
                    why = plan.failed(e)
                    if why is None:
                        continue
                else:
                    plan.renewed(sent)
                    continue
            outcome = self._mark_lost(why)
            if inspect.isawaitable(outcome):
                try:
                    await outcome
                except Exception:
                    log.exception("wshare: on_lost callback failed")
            return

    async def release(self) -> bool:
        """Give the units back; True if the lease was live, False if it had already ended.
        Completes even if the calling task is cancelled meanwhile."""
        self._releasing = True
        renewer, self._renewer = self._renewer, None
        if renewer is not None and renewer is not asyncio.current_task():
            renewer.cancel()
        if self.released:
            return False
        return await detached(self._release())

    def _renewal_stopped(self) -> bool:
        return self._releasing

    async def _release(self) -> bool:
        ended = await self._handle._drive(self._handle._flow_release(self.id))
        self.released = True
        return ended

    async def __aenter__(self) -> "Lease":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
