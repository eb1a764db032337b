"""Pool: the client side of a weighted pool. Every state change is one Lua script call;
this module checks arguments, runs the scripts and turns their replies into results."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any, Optional, Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._checks import check_capacity, check_max_units, check_seconds, check_units, check_weight, ttl_ms
from .errors import (AcquireCancelled, AcquireTimeout, InvalidRequest, MemberRemoved, NotReplicated, PoolNotFound,
                     PoolStateError, RedisUnavailable, WshareError)
from .keys import DEFAULT_PREFIX, check_name, pool_keys
from .lease import Lease, OnLost
from .scripts import node_client, scripts_for
from .status import PoolStatus, build_status

log = logging.getLogger("wshare_redis")

DEFAULT_TTL = 30.0
#: A blocked waiter checks in at least this often (seconds) ...
HEARTBEAT = 2.0
#: ... and is purged as dead when silent for this long (seconds).
ALIVE_WINDOW = 10.0
#: How often (seconds) a waiter given a ``cancel`` event looks at it.
CANCEL_CHECK = 0.2
#: While Redis is unreachable, a blocked waiter retries after this many seconds, doubling up to
#: OUTAGE_BACKOFF_MAX, until its timeout.
OUTAGE_BACKOFF, OUTAGE_BACKOFF_MAX = 0.05, 1.0
#: Repeat calls of one operation that reports more work left (large batches).
_MAX_ROUNDS = 100_000


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: ``set_weight(..., max_units=UNCHANGED)``: keep the member's current cap.
UNCHANGED: Any = _Unchanged()


def _text(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.decode("utf-8", "surrogateescape")
    if isinstance(x, list):
        return [_text(v) for v in x]
    return x


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def new_id() -> str:
    """An unguessable lease/waiter id (128 random bits)."""
    return secrets.token_hex(16)


class Pool:
    """A named pool of ``capacity`` units shared by weighted members.

    A cheap handle: creating one does no I/O. ``client`` is any redis-py client (sync),
    with ``decode_responses`` True or False; keys live under ``<prefix>:{<name>}:``.

    ``min_replicas``: confirm every grant and renewal with WAIT on that many replicas
    within ``replica_timeout`` seconds before returning it, so a failover to a replica
    cannot lose it; an unconfirmed grant is given back and NotReplicated is raised.
    """

    def __init__(self, client: Any, name: str, *, prefix: str = DEFAULT_PREFIX, min_replicas: int = 0,
                 replica_timeout: float = 0.1) -> None:
        if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or not 0 <= min_replicas <= 1000:
            raise InvalidRequest(f"min_replicas must be an int between 0 and 1000, not {min_replicas!r}")
        self.min_replicas = min_replicas
        self.replica_timeout = check_seconds(replica_timeout, "replica_timeout")
        self._wait_ms = max(1, round(self.replica_timeout * 1000))
        self.keys = pool_keys(prefix, name)
        self.client = client
        self.name = name
        self.prefix = prefix
        self._script_keys = self.keys.script_keys
        self._scripts = scripts_for(client)
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
        timeout = kwargs.get("socket_timeout")
        # A blocking pop must return before the client's own socket timeout fires.
        self._max_block = HEARTBEAT if not timeout else max(min(HEARTBEAT, timeout * 0.8), 0.01)

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, prefix={self.prefix!r})"

    # -- script plumbing --------------------------------------------------------------------

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
            msg = str(e)
            if msg.startswith("WSHARE corrupt"):
                raise PoolStateError(f"pool {self.name!r}: {msg[len('WSHARE corrupt '):]} "
                                     "(state edited by hand? `wshare pool delete` resets it)") from None
            if msg.startswith("WSHARE"):
                raise WshareError(f"pool {self.name!r}: {msg}") from None
            raise
        return _text(reply), acked

    def _confirmed(self, lease: Lease, acked: int) -> Lease:
        """Return a fresh grant if enough replicas acknowledged it, else give it back and raise."""
        if self.min_replicas and acked < self.min_replicas:
            try:
                lease.release()
            except Exception:  # the lease expires by itself; the error below matters more
                log.warning("wshare: could not give back unconfirmed lease %s of pool %r", lease.id, self.name,
                            exc_info=True)
            raise NotReplicated(self.name, "grant", self.min_replicas, acked, self.replica_timeout)
        return lease

    def _fail(self, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == "nopool":
            raise PoolNotFound(self.name)
        if kind == "invalid":
            raise InvalidRequest(f"pool {self.name!r}: {reply[1]}")
        if kind == "nomember":
            raise LookupError(f"pool {self.name!r} has no member {reply[1]!r}")
        raise PoolStateError(f"pool {self.name!r}: unexpected reply {reply!r}")

    def _until_done(self, op: str, *args: Any) -> None:
        for _ in range(_MAX_ROUNDS):
            reply = self._run(op, *args)
            if reply[0] != "ok":
                self._fail(reply)
            if not int(reply[1]):
                return
        raise PoolStateError(f"pool {self.name!r}: {op} did not finish")  # pragma: no cover

    # -- configuration ----------------------------------------------------------------------

    def configure(self, *, capacity: int, default_weight: float | None = None) -> None:
        """Create the pool or change it; idempotent. ``default_weight`` (None: keep, 1.0 for a
        new pool) is the weight of members that acquire without having been added.

        Shrinking never revokes live leases; queued requests larger than a non-zero new
        capacity fail with InvalidRequest. Capacity 0 drains the pool: requests wait.
        """
        cap = check_capacity(capacity)
        dw = "" if default_weight is None else check_weight(default_weight, "default_weight")
        self._until_done("configure", cap, dw)

    def set_weight(self, member: str, weight: float, max_units: Optional[int] = UNCHANGED) -> None:
        """Add a member or change its weight; ``max_units`` caps the units it may hold at once
        (None: no cap; left out: keep the current cap). Takes effect at once, revokes nothing;
        queued requests above a lowered cap fail with InvalidRequest."""
        check_name(member, "member")
        ws = check_weight(weight)
        mx = "" if max_units is UNCHANGED else ("-" if max_units is None else str(check_max_units(max_units)))
        self._until_done("set_member", member, ws, mx)

    def remove_member(self, member: str) -> bool:
        """Remove a member; False if it was not one. Its queued requests fail with
        MemberRemoved; its live leases run on until released or expired."""
        check_name(member, "member")
        for _ in range(_MAX_ROUNDS):
            reply = self._run("remove_member", member)
            if reply[0] == "nomember":
                return False
            if reply[0] != "ok":
                self._fail(reply)
            if not int(reply[1]):
                return True
        raise PoolStateError(f"pool {self.name!r}: remove_member did not finish")  # pragma: no cover

    def delete(self) -> bool:
        """Delete the pool and every key it has; True if it existed. Live leases end at once."""
        existed = bool(self._run("delete"))
        # Wake lists of waiters that were granted but never picked up: not known to the script.
        for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
            self.client.unlink(key)
        return existed

    # -- acquiring ----------------------------------------------------------------------------

    def try_acquire(self, member: str, *, units: int = 1, ttl: float = DEFAULT_TTL,
                    auto_renew: bool = False, on_lost: Optional[OnLost] = None) -> Optional[Lease]:
        """Take ``units`` now if the rules allow it, else return None. Never blocks or queues."""
        check_name(member, "member")
        units = check_units(units)
        ms = ttl_ms(ttl)
        lease_id = new_id()
        reply, acked = self._run_acked("acquire", (member, units, ms, lease_id, "try", 0, "", ""), True)
        if reply[0] == "busy":
            return None
        if reply[0] != "ok":
            self._fail(reply)
        return self._confirmed(self._granted(lease_id, member, units, ms, reply[1], reply[2], auto_renew, on_lost),
                               acked)

    def acquire(self, member: str, *, units: int = 1, ttl: float = DEFAULT_TTL,
                timeout: Optional[float] = None, auto_renew: bool = False,
                on_lost: Optional[OnLost] = None, cancel: Optional[threading.Event] = None) -> Lease:
        """Take ``units``, waiting in the pool's fair queue until granted.

        ``timeout``: seconds to wait (None: for ever; 0: no waiting) before AcquireTimeout.
        ``ttl``: seconds the lease lives without renewal. ``auto_renew``: renew in the
        background until released (see ``Lease.lost`` and ``on_lost``). ``cancel``: an event
        another thread may set to stop waiting (AcquireCancelled, within 0.2 s). Use the
        returned lease as a context manager to release it on exit.
        """
        return self._acquire(member, units, ttl, timeout, auto_renew, on_lost, "", cancel)

    def _acquire(self, member: str, units: int, ttl: float, timeout: Optional[float],
                 auto_renew: bool, on_lost: Optional[OnLost], create: str,
                 cancel: Optional[threading.Event] = None) -> Lease:
        check_name(member, "member")
        units = check_units(units)
        ms = ttl_ms(ttl)
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout", allow_zero=True)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        mode = "try" if timeout == 0 else "wait"
        while True:  # more than once only if the waiter was purged while stalled
            waiter = new_id()
            try:
                reply, acked = self._run_acked(
                    "acquire", (member, units, ms, waiter, mode, self._alive_ms(deadline), create, ""), True)
            except BaseException:
                if mode == "wait":  # the request may have been queued or granted before the interrupt
                    self._give_up(waiter)
                raise
            if reply[0] == "ok":
                return self._confirmed(self._granted(waiter, member, units, ms, reply[1], reply[2], auto_renew,
                                                     on_lost), acked)
            if reply[0] == "busy":
                raise AcquireTimeout(self.name, member, units, 0.0)
            if reply[0] != "queued":
                self._fail(reply)
            try:
                message, acked = self._wait(waiter, int(reply[1]), deadline, cancel)
            except RedisUnavailable:
                raise
            except BaseException:
                self._give_up(waiter)
                raise
            if message is None:
                continue  # purged as dead (stalled longer than ALIVE_WINDOW): ask again
            if message == "timeout":
                raise AcquireTimeout(self.name, member, units, timeout or 0.0)
            if message == "cancelled":
                raise AcquireCancelled(f"pool {self.name!r}: request of member {member!r} cancelled")
            return self._confirmed(self._delivered(message, waiter, member, units, ms, auto_renew, on_lost), acked)

    def _alive_ms(self, deadline: Optional[float]) -> int:
        window = ALIVE_WINDOW
        if deadline is not None:
            window = min(window, max(deadline - time.monotonic(), 0) + 1.0)
        return round(window * 1000)

    def _wait(self, waiter: str, next_expiry_ms: int, deadline: Optional[float],
              cancel: Optional[threading.Event] = None) -> tuple[Optional[str], int]:
        """Block on the waiter's wake list, checking in every HEARTBEAT seconds and when the
        earliest lease runs out (so a crashed holder's units move on with no other client
        acting). Returns the message pushed to the waiter, "timeout" or "cancelled" once it
        has left the queue, or None if it was purged as dead and must ask again; with the
        replicas that acknowledged it (min_replicas).

        If Redis becomes unreachable, it retries with backoff and carries on once Redis is
        back (with AOF the queue entry survives a restart); RedisUnavailable if the deadline
        passes first."""
        backoff = OUTAGE_BACKOFF
        down_since: Optional[float] = None
        now = time.monotonic()
        check_in = now + self._max_block  # when to check in first
        if next_expiry_ms >= 0:
            check_in = min(check_in, now + next_expiry_ms / 1000 + 0.002)
        while True:
            try:
                result = self._wait_round(waiter, deadline, cancel, check_in)
            except (RedisConnectionError, RedisTimeoutError) as e:
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    log.warning("wshare: Redis unreachable while waiting in pool %r, retrying: %s", self.name, e)
                if deadline is not None and now >= deadline:
                    raise RedisUnavailable(
                        f"pool {self.name!r}: Redis unreachable for {now - down_since:.1f}s while waiting, until "
                        f"the timeout passed ({e})") from e
                if cancel is not None and cancel.is_set():
                    raise AcquireCancelled(f"pool {self.name!r}: request cancelled while Redis was unreachable") from e
                pause = backoff if deadline is None else min(backoff, max(deadline - now, 0.0))
                if cancel is not None:
                    cancel.wait(pause)
                else:
                    time.sleep(pause)
                backoff = min(backoff * 2, OUTAGE_BACKOFF_MAX)
                check_in = time.monotonic()  # check in at once when Redis is back
                continue
            if down_since is not None:
                log.warning("wshare: Redis reachable again after %.1fs; pool %r", time.monotonic() - down_since,
                            self.name)
            return result

    def _wait_round(self, waiter: str, deadline: Optional[float], cancel: Optional[threading.Event],
                    check_in: float) -> tuple[Optional[str], int]:
        """The body of _wait, until a message, a stop, or a Redis error."""
        wake = self.keys.wake(waiter)
        while True:
            now = time.monotonic()
            stop = "cancelled" if cancel is not None and cancel.is_set() else None
            if stop is None and deadline is not None and now >= deadline:
                stop = "timeout"
            if stop is not None:
                reply, acked = self._run_acked("cancel", (waiter,), True)
                reply = self._more(reply)
                if reply[0] == "wake":
                    message = str(reply[1])
                    if stop == "cancelled" and message.startswith("ok:"):
                        self._release(waiter)  # granted in the same instant: give it back
                        return stop, acked
                    return message, acked  # a grant racing the timeout is kept
                if reply[0] == "nopool":
                    raise PoolNotFound(self.name)
                return stop, acked
            if now >= check_in:
                reply, acked = self._run_acked("wait", (waiter, self._alive_ms(deadline)), True)
                reply = self._more(reply)
                if reply[0] == "wake":
                    return str(reply[1]), acked
                if reply[0] == "gone":
                    log.warning("wshare: waiter in pool %r was purged as dead after a stall; asking again",
                                self.name)
                    return None, acked
                if reply[0] != "queued":
                    self._fail(reply)
                check_in = now + self._max_block
                if int(reply[1]) >= 0:
                    check_in = min(check_in, now + int(reply[1]) / 1000 + 0.002)
            block = check_in - now
            if deadline is not None:
                block = min(block, deadline - now)
            if cancel is not None:
                block = min(block, CANCEL_CHECK)
            item, acked = self._pop(wake, max(block, 0.001))
            if item is not None:
                return str(_text(item[1])), acked

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

    def _give_up(self, waiter: str) -> None:
        """Leave the queue after an interrupt. A grant that raced with it is released, also
        one whose message was taken off the wake list but never reached us (the waiter id is
        the lease id, so releasing it is safe when there is no such lease)."""
        try:
            reply = self._more(self._run("cancel", waiter))
            if reply[0] != "cancelled":
                self._release(waiter)
        except Exception:  # the original exception matters more; the entry expires anyway
            log.warning("wshare: could not leave the queue of pool %r cleanly", self.name, exc_info=True)

    def _delivered(self, message: str, lease_id: str, member: str, units: int, ms: int,
                   auto_renew: bool, on_lost: Optional[OnLost]) -> Lease:
        kind, _, rest = message.partition(":")
        if kind == "ok":
            token, _, expires = rest.partition(":")
            return self._granted(lease_id, member, units, ms, token, expires, auto_renew, on_lost)
        code, _, text = rest.partition(":")
        if code == "invalid":
            raise InvalidRequest(f"pool {self.name!r}: {text}")
        if code == "removed":
            raise MemberRemoved(f"pool {self.name!r}: {text}")
        raise PoolStateError(f"pool {self.name!r}: unexpected wake message {message!r}")

    def _granted(self, lease_id: str, member: str, units: int, ms: int, token: Any, expires_ms: Any,
                 auto_renew: bool, on_lost: Optional[OnLost]) -> Lease:
        lease = Lease(self, lease_id, member, units, int(token), int(expires_ms) / 1000, ms / 1000)
        if auto_renew:
            lease.start_auto_renew(on_lost)
        return lease

    # -- parked requests (for adapters such as the RQ one) -----------------------------------

    def park(self, member: str, request_id: str, *, units: int = 1, ttl: float = DEFAULT_TTL) -> Optional[Lease]:
        """Ask for units for work that waits without a client blocking on it (a parked job).

        Returns the Lease (id ``request_id``) if granted at once. Otherwise the request
        queues by the same rules as ``acquire``, is never purged, and when it is granted
        (a lease with id ``request_id`` and ``ttl``) or fails (resize, removal), its id is
        appended to the pool's hand-off list: see ``handoffs`` and ``lease``. Idempotent per
        ``request_id``: a request already queued stays as it is, a live lease is returned.
        """
        return self._request_with_id("park", member, request_id, units, ttl)

    def _try_with_id(self, member: str, lease_id: str, *, units: int, ttl: float) -> Optional[Lease]:
        """try_acquire with a lease id chosen by the caller (an adapter's request id)."""
        return self._request_with_id("try", member, lease_id, units, ttl)

    def _request_with_id(self, mode: str, member: str, request_id: str, units: int, ttl: float) -> Optional[Lease]:
        check_name(member, "member")
        check_name(request_id, "request id")
        units = check_units(units)
        ms = ttl_ms(ttl)
        reply = self._run("acquire", member, units, ms, request_id, mode, 0, "", "1")
        if reply[0] == "ok":
            if len(reply) > 3:  # the id was a live lease already: return it as it is
                member, units, ms = str(reply[4]), int(reply[3]), int(reply[5])
            return self._granted(request_id, member, units, ms, reply[1], reply[2], False, None)
        if reply[0] not in ("queued", "busy"):
            self._fail(reply)
        return None

    def handoffs(self, limit: int = 100) -> list[str]:
        """Ids of parked requests granted or failed, oldest first (kept until ``ack_handoff``);
        at most ``limit`` (0 to 100,000) of them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 100_000:
            raise InvalidRequest(f"limit must be an int between 0 and 100000, not {limit!r}")
        if limit == 0:
            return []
        return [str(x) for x in _text(self.client.lrange(self.keys.key("handoff"), 0, int(limit) - 1))]

    def ack_handoff(self, request_id: str) -> None:
        """Remove a parked request's id from the hand-off list once acted on."""
        check_name(request_id, "request id")
        self.client.lrem(self.keys.key("handoff"), 0, request_id)

    def cancel(self, request_id: str) -> bool:
        """Take a queued (parked) request out of the queue; True if it was queued."""
        check_name(request_id, "request id")
        reply = self._more(self._run("cancel", request_id))
        return bool(reply[0] == "cancelled")

    def lease(self, lease_id: str) -> Optional[Lease]:
        """The live lease with this id, or None (a handle to renew or release it)."""
        check_name(lease_id, "lease id")
        reply = self._run("lease", lease_id)
        if reply[0] != "ok":
            return None
        record, expires_ms = reply[1], reply[2]
        try:
            units, token, ttl, _granted, member = str(record).split(":", 4)
            return Lease(self, lease_id, member, int(units), int(token), float(expires_ms) / 1000, int(ttl) / 1000)
        except ValueError:
            raise PoolStateError(f"pool {self.name!r}: malformed lease record {record!r}") from None

    # -- lease operations (used by Lease) ----------------------------------------------------

    def _renew(self, lease_id: str, ms: int) -> Optional[int]:
        reply, acked = self._run_acked("renew", (lease_id, ms), True)
        reply = self._more(reply)
        if reply[0] != "ok":
            return None
        if self.min_replicas and acked < self.min_replicas:
            raise NotReplicated(self.name, "renewal", self.min_replicas, acked, self.replica_timeout)
        return int(reply[1])

    def _release(self, lease_id: str) -> bool:
        ended, more = self._run("release", lease_id)
        if int(more):
            self._drain()
        return bool(int(ended))

    def _more(self, reply: list[Any]) -> list[Any]:
        """Strip the trailing "more" flag of a reply, finishing a hand-off cut short by its
        batch limit (hundreds of units freed at once)."""
        if reply and reply[0] != "nopool":
            if int(reply.pop()):
                self._drain()
        return reply

    def _drain(self) -> None:
        for _ in range(_MAX_ROUNDS):
            if not int(self._run("tick")):
                return

    def revoke(self, lease_id: str) -> bool:
        """End someone's lease now (its holder's next renewal reports it lost); True if it
        was live. Its units go to the waiters at once."""
        check_name(lease_id, "lease id")
        return self._release(lease_id)

    # -- inspection ---------------------------------------------------------------------------

    def status(self) -> PoolStatus:
        """Capacity, units held and queued, and per member weight, cap, held, waiting and fair share."""
        reply = self._run("status")
        if reply[0] != "ok":
            self._fail(reply)
        return build_status(self.name, _pairs(reply[2]), _pairs(reply[3]), _pairs(reply[4]),
                            _pairs(reply[5]) if len(reply) > 5 else None)

    def leases(self) -> list[Lease]:
        """The live leases, oldest expiry first. They can be released or renewed (admin use)."""
        reply = self._run("leases")
        if reply[0] != "ok":
            self._fail(reply)
        records = _pairs(reply[2])
        out = []
        for lease_id, expires in _pairs(reply[3]).items():
            record = records.get(lease_id)
            if record is None:
                continue
            try:
                units, token, ttl, _granted, member = record.split(":", 4)
                out.append(Lease(self, lease_id, member, int(units), int(token),
                                 float(expires) / 1000, int(ttl) / 1000))
            except ValueError:
                raise PoolStateError(f"pool {self.name!r}: malformed lease record {record!r}") from None
        return out
