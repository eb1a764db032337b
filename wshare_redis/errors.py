"""The exceptions of wshare-redis: one base class, each also the builtin that fits."""
from __future__ import annotations


class WshareError(Exception):
    """Base class of every error wshare-redis raises on purpose."""


class InvalidRequest(WshareError, ValueError):
    """A request that is malformed or can never be met; nothing was changed."""


class PoolNotFound(WshareError, LookupError):
    """The pool was never configured (or was deleted). Call ``Pool.configure`` first."""

    def __init__(self, pool: str) -> None:
        super().__init__(
            f"pool {pool!r} does not exist: configure it first "
            f"(Pool(...).configure(capacity=N) or `wshare pool configure {pool} --capacity N`)"
        )
        self.pool = pool


class AcquireTimeout(WshareError, TimeoutError):
    """A blocking acquire was not granted within its timeout; it left the queue."""

    def __init__(self, pool: str, member: str, units: int, timeout: float) -> None:
        super().__init__(
            f"pool {pool!r}: {units} unit(s) for member {member!r} not granted within {timeout:g}s"
        )
        self.pool, self.member, self.units, self.timeout = pool, member, units, timeout


class AcquireCancelled(WshareError):
    """A blocking acquire was cancelled through its ``cancel`` event; it left the queue."""


class LeaseLost(WshareError):
    """The lease ended (released, revoked, expired or pool deleted) and cannot be renewed."""

    def __init__(self, pool: str, lease_id: str) -> None:
        super().__init__(
            f"lease {lease_id} of pool {pool!r} is no longer held (released, revoked, expired "
            "or pool deleted): stop using the resource it guarded"
        )
        self.pool, self.lease_id = pool, lease_id


class MemberRemoved(WshareError, LookupError):
    """The member was removed from the pool while this request waited for units."""


class PoolStateError(WshareError):
    """The pool's state in Redis is not what wshare wrote (edited by hand?)."""


class NotReplicated(WshareError):
    """A grant or renewal was not confirmed by ``min_replicas`` replicas within
    ``replica_timeout`` (WAIT). A grant is given back before this is raised; after a
    renewal the lease stays live but keeps its previous expiry as far as the caller knows."""

    def __init__(self, pool: str, what: str, wanted: int, acked: int, timeout: float) -> None:
        super().__init__(
            f"pool {pool!r}: {what} confirmed by {acked} of the {wanted} replica(s) required "
            f"within {timeout:g}s (min_replicas)"
        )
        self.pool, self.wanted, self.acked, self.timeout = pool, wanted, acked, timeout


class RedisUnavailable(WshareError, ConnectionError):
    """Redis could not be reached while a blocking acquire waited, until its timeout passed.
    The request was not granted to the caller; the server drops its queue entry by itself
    once the waiter stops checking in (or, if it was granted meanwhile, the lease expires)."""
