"""The Redis key schema of a pool, and the rules for names. Nothing else formats key names.

All keys of a pool share the hash tag ``{pool}``, so every script touches one Cluster slot.
The scripts get one key, ``<prefix>:{<pool>}:``, and derive these names from it:

    <prefix>:{<pool>}:pool      hash  capacity, default_weight, held, waiting, token, seq, vclock, avg_hold,
                                      next_exp, next_dead (lower bounds that spare reclaim its reads)
    <prefix>:{<pool>}:members   hash  member -> "w=.. max=.. held=.. wait=.. vs=.. vt=.. head=.. rm=.."
    <prefix>:{<pool>}:leases    hash  lease id -> "<units>:<token>:<ttl ms>:<granted ms>:<member>"
    <prefix>:{<pool>}:expiry    zset  lease id -> expiry, ms on the Redis server clock
    <prefix>:{<pool>}:ready     zset  "<head seq>\\0<member>" -> virtual service S (members that can be served)
    <prefix>:{<pool>}:active    zset  member -> S (members holding or waiting)
    <prefix>:{<pool>}:queue     zset  "<member>\\0<seq>\\0<units>\\0<ttl ms>\\0<id>", score 0 (FIFO per member)
    <prefix>:{<pool>}:waiters   hash  waiter id -> its queue entry
    <prefix>:{<pool>}:alive     zset  waiter id -> ms after which a silent waiter is purged
    <prefix>:{<pool>}:sizes     zset  waiter id -> units asked
    <prefix>:{<pool>}:parked    hash  parked waiter id -> member (requests no client blocks on)
    <prefix>:{<pool>}:handoff   list  ids of parked requests granted or failed, for their adapter
    <prefix>:{<pool>}:stats     hash  "<counter>:<member>" -> events counted since the pool was created
    <prefix>:{<pool>}:wake:<id> list  grant or failure pushed to the waiter blocked on it
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidRequest

DEFAULT_PREFIX = "wshare"
MAX_NAME_BYTES = 200

#: Every key of a pool but the wake lists (lua/lib.lua derives the same names).
KEY_SUFFIXES = ("pool", "members", "leases", "expiry", "ready", "active", "queue",
                "waiters", "alive", "sizes", "parked", "handoff", "stats")


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a usable pool or member name, else raise InvalidRequest.

    Names are non-empty strings of at most 200 UTF-8 bytes without control, line-breaking or
    bidi characters (the NUL byte separates fields in the queue's entries; line breaks and
    bidi overrides would garble or disguise tables and logs).
    """
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidRequest(f"{what} must not be empty")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"{what} is longer than {MAX_NAME_BYTES} bytes: {value[:40]!r}...")
    bad = next((c for c in value if _unusable(c)), None)
    if bad is not None:
        raise InvalidRequest(f"{what} {value!r} contains the control, line-breaking, bidi or surrogate "
                             f"character {bad!r}")
    return value


def _unusable(c: str) -> bool:
    """C0 and C1 controls, DEL, line and paragraph separators, bidi controls, surrogates:
    characters that would break a queue entry, a log line or a table, or reorder its text."""
    o = ord(c)
    return (o < 32 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029, 0x200E, 0x200F, 0x061C)
            or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069 or 0xD800 <= o <= 0xDFFF)


def check_pool_name(value: object, what: str = "pool name") -> str:
    name = check_name(value, what)
    if "{" in name or "}" in name:
        raise InvalidRequest(f"{what} {name!r} must not contain '{{' or '}}' (they delimit the hash tag)")
    return name


@dataclass(frozen=True)
class PoolKeys:
    """The key names of one pool under one prefix."""

    prefix: str
    pool: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.pool}}}"

    def key(self, suffix: str) -> str:
        return f"{self.base}:{suffix}"

    @property
    def wake_prefix(self) -> str:
        return f"{self.base}:wake:"

    def wake(self, waiter_id: str) -> str:
        return self.wake_prefix + waiter_id

    @property
    def script_keys(self) -> list[str]:
        """The KEYS every script receives: the pool's key prefix, from which lua/lib.lua
        derives every key name (one short key to send and parse per call, not fourteen)."""
        return [self.base + ":"]

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the pool."""
        return _glob_escape(self.base) + ":*"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def pools_pattern(prefix: str) -> str:
    """A SCAN pattern matching the state hash of every pool under ``prefix``."""
    return _glob_escape(prefix) + ":{*}:pool"


def pool_of_key(key: str, prefix: str) -> str | None:
    """The pool whose state hash ``key`` is (a key ``pools_pattern`` matched), or None if the
    key is not one (a name with braces cannot be a pool's)."""
    head, tail = f"{prefix}:{{", "}:pool"
    if not (key.startswith(head) and key.endswith(tail)) or len(key) <= len(head) + len(tail):
        return None
    inner = key[len(head): -len(tail)]
    return None if "{" in inner or "}" in inner else inner


def pool_keys(prefix: str, pool: str) -> PoolKeys:
    check_pool_name(prefix, "prefix")
    check_pool_name(pool)
    return PoolKeys(prefix, pool)
