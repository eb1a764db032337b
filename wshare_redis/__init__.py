"""wshare-redis: weighted sharing of scarce resources between processes, over Redis.

A Pool has a capacity of units; members with weights take units as leases with a TTL.
Every state change is one atomic Lua script using the Redis server's clock.
"""
from .errors import (AcquireCancelled, AcquireTimeout, InvalidRequest, LeaseLost, MemberRemoved, NotReplicated,
                     PoolNotFound, PoolStateError, RedisUnavailable, WshareError)
from .lease import Lease
from .lock import Lock
from .pool import UNCHANGED, Pool
from .status import MemberStatus, PoolStatus

__all__ = [
    "Pool", "Lease", "Lock", "PoolStatus", "MemberStatus", "UNCHANGED",
    "WshareError", "InvalidRequest", "PoolNotFound", "AcquireTimeout", "AcquireCancelled", "LeaseLost",
    "MemberRemoved", "PoolStateError", "NotReplicated", "RedisUnavailable",
]
__version__ = "0.1.0"
