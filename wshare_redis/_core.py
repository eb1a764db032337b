"""What the sync and the asyncio front ends share: argument checks, the Lua calls each
operation makes, and what it makes of the replies (results, exceptions, follow-up calls).

Sans-I/O: every operation is a *flow*, a generator that yields the I/O it needs (``Script``,
``Pop``, ``Settle``, ``Sleep``, ``Command``, ``Unlink``, ``Detached``) and is sent each result,
or thrown the exception the I/O raised. ``wshare_redis.Pool`` drives flows with blocking calls
and ``wshare_redis.asyncio.Pool`` awaits them; neither decides anything itself, so a rule
(a retry, a give-back, a reply code) is written once, here.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Generator, Generic, NoReturn, Optional, Sequence, TypeVar, Union

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._checks import check_capacity, check_max_units, check_seconds, check_units, check_weight, ttl_ms
from .errors import (AcquireCancelled, AcquireTimeout, InvalidRequest, MemberRemoved, NotReplicated, PoolNotFound,
                     PoolStateError, RedisUnavailable, WshareError)
from .keys import DEFAULT_PREFIX, check_name, pool_keys
from .lease import LeaseBase, OnLost
from .status import PoolStatus, build_status

log = logging.getLogger("wshare_redis")

DEFAULT_TTL = 30.0
#: A blocked waiter checks in at least this often (seconds) ...
HEARTBEAT = 2.0
#: ... and is purged as dead when silent for this long (seconds).
ALIVE_WINDOW = 10.0
#: How often (seconds) a sync waiter given a ``cancel`` event looks at it.
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
    if isinstance(x, (list, tuple)):
        return [_text(v) for v in x]
    return x


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _renewal_limit(max_hold: object, auto_renew: bool) -> Optional[float]:
    """``max_hold`` checked: None, or seconds > 0 for an auto-renewed lease."""
    if max_hold is None:
        return None
    if not auto_renew:
        raise InvalidRequest("max_hold limits auto-renewal: it needs auto_renew=True")
    return check_seconds(max_hold, "max_hold")


def new_id() -> str:
    """An unguessable lease/waiter id (128 random bits)."""
    return secrets.token_hex(16)


def max_block(client: Any) -> float:
    """How long one blocking pop may last: HEARTBEAT, but below the client's socket timeout
    (a pop that outlasts it would fail as a dead connection)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(client, "connection_kwargs", None) or {}
    timeout = kwargs.get("socket_timeout") if isinstance(kwargs, dict) else None
    return HEARTBEAT if not timeout else max(min(HEARTBEAT, timeout * 0.8), 0.01)


# -- the I/O a flow asks for ---------------------------------------------------------------------

@dataclass(frozen=True)
class Script:
    """Run a Lua operation. Result: (reply, bytes decoded; replicas that acknowledged it, 0
    unless ``confirm`` and min_replicas). Error replies arrive as the exception to raise."""
    op: str
    args: tuple[Any, ...]
    confirm: bool = False


@dataclass(frozen=True)
class Pop:
    """Wait up to ``timeout`` seconds for the message pushed to a waiter's wake list.
    Result: (message or None, replicas that acknowledged). ``cancel``: the caller's cancel
    event; a front end that can wait on it stops early when it is set."""
    waiter: str
    timeout: float
    cancel: Any = None


@dataclass(frozen=True)
class Settle:
    """A script found the waiter's wake list empty. Result: (message, acked) if another
    reader of that list (the asyncio dispatcher) took the waiter's message, else (None, 0)."""
    waiter: str


@dataclass(frozen=True)
class Sleep:
    """Pause (outage backoff); a set ``cancel`` event may cut it short. Result: None."""
    seconds: float
    cancel: Any = None


@dataclass(frozen=True)
class Command:
    """A plain client command, ``client.<name>(*args)``. Result: its reply."""
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Unlink:
    """Unlink every key a SCAN pattern matches. Result: None."""
    pattern: str


@dataclass(frozen=True)
class Detached:
    """Run another flow to its end even if the caller is interrupted meanwhile (asyncio: in
    its own shielded task). Result: that flow's result."""
    flow: "Flow[Any]"


Call = Union[Script, Pop, Settle, Sleep, Command, Unlink, Detached]
T = TypeVar("T")
Flow = Generator[Call, Any, T]
L = TypeVar("L", bound=LeaseBase)


class PoolCore(Generic[L]):
    """Checked settings, key names and the flows of one pool; the front ends add the I/O.

    ``_lease_type`` makes the leases of the front end; ``_cancel_poll``: how often a waiter
    with a cancel event looks at it (None: the front end's Pop wakes when it is set).
    """

    _lease_type: type[L]
    _cancel_poll: Optional[float] = CANCEL_CHECK

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
        self._max_block = max_block(client)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, prefix={self.prefix!r})"

    # -- replies -------------------------------------------------------------------------------

    def _script_error(self, e: ResponseError) -> Exception:
        """The exception to raise for an error reply of a script (``e`` itself if not ours)."""
        msg = str(e)
        if msg.startswith("WSHARE corrupt"):
            return PoolStateError(f"pool {self.name!r}: {msg[len('WSHARE corrupt '):]} "
                                  "(state edited by hand? `wshare pool delete` resets it)")
        if msg.startswith("WSHARE"):
            return WshareError(f"pool {self.name!r}: {msg}")
        return e

    def _fail(self, reply: list[Any]) -> NoReturn:
        kind = reply[0]
        if kind == "nopool":
            raise PoolNotFound(self.name)
        if kind == "invalid":
            raise InvalidRequest(f"pool {self.name!r}: {reply[1]}")
        if kind == "nomember":
            raise LookupError(f"pool {self.name!r} has no member {reply[1]!r}")
        raise PoolStateError(f"pool {self.name!r}: unexpected reply {reply!r}")

    def _granted(self, lease_id: str, member: str, units: int, ms: int, token: Any, expires_ms: Any,
                 auto_renew: bool, on_lost: Optional[OnLost]) -> L:
        lease = self._lease_type(self, lease_id, member, units, int(token), int(expires_ms) / 1000, ms / 1000)
        if auto_renew:
            lease.start_auto_renew(on_lost)
        return lease

    def _delivered(self, message: str, lease_id: str, member: str, units: int, ms: int,
                   auto_renew: bool, on_lost: Optional[OnLost]) -> L:
        """The lease a wake message grants, or the exception it reports."""
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

    def _stored_lease(self, lease_id: str, record: Any, expires_ms: Any) -> L:
        """A lease from its stored record ``<units>:<token>:<ttl ms>:<granted ms>:<member>``."""
        try:
            units, token, ttl, _granted, member = str(record).split(":", 4)
            return self._lease_type(self, lease_id, member, int(units), int(token), float(expires_ms) / 1000,
                                    int(ttl) / 1000)
        except ValueError:
            raise PoolStateError(f"pool {self.name!r}: malformed lease record {record!r}") from None

    def _alive_ms(self, deadline: Optional[float]) -> int:
        window = ALIVE_WINDOW
        if deadline is not None:
            window = min(window, max(deadline - time.monotonic(), 0) + 1.0)
        return round(window * 1000)

    # -- small flows -----------------------------------------------------------------------------

    def _flow_call(self, op: str, *args: Any) -> Flow[Any]:
        reply, _ = yield Script(op, args)
        return reply

    def _flow_more(self, reply: list[Any]) -> Flow[list[Any]]:
        """Strip the trailing "more" flag of a reply, finishing a hand-off cut short by its
        batch limit (hundreds of units freed at once)."""
        if reply and reply[0] != "nopool":
            if int(reply.pop()):
                yield from self._flow_drain()
        return reply

    def _flow_drain(self) -> Flow[None]:
        for _ in range(_MAX_ROUNDS):
            if not int((yield from self._flow_call("tick"))):
                return

    def _flow_until_done(self, op: str, *args: Any) -> Flow[None]:
        for _ in range(_MAX_ROUNDS):
            reply = yield from self._flow_call(op, *args)
            if reply[0] != "ok":
                self._fail(reply)
            if not int(reply[1]):
                return
        raise PoolStateError(f"pool {self.name!r}: {op} did not finish")  # pragma: no cover

    # -- configuration ---------------------------------------------------------------------------

    def _flow_configure(self, capacity: int, default_weight: float | None) -> Flow[None]:
        cap = check_capacity(capacity)
        dw = "" if default_weight is None else check_weight(default_weight, "default_weight")
        yield from self._flow_until_done("configure", cap, dw)

    def _flow_set_weight(self, member: str, weight: float, max_units: Optional[int]) -> Flow[None]:
        check_name(member, "member")
        ws = check_weight(weight)
        mx = "" if max_units is UNCHANGED else ("-" if max_units is None else str(check_max_units(max_units)))
        yield from self._flow_until_done("set_member", member, ws, mx)

    def _flow_remove_member(self, member: str) -> Flow[bool]:
        check_name(member, "member")
        for _ in range(_MAX_ROUNDS):
            reply = yield from self._flow_call("remove_member", member)
            if reply[0] == "nomember":
                return False
            if reply[0] != "ok":
                self._fail(reply)
            if not int(reply[1]):
                return True
        raise PoolStateError(f"pool {self.name!r}: remove_member did not finish")  # pragma: no cover

    def _flow_delete(self) -> Flow[bool]:
        existed = bool((yield from self._flow_call("delete")))
        # Wake lists of waiters that were granted but never picked up: not known to the script.
        yield Unlink(self.keys.pattern)
        return existed

    # -- acquiring -------------------------------------------------------------------------------

    def _flow_try_acquire(self, member: str, units: int, ttl: float, auto_renew: bool,
                          on_lost: Optional[OnLost], max_hold: Optional[float] = None) -> Flow[Optional[L]]:
        check_name(member, "member")
        units = check_units(units)
        ms = ttl_ms(ttl)
        max_hold = _renewal_limit(max_hold, auto_renew)
        lease_id = new_id()
        reply, acked = yield from self._flow_ask(member, units, ms, lease_id, "try", 0, "")
        if reply[0] == "busy":
            return None
        if reply[0] != "ok":
            self._fail(reply)
        lease = self._granted(lease_id, member, units, ms, reply[1], reply[2], False, None)
        return (yield from self._flow_confirmed(lease, acked, auto_renew, on_lost, max_hold))

    def _flow_ask(self, member: str, units: int, ms: int, request_id: str, mode: str, alive_ms: int,
                  create: str) -> Flow[tuple[list[Any], int]]:
        """The acquire script for a fresh id. If interrupted meanwhile (the script may have
        run), whatever it queued is taken out of the queue and whatever it granted given back."""
        try:
            reply, acked = yield Script("acquire", (member, units, ms, request_id, mode, alive_ms, create, ""), True)
        except GeneratorExit:
            raise
        except BaseException as e:
            if mode == "wait":
                yield Detached(self._flow_give_up(request_id))
            elif not isinstance(e, Exception):  # cancelled or interrupted: the reply may be a grant
                yield Detached(self._flow_give_back(request_id))
            raise
        return reply, acked

    def _flow_acquire(self, member: str, units: int, ttl: float, timeout: Optional[float], auto_renew: bool,
                      on_lost: Optional[OnLost], create: str, cancel: Any = None,
                      max_hold: Optional[float] = None) -> Flow[L]:
        check_name(member, "member")
        units = check_units(units)
        ms = ttl_ms(ttl)
        max_hold = _renewal_limit(max_hold, auto_renew)
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout", allow_zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        mode = "try" if timeout == 0 else "wait"
        while True:  # more than once only if the waiter was purged while stalled
            waiter = new_id()
            reply, acked = yield from self._flow_ask(member, units, ms, waiter, mode, self._alive_ms(deadline), create)
            if reply[0] == "ok":
                lease = self._granted(waiter, member, units, ms, reply[1], reply[2], False, None)
                return (yield from self._flow_confirmed(lease, acked, auto_renew, on_lost, max_hold))
            if reply[0] == "busy":
                raise AcquireTimeout(self.name, member, units, 0.0)
            if reply[0] != "queued":
                self._fail(reply)
            try:
                message, acked = yield from self._flow_wait(waiter, int(reply[1]), deadline, cancel)
            except RedisUnavailable:
                raise
            except GeneratorExit:
                raise
            except BaseException:
                yield Detached(self._flow_give_up(waiter))
                raise
            if message is None:
                continue  # purged as dead (stalled longer than ALIVE_WINDOW): ask again
            if message == "timeout":
                raise AcquireTimeout(self.name, member, units, timeout or 0.0)
            if message == "cancelled":
                raise AcquireCancelled(f"pool {self.name!r}: request of member {member!r} cancelled")
            lease = self._delivered(message, waiter, member, units, ms, False, None)
            return (yield from self._flow_confirmed(lease, acked, auto_renew, on_lost, max_hold))

    def _flow_confirmed(self, lease: L, acked: int, auto_renew: bool, on_lost: Optional[OnLost],
                        max_hold: Optional[float] = None) -> Flow[L]:
        """A fresh grant if enough replicas acknowledged it (then renewing, if asked), else give
        it back and raise NotReplicated."""
        if self.min_replicas and acked < self.min_replicas:
            try:
                yield from self._flow_release(lease.id)
                lease.released = True
            except Exception:  # the lease expires by itself; the error below matters more
                log.warning("wshare: could not give back unconfirmed lease %s of pool %r", lease.id, self.name,
                            exc_info=True)
            raise NotReplicated(self.name, "grant", self.min_replicas, acked, self.replica_timeout)
        if auto_renew:
            lease.start_auto_renew(on_lost, max_hold)
        return lease

    def _flow_wait(self, waiter: str, next_expiry_ms: int, deadline: Optional[float],
                   cancel: Any = None) -> Flow[tuple[Optional[str], int]]:
        """Wait for the waiter's wake message, checking in every HEARTBEAT seconds and when the
        earliest lease runs out (so a crashed holder's units move on with no other client
        acting). Returns the message pushed to the waiter, "timeout" or "cancelled" once it has
        left the queue, or None if it was purged as dead and must ask again; with the replicas
        that acknowledged it (min_replicas).

        If Redis becomes unreachable, it retries with backoff and carries on once Redis is back
        (with AOF the queue entry survives a restart); RedisUnavailable if the deadline passes
        first."""
        backoff = OUTAGE_BACKOFF
        down_since: Optional[float] = None
        now = time.monotonic()
        check_in = now + self._max_block  # when to check in first
        if next_expiry_ms >= 0:
            check_in = min(check_in, now + next_expiry_ms / 1000 + 0.002)
        while True:
            try:
                result = yield from self._flow_wait_round(waiter, deadline, cancel, check_in)
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
                yield Sleep(backoff if deadline is None else min(backoff, max(deadline - now, 0.0)), cancel)
                backoff = min(backoff * 2, OUTAGE_BACKOFF_MAX)
                check_in = time.monotonic()  # check in at once when Redis is back
                continue
            if down_since is not None:
                log.warning("wshare: Redis reachable again after %.1fs; pool %r", time.monotonic() - down_since,
                            self.name)
            return result

    def _flow_wait_round(self, waiter: str, deadline: Optional[float], cancel: Any,
                         check_in: float) -> Flow[tuple[Optional[str], int]]:
        """The body of _flow_wait, until a message, a stop, or a Redis error."""
        while True:
            now = time.monotonic()
            stop = "cancelled" if cancel is not None and cancel.is_set() else None
            if stop is None and deadline is not None and now >= deadline:
                stop = "timeout"
            if stop is not None:
                reply, acked = yield Script("cancel", (waiter, "timeout" if stop == "timeout" else "interrupt"), True)
                reply = yield from self._flow_more(reply)
                if reply[0] == "gone":
                    message, popped_acked = yield Settle(waiter)
                    if message is not None:
                        reply, acked = ["wake", message], popped_acked
                if reply[0] == "wake":
                    message = str(reply[1])
                    if stop == "cancelled" and message.startswith("ok:"):
                        yield from self._flow_release(waiter)  # granted in the same instant: give it back
                        return stop, acked
                    return message, acked  # a grant racing the timeout is kept
                if reply[0] == "nopool":
                    raise PoolNotFound(self.name)
                return stop, acked
            if now >= check_in:
                reply, acked = yield Script("wait", (waiter, self._alive_ms(deadline)), True)
                reply = yield from self._flow_more(reply)
                if reply[0] == "gone":
                    message, popped_acked = yield Settle(waiter)
                    if message is not None:
                        return message, popped_acked
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
            if cancel is not None and self._cancel_poll is not None:
                block = min(block, self._cancel_poll)
            message, acked = yield Pop(waiter, max(block, 0.001), cancel)
            if message is not None:
                return message, acked

    def _flow_give_up(self, waiter: str) -> Flow[None]:
        """Leave the queue after an interrupt. A grant that raced with it is released, also
        one whose message was taken off the wake list but never reached us (the waiter id is
        the lease id, so releasing it is safe when there is no such lease)."""
        try:
            reply = yield from self._flow_more((yield from self._flow_call("cancel", waiter, "interrupt")))
            if reply[0] != "cancelled":
                yield from self._flow_release(waiter)
        except Exception:  # the original exception matters more; the entry expires anyway
            log.warning("wshare: could not leave the queue of pool %r cleanly", self.name, exc_info=True)

    def _flow_give_back(self, lease_id: str) -> Flow[None]:
        """Release a lease that may have been granted to an interrupted caller."""
        try:
            yield from self._flow_release(lease_id)
        except Exception:  # the lease expires by itself
            log.warning("wshare: could not give back lease %s of pool %r", lease_id, self.name, exc_info=True)

    # -- parked requests (for adapters such as the RQ one) ---------------------------------------

    def _flow_request_with_id(self, mode: str, member: str, request_id: str, units: int,
                              ttl: float) -> Flow[Optional[L]]:
        check_name(member, "member")
        check_name(request_id, "request id")
        units = check_units(units)
        ms = ttl_ms(ttl)
        reply = yield from self._flow_call("acquire", member, units, ms, request_id, mode, 0, "", "1")
        if reply[0] == "ok":
            if len(reply) > 3:  # the id was a live lease already: return it as it is
                member, units, ms = str(reply[4]), int(reply[3]), int(reply[5])
            return self._granted(request_id, member, units, ms, reply[1], reply[2], False, None)
        if reply[0] not in ("queued", "busy"):
            self._fail(reply)
        return None

    def _flow_handoffs(self, limit: int) -> Flow[list[str]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 100_000:
            raise InvalidRequest(f"limit must be an int between 0 and 100000, not {limit!r}")
        if limit == 0:
            return []
        items = yield Command("lrange", (self.keys.key("handoff"), 0, int(limit) - 1))
        return [str(x) for x in _text(items)]

    def _flow_ack_handoff(self, request_id: str) -> Flow[None]:
        check_name(request_id, "request id")
        yield Command("lrem", (self.keys.key("handoff"), 0, request_id))

    def _flow_cancel(self, request_id: str) -> Flow[bool]:
        check_name(request_id, "request id")
        reply = yield from self._flow_more((yield from self._flow_call("cancel", request_id, "cancel")))
        return bool(reply[0] == "cancelled")

    def _flow_lease(self, lease_id: str) -> Flow[Optional[L]]:
        check_name(lease_id, "lease id")
        reply = yield from self._flow_call("lease", lease_id)
        if reply[0] != "ok":
            return None
        return self._stored_lease(lease_id, reply[1], reply[2])

    # -- lease operations (used by the leases) ---------------------------------------------------

    def _flow_renew(self, lease_id: str, ms: int) -> Flow[Optional[int]]:
        reply, acked = yield Script("renew", (lease_id, ms), True)
        reply = yield from self._flow_more(reply)
        if reply[0] != "ok":
            return None
        if self.min_replicas and acked < self.min_replicas:
            raise NotReplicated(self.name, "renewal", self.min_replicas, acked, self.replica_timeout)
        return int(reply[1])

    def _flow_release(self, lease_id: str, why: str = "release") -> Flow[bool]:
        """End a lease; ``why``: "release", or "revoke" when an operator ends it (counted apart)."""
        ended, more = yield from self._flow_call("release", lease_id, why)
        if int(more):
            yield from self._flow_drain()
        return bool(int(ended))

    def _flow_revoke(self, lease_id: str) -> Flow[bool]:
        check_name(lease_id, "lease id")
        return (yield from self._flow_release(lease_id, "revoke"))

    # -- inspection ------------------------------------------------------------------------------

    def _flow_status(self) -> Flow[PoolStatus]:
        reply = yield from self._flow_call("status")
        if reply[0] != "ok":
            self._fail(reply)
        return build_status(self.name, _pairs(reply[2]), _pairs(reply[3]), _pairs(reply[4]),
                            _pairs(reply[5]) if len(reply) > 5 else None)

    def _flow_leases(self) -> Flow[list[L]]:
        reply = yield from self._flow_call("leases")
        if reply[0] != "ok":
            self._fail(reply)
        records = _pairs(reply[2])
        return [self._stored_lease(lease_id, records[lease_id], expires)
                for lease_id, expires in _pairs(reply[3]).items() if lease_id in records]
