"""How waiting tasks get their wake messages without a connection each: one dispatcher task
per (client, pool) blocks in a single BLPOP on the wake lists of all the pool's waiting tasks
(they share the pool's {hash tag}, so this works on Redis Cluster too) and hands each message
to its task through a Future. Also: the per-client gate that keeps wshare's commands within
the client's connection limit, and detached tasks for clean-ups that must outlive a
cancellation.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Awaitable, Optional, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._core import OUTAGE_BACKOFF, OUTAGE_BACKOFF_MAX, _text, new_id
from ..keys import PoolKeys
from ..scripts import node_pipeline

log = logging.getLogger("wshare_redis")

T = TypeVar("T")

#: The control list's lifetime (ms) after its last push, should a dispatcher vanish mid-way.
CONTROL_TTL_MS = 60_000
#: Above this many connections a client counts as unlimited: no gate.
_UNLIMITED = 100_000

Message = tuple[str, int]  # (wake message, replicas that acknowledged the pop)


# -- detached clean-ups -------------------------------------------------------------------------

_background: set["asyncio.Task[Any]"] = set()


def cancel_requests(task: Optional["asyncio.Task[Any]"]) -> int:
    """How often ``task`` was asked to cancel (Python 3.11+; 0 where unknown)."""
    cancelling = getattr(task, "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


def spawn(coro: Awaitable[T]) -> "asyncio.Task[T]":
    """Run ``coro`` in its own task, kept alive until it ends."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def _report(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("wshare: a clean-up whose caller was cancelled failed: %r", task.exception())


async def detached(coro: Awaitable[T]) -> T:
    """Await ``coro`` in its own task: if the caller is cancelled meanwhile, it still runs to
    its end (the caller sees CancelledError at once; a failure is logged)."""
    task = spawn(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_report)
        raise


# -- the gate: wshare's commands stay within the client's connections ---------------------------

class _NoGate:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def connection_limit(client: Any) -> Optional[int]:
    """The most connections ``client`` opens (per node on a cluster), None if unlimited."""
    pool = getattr(client, "connection_pool", None)
    limit = getattr(pool, "max_connections", None)
    if limit is None:
        kwargs = getattr(client, "connection_kwargs", None)
        limit = kwargs.get("max_connections") if isinstance(kwargs, dict) else None
    if not isinstance(limit, int) or limit >= _UNLIMITED:
        return None
    return max(1, limit)


_gates: "weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, Any]]" = weakref.WeakKeyDictionary()


def gate(client: Any) -> Any:
    """An async context manager every wshare command on ``client`` runs in: a semaphore as
    large as the client's connection pool, so that hundreds of tasks queue here instead of
    exhausting the pool (redis.asyncio raises MaxConnectionsError then)."""
    loop = asyncio.get_running_loop()
    try:
        found = _gates.get(client)
    except TypeError:  # not weakly referenceable: no gate
        return _NoGate()
    if found is None or found[0] is not loop:
        limit = connection_limit(client)
        found = _gates[client] = (loop, asyncio.Semaphore(limit) if limit else _NoGate())
    return found[1]


# -- the dispatcher -----------------------------------------------------------------------------

class Dispatcher:
    """The waiter loop of one pool on one client.

    A waiting task calls ``pop``: the first time, its future is registered and the loop is
    started, or woken through a private control list (a wake list of the pool that only this
    loop reads) so that its next BLPOP includes the new key; no polling. The loop BLPOPs the
    control list and every registered wake list at once and resolves the future of the
    waiter whose list had the message. Messages for waiters no longer registered are
    dropped: such a waiter left through the ``cancel`` script and released its own id.

    ``settle`` closes the one race this creates: a script found a waiter's wake list empty
    because this loop had just taken the message. A barrier token pushed to the control
    list comes back after every message popped before it, so waiting for it tells whether
    the message is on its way.
    """

    def __init__(self, client: Any, keys: PoolKeys, min_replicas: int, wait_ms: int, block: float) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.prefix = keys.wake_prefix
        self.control = keys.wake("dispatch-" + new_id())
        self.min_replicas, self.wait_ms, self.block = min_replicas, wait_ms, block
        self.gate = gate(client)
        self.futures: dict[str, asyncio.Future[Message]] = {}
        self.barriers: dict[str, asyncio.Future[None]] = {}
        self.listening: Optional[frozenset[str]] = None  # the waiters of the BLPOP in flight, if any
        self.woken = False  # a push already ends that BLPOP: one is enough
        self.task: Optional[asyncio.Task[None]] = None

    # -- for waiting tasks ------------------------------------------------------------------

    async def pop(self, waiter: str, timeout: float, cancel: Optional[asyncio.Event]) -> tuple[Optional[str], int]:
        """The waiter's message within ``timeout`` seconds (or until ``cancel`` is set), else
        (None, 0); the waiter stays registered until it has its message or is forgotten."""
        fut = self.futures.get(waiter)
        if fut is None:
            fut = self.futures[waiter] = self.loop.create_future()
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run(), name=f"wshare-dispatch-{self.prefix}")
        elif not fut.done() and self.listening is not None and waiter not in self.listening and not self.woken:
            await self._wake("new")  # the BLPOP in flight does not include this waiter: renew it
        if not fut.done():
            either: set[asyncio.Future[Any]] = {fut}
            stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
            if stop is not None:
                either.add(stop)
            try:
                await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if stop is not None:
                    stop.cancel()
        if not fut.done():
            return None, 0
        self.forget(waiter)
        message, acked = fut.result()
        return message, acked

    async def settle(self, waiter: str) -> tuple[Optional[str], int]:
        """A script found the waiter's wake list empty: the message this loop took off it, if
        it did, else (None, 0)."""
        fut = self.futures.get(waiter)
        if fut is None:
            return None, 0
        if not fut.done() and waiter in (self.listening or ()):  # the pop in flight may carry its message
            token = new_id()
            barrier = self.barriers[token] = self.loop.create_future()
            try:
                await self._push(token)
                await barrier
            finally:
                self.barriers.pop(token, None)
        if not fut.done():
            return None, 0
        self.forget(waiter)
        message, acked = fut.result()
        return message, acked

    def forget(self, waiter: str) -> None:
        """The waiter is done: no more messages for it. The loop ends once nobody waits."""
        fut = self.futures.pop(waiter, None)
        if fut is not None and fut.done() and not fut.cancelled():
            fut.exception()  # retrieved: an error meant for a waiter that left anyway
        if (self.listening is not None and not self.woken and not self.barriers
                and all(f.done() for f in self.futures.values())):
            spawn(self._wake("idle", quietly=True))  # end the BLPOP in flight now, not at its timeout

    # -- the loop -----------------------------------------------------------------------------

    async def _push(self, token: str) -> None:
        async with self.gate:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(self.control, token)
            pipe.pexpire(self.control, CONTROL_TTL_MS)
            await pipe.execute()

    async def _wake(self, why: str, quietly: bool = False) -> None:
        """End the BLPOP in flight so that the next one has the current waiters (or none)."""
        self.woken = True
        try:
            await self._push(why)
        except Exception:
            self.woken = False
            if not quietly:
                raise

    async def _pop(self, keys: list[str]) -> tuple[Any, int]:
        if not self.min_replicas:
            return await self.client.blpop(keys, timeout=self.block), 0
        # The pop is a write made after the grant: WAIT on its connection covers the grant.
        item, acked = await node_pipeline(self.client, keys[0], [("BLPOP", *keys, self.block),
                                                                 ("WAIT", self.min_replicas, self.wait_ms)])
        for result in (item, acked):
            if isinstance(result, Exception):
                raise result
        return item, int(acked)

    def _release_barriers(self) -> None:
        """The BLPOP in flight ended without delivering anything more: barriers may pass."""
        for barrier in self.barriers.values():
            if not barrier.done():
                barrier.set_result(None)

    async def _run(self) -> None:
        backoff = OUTAGE_BACKOFF
        try:
            while True:
                waiting = [w for w, f in self.futures.items() if not f.done()]
                if not waiting and not self.barriers:
                    return  # pop() starts a new loop for the next waiter
                try:
                    async with self.gate:
                        waiting = [w for w, f in self.futures.items() if not f.done()]
                        self.listening, self.woken = frozenset(waiting), False
                        item, acked = await self._pop([self.control] + [self.prefix + w for w in waiting])
                except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                    # Waiters ride out the outage with their own check-ins; this loop retries.
                    self.listening = None
                    self._release_barriers()
                    log.debug("wshare: dispatcher of %r: Redis unreachable, retrying: %s", self.prefix, e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, OUTAGE_BACKOFF_MAX)
                    continue
                except Exception as e:  # e.g. NOPERM: every waiter fails with it, none hangs
                    self.listening = None
                    for fut in self.futures.values():
                        if not fut.done():
                            fut.set_exception(e)
                    return
                self.listening = None
                backoff = OUTAGE_BACKOFF
                if item is None:
                    continue
                key, message = str(_text(item[0])), str(_text(item[1]))
                if key == self.control:
                    barrier = self.barriers.get(message)
                    if barrier is not None and not barrier.done():
                        barrier.set_result(None)
                    continue
                target = self.futures.get(key[len(self.prefix):])
                if target is not None and not target.done():
                    target.set_result((message, acked))
        finally:
            self.listening = None
            self._release_barriers()


_dispatchers: "weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Dispatcher]]" = weakref.WeakKeyDictionary()


def dispatcher(client: Any, keys: PoolKeys, min_replicas: int, wait_ms: int, block: float) -> Dispatcher:
    """The dispatcher of this pool on this client in the running loop (made on first use)."""
    loop = asyncio.get_running_loop()
    key = (keys, min_replicas, wait_ms)
    with contextlib.suppress(KeyError):
        found = _dispatchers[client][key]
        if found.loop is loop:
            return found
    made = Dispatcher(client, keys, min_replicas, wait_ms, block)
    _dispatchers.setdefault(client, {})[key] = made
    return made
