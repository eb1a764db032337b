"""Lock: a distributed mutex with fencing tokens, as a capacity-1 pool created on first use."""
from __future__ import annotations

from typing import Any, Generic, Optional, TypeVar

from .errors import InvalidRequest
from .keys import DEFAULT_PREFIX
from .lease import Lease, LeaseBase, OnLost
from .pool import DEFAULT_TTL, Pool

LOCK_MEMBER = "lock"

L = TypeVar("L", bound=LeaseBase)


class LockBase(Generic[L]):
    """What the sync and the asyncio Lock share: settings, the held lease, the token.
    ``_pool_type``: the Pool class of the front end, which the lock's capacity-1 pool is."""

    _pool_type: Any

    def __init__(self, client: Any, name: str, *, ttl: float = DEFAULT_TTL,
                 prefix: str = DEFAULT_PREFIX, auto_renew: bool = False,
                 on_lost: Optional[OnLost] = None, min_replicas: int = 0, replica_timeout: float = 0.1,
                 max_hold: Optional[float] = None) -> None:
        self.pool = self._pool_type(client, name, prefix=prefix, min_replicas=min_replicas,
                                    replica_timeout=replica_timeout)
        self.ttl = ttl
        self.auto_renew = auto_renew
        self.on_lost = on_lost
        self.max_hold = max_hold  # checked at acquire, like ttl
        self.lease: Optional[L] = None

    @property
    def name(self) -> str:
        return str(self.pool.name)

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the held lease (None when not held)."""
        return self.lease.token if self.lease is not None else None

    def _check_not_held(self) -> None:
        if self.lease is not None and not (self.lease.released or self.lease.lost):
            raise InvalidRequest(f"lock {self.name!r} is already held by this Lock object (not reentrant)")


class Lock(LockBase[Lease]):
    """A mutex over Redis whose holders get strictly increasing fencing tokens.

    Waiters queue first come, first served and are woken by a push (no polling). The lock
    state lives in this object, not in thread-local storage: any thread may release it.
    Not reentrant: acquiring a Lock object that already holds raises InvalidRequest.
    """

    pool: Pool
    _pool_type = Pool

    def acquire(self, timeout: Optional[float] = None) -> Lease:
        """Wait up to ``timeout`` seconds (None: for ever) for the lock; AcquireTimeout if not granted."""
        self._check_not_held()
        self.lease = self.pool._acquire(LOCK_MEMBER, 1, self.ttl, timeout, self.auto_renew, self.on_lost, "1",
                                        max_hold=self.max_hold)
        return self.lease

    def release(self) -> bool:
        """Release the lock; False if it was not held or had already ended (expired, revoked)."""
        lease, self.lease = self.lease, None
        return lease.release() if lease is not None else False

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
