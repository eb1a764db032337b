"""The asyncio Lock: a distributed mutex with fencing tokens over a redis.asyncio client."""
from __future__ import annotations

from typing import Optional

from ..lock import LOCK_MEMBER, LockBase
from .lease import Lease
from .pool import Pool

__all__ = ["Lock"]


class Lock(LockBase[Lease]):
    """A mutex over Redis whose holders get strictly increasing fencing tokens (the asyncio
    twin of ``wshare_redis.Lock``): ``await lock.acquire(timeout)``, ``await lock.release()``,
    ``async with lock as lease``.

    Waiters queue first come, first served and are woken by a push (no polling). The lock
    state lives in this object, not in task-local storage: any task may release it.
    Not reentrant: acquiring a Lock object that already holds raises InvalidRequest.
    """

    pool: Pool
    _pool_type = Pool

    async def acquire(self, timeout: Optional[float] = None) -> Lease:
        """Wait up to ``timeout`` seconds (None: for ever) for the lock; AcquireTimeout if not granted."""
        self._check_not_held()
        self.lease = await self.pool._acquire(LOCK_MEMBER, 1, self.ttl, timeout, self.auto_renew, self.on_lost, "1",
                                              max_hold=self.max_hold)
        return self.lease

    async def release(self) -> bool:
        """Release the lock; False if it was not held or had already ended (expired, revoked)."""
        lease, self.lease = self.lease, None
        return await lease.release() if lease is not None else False

    async def __aenter__(self) -> Lease:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
