"""The asyncio Pool: the same operations, arguments, results and errors as
``wshare_redis.Pool``, awaited, over a redis.asyncio client (Redis or RedisCluster). It runs
the shared flows of ``_core`` with awaited I/O; blocked waiters get their wake messages from
the pool's dispatcher (``_dispatch``) instead of a connection each."""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Generator, Optional, TypeVar

from redis.exceptions import ResponseError

from .._core import (DEFAULT_TTL, UNCHANGED, Call, Command, Detached, Flow, Pop, PoolCore, Script, Settle, Sleep,
                     Unlink, _text)
from ..keys import DEFAULT_PREFIX
from ..lease import OnLost
from ..scripts import async_scripts_for
from ..status import PoolStatus
from ._dispatch import Dispatcher, cancel_requests, detached, dispatcher, gate
from .lease import Lease

__all__ = ["Pool", "Acquiring"]

T = TypeVar("T")


class Acquiring(Coroutine[Any, Any, Lease]):
    """What ``Pool.acquire`` returns: a coroutine (await it, or hand it to create_task,
    wait_for, gather) that is also an async context manager releasing the lease on exit,
    also when the task is cancelled inside the block."""

    def __init__(self, waiting: Coroutine[Any, Any, Lease]) -> None:
        self._waiting = waiting
        self._lease: Optional[Lease] = None

    def send(self, value: Any) -> Any:
        return self._waiting.send(value)

    def throw(self, *args: Any) -> Any:
        return self._waiting.throw(*args)

    def close(self) -> None:
        self._waiting.close()

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._waiting.__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._waiting
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease.release()


class Pool(PoolCore[Lease]):
    """A named pool of ``capacity`` units shared by weighted members, for asyncio.

    A cheap handle: creating one does no I/O. ``client`` is a redis.asyncio client (``Redis``
    or ``RedisCluster``), with ``decode_responses`` True or False; keys live under
    ``<prefix>:{<name>}:``. Every method is a coroutine except ``acquire``, whose result is
    awaited or used with ``async with``. Commands stay within the client's
    ``max_connections`` (tasks queue for a connection); each pool with blocked waiters holds
    one of them for its dispatcher's BLPOP.

    ``min_replicas``: confirm every grant and renewal with WAIT on that many replicas
    within ``replica_timeout`` seconds before returning it, so a failover to a replica
    cannot lose it; an unconfirmed grant is given back and NotReplicated is raised.
    """

    _lease_type = Lease
    _cancel_poll = None  # a waiter's Pop wakes as soon as its cancel event is set

    def __init__(self, client: Any, name: str, *, prefix: str = DEFAULT_PREFIX, min_replicas: int = 0,
                 replica_timeout: float = 0.1) -> None:
        super().__init__(client, name, prefix=prefix, min_replicas=min_replicas, replica_timeout=replica_timeout)
        self._scripts = async_scripts_for(client)

    # -- running flows with awaited I/O -------------------------------------------------------

    async def _drive(self, flow: Flow[T]) -> T:
        """Run a flow: each call it yields is awaited here and its result (or exception, also
        a cancellation) sent back. Waiters it registered with the dispatcher are forgotten at
        the end, however it ends."""
        waiters: set[str] = set()
        result: Any = None
        error: Optional[BaseException] = None
        task = asyncio.current_task()
        try:
            while True:
                try:
                    call = flow.send(result) if error is None else flow.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                result = error = None
                try:
                    requested = cancel_requests(task)
                    result = await self._execute(call, waiters)
                    if cancel_requests(task) > requested:
                        # Cancelled meanwhile, but the cancellation got lost on its way: on Python
                        # 3.11 asyncio.wait_for (redis-py sends with it) drops one that lands as
                        # the send completes. Honour it: the flow gives back what it got.
                        raise asyncio.CancelledError()
                except BaseException as e:
                    error = e
        finally:
            if waiters:
                waiting = self._dispatcher()
                for waiter in waiters:
                    waiting.forget(waiter)

    async def _execute(self, call: Call, waiters: set[str]) -> Any:
        match call:
            case Script(op, args, confirm):
                async with gate(self.client):
                    return await self._run_acked(op, args, confirm)
            case Pop(waiter, timeout, cancel):
                waiters.add(waiter)
                return await self._dispatcher().pop(waiter, timeout, cancel)
            case Settle(waiter):
                return await self._dispatcher().settle(waiter)
            case Sleep(seconds, cancel):
                if cancel is None:
                    await asyncio.sleep(seconds)
                else:
                    try:
                        await asyncio.wait_for(cancel.wait(), seconds)
                    except asyncio.TimeoutError:
                        pass
                return None
            case Command(name, args):
                async with gate(self.client):
                    return await getattr(self.client, name)(*args)
            case Unlink(pattern):
                async for key in self.client.scan_iter(match=pattern, count=1000):
                    async with gate(self.client):
                        await self.client.unlink(key)
                return None
            case Detached(flow):
                return await detached(self._drive(flow))
        raise TypeError(f"not a call: {call!r}")  # pragma: no cover

    async def _run_acked(self, op: str, args: tuple[Any, ...], confirm: bool) -> tuple[Any, int]:
        acked = 0
        try:
            if confirm and self.min_replicas:
                reply, acked = await self._scripts.call_confirmed(op, self._script_keys, args, self.min_replicas,
                                                                  self._wait_ms)
            else:
                reply = await self._scripts.call(op, self._script_keys, args)
        except ResponseError as e:
            error = self._script_error(e)
            if error is e:
                raise
            raise error from None
        return _text(reply), acked

    def _dispatcher(self) -> Dispatcher:
        return dispatcher(self.client, self.keys, self.min_replicas, self._wait_ms, self._max_block)

    # -- configuration ----------------------------------------------------------------------

    async def configure(self, *, capacity: int, default_weight: float | None = None) -> None:
        """Create the pool or change it; idempotent (see ``wshare_redis.Pool.configure``)."""
        await self._drive(self._flow_configure(capacity, default_weight))

    async def set_weight(self, member: str, weight: float, max_units: Optional[int] = UNCHANGED) -> None:
        """Add a member or change its weight; ``max_units`` caps the units it may hold at once
        (None: no cap; left out: keep the current cap)."""
        await self._drive(self._flow_set_weight(member, weight, max_units))

    async def remove_member(self, member: str) -> bool:
        """Remove a member; False if it was not one. Its queued requests fail with
        MemberRemoved; its live leases run on until released or expired."""
        return await self._drive(self._flow_remove_member(member))

    async def delete(self) -> bool:
        """Delete the pool and every key it has; True if it existed. Live leases end at once."""
        return await self._drive(self._flow_delete())

    # -- acquiring ----------------------------------------------------------------------------

    async def try_acquire(self, member: str, *, units: int = 1, ttl: float = DEFAULT_TTL,
                          auto_renew: bool = False, on_lost: Optional[OnLost] = None,
                          max_hold: Optional[float] = None) -> Optional[Lease]:
        """Take ``units`` now if the rules allow it, else return None. Never blocks or queues.
        A caller cancelled during the call leaves no lease behind."""
        return await self._drive(self._flow_try_acquire(member, units, ttl, auto_renew, on_lost, max_hold))

    def acquire(self, member: str, *, units: int = 1, ttl: float = DEFAULT_TTL,
                timeout: Optional[float] = None, auto_renew: bool = False,
                on_lost: Optional[OnLost] = None, cancel: Optional[asyncio.Event] = None,
                max_hold: Optional[float] = None) -> Acquiring:
        """Take ``units``, waiting in the pool's fair queue until granted: ``lease = await
        pool.acquire(...)``, or ``async with pool.acquire(...) as lease:`` to release on exit.

        ``timeout``: seconds to wait (None: for ever; 0: no waiting) before AcquireTimeout.
        ``ttl``: seconds the lease lives without renewal. ``auto_renew``: renew in a task until
        released (see ``Lease.lost`` and ``on_lost``, which may be a coroutine function).
        ``max_hold``: with auto_renew, stop renewing that many seconds after the grant
        (on_lost is called; the lease then runs out at its TTL).
        ``cancel``: an asyncio.Event that stops the wait when set (AcquireCancelled).
        Cancelling the task stops the wait too: it leaves the queue, and a grant that raced
        with the cancellation is given back.
        """
        return Acquiring(self._acquire(member, units, ttl, timeout, auto_renew, on_lost, "", cancel, max_hold))

    async def _acquire(self, member: str, units: int, ttl: float, timeout: Optional[float],
                       auto_renew: bool, on_lost: Optional[OnLost], create: str,
                       cancel: Optional[asyncio.Event] = None, max_hold: Optional[float] = None) -> Lease:
        return await self._drive(self._flow_acquire(member, units, ttl, timeout, auto_renew, on_lost, create,
                                                    cancel, max_hold))

    # -- parked requests (for adapters) -------------------------------------------------------

    async def park(self, member: str, request_id: str, *, units: int = 1,
                   ttl: float = DEFAULT_TTL) -> Optional[Lease]:
        """Queue a request no client blocks on (see ``wshare_redis.Pool.park``)."""
        return await self._drive(self._flow_request_with_id("park", member, request_id, units, ttl))

    async def handoffs(self, limit: int = 100) -> list[str]:
        """Ids of parked requests granted or failed, oldest first (kept until ``ack_handoff``)."""
        return await self._drive(self._flow_handoffs(limit))

    async def ack_handoff(self, request_id: str) -> None:
        """Remove a parked request's id from the hand-off list once acted on."""
        await self._drive(self._flow_ack_handoff(request_id))

    async def cancel(self, request_id: str) -> bool:
        """Take a queued (parked) request out of the queue; True if it was queued."""
        return await self._drive(self._flow_cancel(request_id))

    async def lease(self, lease_id: str) -> Optional[Lease]:
        """The live lease with this id, or None (a handle to renew or release it)."""
        return await self._drive(self._flow_lease(lease_id))

    async def revoke(self, lease_id: str) -> bool:
        """End someone's lease now (its holder's next renewal reports it lost); True if it
        was live. Its units go to the waiters at once."""
        return await self._drive(self._flow_revoke(lease_id))

    # -- inspection ---------------------------------------------------------------------------

    async def status(self) -> PoolStatus:
        """Capacity, units held and queued, and per member weight, cap, held, waiting and fair share."""
        return await self._drive(self._flow_status())

    async def leases(self) -> list[Lease]:
        """The live leases, oldest expiry first. They can be released or renewed (admin use)."""
        return await self._drive(self._flow_leases())
