"""Pool: the client side of a weighted pool, with blocking calls. Every state change is one
Lua script call; the argument checks, the calls and what their replies mean are the shared
flows of ``_core``, which this module runs with blocking I/O (``wshare_redis.asyncio`` awaits
the same flows)."""
from __future__ import annotations

import threading
import time
from typing import Any, Optional, TypeVar

from redis.exceptions import ResponseError

from ._core import Call, Command, Detached, Flow, Pop, PoolCore, Script, Settle, Sleep, Unlink, _text
# Imported from here by the rest of the package, the tests and the benchmarks:
from ._core import DEFAULT_TTL as DEFAULT_TTL
from ._core import UNCHANGED as UNCHANGED
from ._core import new_id as new_id
from .keys import DEFAULT_PREFIX
from .lease import Lease, OnLost
from .scripts import node_client, scripts_for
from .status import PoolStatus

T = TypeVar("T")


class Pool(PoolCore[Lease]):
    """A named pool of ``capacity`` units shared by weighted members.

    A cheap handle: creating one does no I/O. ``client`` is any redis-py client (sync),
    with ``decode_responses`` True or False; keys live under ``<prefix>:{<name>}:``.

    ``min_replicas``: confirm every grant and renewal with WAIT on that many replicas
    within ``replica_timeout`` seconds before returning it, so a failover to a replica
    cannot lose it; an unconfirmed grant is given back and NotReplicated is raised.
    """

    _lease_type = Lease

    def __init__(self, client: Any, name: str, *, prefix: str = DEFAULT_PREFIX, min_replicas: int = 0,
                 replica_timeout: float = 0.1) -> None:
        super().__init__(client, name, prefix=prefix, min_replicas=min_replicas, replica_timeout=replica_timeout)
        self._scripts = scripts_for(client)

    # -- running flows with blocking I/O ------------------------------------------------------

    def _drive(self, flow: Flow[T]) -> T:
        """Run a flow: each call it yields is made here and its result (or exception) sent back."""
        result: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                call = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            result = error = None
            try:
                result = self._execute(call)
            except BaseException as e:
                error = e

    def _execute(self, call: Call) -> Any:
        match call:
            case Script(op, args, confirm):
                return self._run_acked(op, args, confirm)
            case Pop(waiter, timeout, _):
                item, acked = self._pop(self.keys.wake(waiter), timeout)
                return (None if item is None else str(_text(item[1]))), acked
            case Settle():
                return None, 0  # nobody else reads a blocking waiter's wake list
            case Sleep(seconds, cancel):
                if cancel is not None:
                    cancel.wait(seconds)
                else:
                    time.sleep(seconds)
                return None
            case Command(name, args):
                return getattr(self.client, name)(*args)
            case Unlink(pattern):
                for key in self.client.scan_iter(match=pattern, count=1000):
                    self.client.unlink(key)
                return None
            case Detached(flow):
                return self._drive(flow)
        raise TypeError(f"not a call: {call!r}")  # pragma: no cover

    def _run(self, op: str, *args: Any) -> Any:
        return self._run_acked(op, args, False)[0]

    def _run_acked(self, op: str, args: tuple[Any, ...], confirm: bool) -> tuple[Any, int]:
        """Run one operation; with ``confirm`` (and min_replicas) WAIT for the replicas on the
        same connection too: (reply, replicas that acknowledged; 0 without confirm)."""
        acked = 0
        try:
            if confirm and self.min_replicas:
                reply, acked = self._scripts.call_confirmed(op, self._script_keys, args, self.min_replicas,
                                                            self._wait_ms)
            else:
                reply = self._scripts.call(op, self._script_keys, args)
        except ResponseError as e:
            error = self._script_error(e)
            if error is e:
                raise
            raise error from None
        return _text(reply), acked

    def _pop(self, wake: str, timeout: float) -> tuple[Any, int]:
        """BLPOP the wake list; with min_replicas, WAIT on the same connection: the pop is a
        write made after the grant, so its acknowledgement covers the grant."""
        if not self.min_replicas:
            return self.client.blpop([wake], timeout=timeout), 0
        pipe = node_client(self.client, wake).pipeline(transaction=False)
        pipe.blpop([wake], timeout=timeout)
        pipe.execute_command("WAIT", self.min_replicas, self._wait_ms)
        item, acked = pipe.execute()
        return item, int(acked)

    # -- configuration ----------------------------------------------------------------------

    def configure(self, *, capacity: int, default_weight: float | None = None) -> None:
        """Create the pool or change it; idempotent. ``default_weight`` (None: keep, 1.0 for a
        new pool) is the weight of members that acquire without having been added.

        Shrinking never revokes live leases; queued requests larger than a non-zero new
        capacity fail with InvalidRequest. Capacity 0 drains the pool: requests wait.
        """
        self._drive(self._flow_configure(capacity, default_weight))

    def set_weight(self, member: str, weight: float, max_units: Optional[int] = UNCHANGED) -> None:
        """Add a member or change its weight; ``max_units`` caps the units it may hold at once
        (None: no cap; left out: keep the current cap). Takes effect at once, revokes nothing;
        queued requests above a lowered cap fail with InvalidRequest."""
        self._drive(self._flow_set_weight(member, weight, max_units))

    def remove_member(self, member: str) -> bool:
        """Remove a member; False if it was not one. Its queued requests fail with
        MemberRemoved; its live leases run on until released or expired."""
        return self._drive(self._flow_remove_member(member))

    def delete(self) -> bool:
        """Delete the pool and every key it has; True if it existed. Live leases end at once."""
        return self._drive(self._flow_delete())

    # -- acquiring ----------------------------------------------------------------------------

    def try_acquire(self, member: str, *, units: int = 1, ttl: float = DEFAULT_TTL,
                    auto_renew: bool = False, on_lost: Optional[OnLost] = None,
                    max_hold: Optional[float] = None) -> Optional[Lease]:
        """Take ``units`` now if the rules allow it, else return None. Never blocks or queues."""
        return self._drive(self._flow_try_acquire(member, units, ttl, auto_renew, on_lost, max_hold))

    def acquire(self, member: str, *, units: int = 1, ttl: float = DEFAULT_TTL,
                timeout: Optional[float] = None, auto_renew: bool = False,
                on_lost: Optional[OnLost] = None, cancel: Optional[threading.Event] = None,
                max_hold: Optional[float] = None) -> Lease:
        """Take ``units``, waiting in the pool's fair queue until granted.

        ``timeout``: seconds to wait (None: for ever; 0: no waiting) before AcquireTimeout.
        ``ttl``: seconds the lease lives without renewal. ``auto_renew``: renew in the
        background until released (see ``Lease.lost`` and ``on_lost``). ``max_hold``: with
        auto_renew, stop renewing that many seconds after the grant (on_lost is called; the
        lease then runs out at its TTL), so a hung holder cannot keep the units for ever.
        ``cancel``: an event another thread may set to stop waiting (AcquireCancelled,
        within 0.2 s). Use the returned lease as a context manager to release it on exit.
        """
        return self._acquire(member, units, ttl, timeout, auto_renew, on_lost, "", cancel, max_hold)

    def _acquire(self, member: str, units: int, ttl: float, timeout: Optional[float],
                 auto_renew: bool, on_lost: Optional[OnLost], create: str,
                 cancel: Optional[threading.Event] = None, max_hold: Optional[float] = None) -> Lease:
        return self._drive(self._flow_acquire(member, units, ttl, timeout, auto_renew, on_lost, create, cancel,
                                              max_hold))

    def _wait(self, waiter: str, next_expiry_ms: int, deadline: Optional[float],
              cancel: Optional[threading.Event] = None) -> tuple[Optional[str], int]:
        """Block until the waiter's message, a stop or a purge (see ``_core.PoolCore._flow_wait``)."""
        return self._drive(self._flow_wait(waiter, next_expiry_ms, deadline, cancel))

    # -- parked requests (for adapters such as the RQ one) -----------------------------------

    def park(self, member: str, request_id: str, *, units: int = 1, ttl: float = DEFAULT_TTL) -> Optional[Lease]:
        """Ask for units for work that waits without a client blocking on it (a parked job).

        Returns the Lease (id ``request_id``) if granted at once. Otherwise the request
        queues by the same rules as ``acquire``, is never purged, and when it is granted
        (a lease with id ``request_id`` and ``ttl``) or fails (resize, removal), its id is
        appended to the pool's hand-off list: see ``handoffs`` and ``lease``. Idempotent per
        ``request_id``: a request already queued stays as it is, a live lease is returned.
        """
        return self._drive(self._flow_request_with_id("park", member, request_id, units, ttl))

    def _try_with_id(self, member: str, lease_id: str, *, units: int, ttl: float) -> Optional[Lease]:
        """try_acquire with a lease id chosen by the caller (an adapter's request id)."""
        return self._drive(self._flow_request_with_id("try", member, lease_id, units, ttl))

    def handoffs(self, limit: int = 100) -> list[str]:
        """Ids of parked requests granted or failed, oldest first (kept until ``ack_handoff``);
        at most ``limit`` (0 to 100,000) of them."""
        return self._drive(self._flow_handoffs(limit))

    def ack_handoff(self, request_id: str) -> None:
        """Remove a parked request's id from the hand-off list once acted on."""
        self._drive(self._flow_ack_handoff(request_id))

    def cancel(self, request_id: str) -> bool:
        """Take a queued (parked) request out of the queue; True if it was queued."""
        return self._drive(self._flow_cancel(request_id))

    def lease(self, lease_id: str) -> Optional[Lease]:
        """The live lease with this id, or None (a handle to renew or release it)."""
        return self._drive(self._flow_lease(lease_id))

    # -- lease operations (used by Lease) ----------------------------------------------------

    def _renew(self, lease_id: str, ms: int) -> Optional[int]:
        return self._drive(self._flow_renew(lease_id, ms))

    def _release(self, lease_id: str, why: str = "release") -> bool:
        return self._drive(self._flow_release(lease_id, why))

    def _drain(self) -> None:
        self._drive(self._flow_drain())

    def revoke(self, lease_id: str) -> bool:
        """End someone's lease now (its holder's next renewal reports it lost); True if it
        was live. Its units go to the waiters at once."""
        return self._drive(self._flow_revoke(lease_id))

    # -- inspection ---------------------------------------------------------------------------

    def status(self) -> PoolStatus:
        """Capacity, units held and queued, and per member weight, cap, held, waiting and fair share."""
        return self._drive(self._flow_status())

    def leases(self) -> list[Lease]:
        """The live leases, oldest expiry first. They can be released or renewed (admin use)."""
        return self._drive(self._flow_leases())
