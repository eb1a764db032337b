"""wshare-redis for asyncio: ``Pool``, ``Lease`` and ``Lock`` over a redis.asyncio client, with
the names, arguments, results and errors of the sync API, awaited.

    from wshare_redis.asyncio import Pool
    pool = Pool(redis.asyncio.Redis.from_url(url), "gpu")
    async with pool.acquire("team-a", units=2, timeout=5) as lease:
        ...
"""
from .lease import Lease
from .lock import Lock
from .pool import Acquiring, Pool

__all__ = ["Pool", "Lease", "Lock", "Acquiring"]
