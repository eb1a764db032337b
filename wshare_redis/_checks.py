"""Argument checks shared by the public API: bad input fails here, before any I/O."""
from __future__ import annotations

import math
from numbers import Real

from .errors import InvalidRequest

MAX_UNITS = 2**40
MAX_TTL = 10 * 365 * 24 * 3600.0
MIN_WEIGHT, MAX_WEIGHT = 1e-9, 1e9


def _show(value: object) -> str:
    """``repr(value)`` for an error message, clipped; never fails (Python refuses to print
    ints of more than 4300 digits)."""
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _float(value: Real, what: str) -> float:
    """``float(value)``; a number too large for a float (10**400) is an InvalidRequest."""
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):
        raise InvalidRequest(f"{what} is out of range: {_show(value)}") from None


def _int(value: object, what: str, lo: int, allow_none: bool = False) -> int:
    """A plain int in [lo, MAX_UNITS] (an int subclass such as an IntEnum is converted: redis-py
    would refuse it)."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if allow_none else "an int"
        raise InvalidRequest(f"{what} must be {kind}, not {_show(value)}")
    if not lo <= value <= MAX_UNITS:
        raise InvalidRequest(f"{what} must be between {lo} and {MAX_UNITS}, not {_show(value)}")
    return int(value)


def check_units(units: object, what: str = "units") -> int:
    return _int(units, what, 1)


def check_capacity(capacity: object) -> int:
    return _int(capacity, "capacity", 0)


def check_max_units(max_units: object) -> int | None:
    if max_units is None:
        return None
    return _int(max_units, "max_units", 0, allow_none=True)


def check_weight(weight: object, what: str = "weight") -> str:
    """Return the weight as the decimal string stored in Redis ("3", "0.5")."""
    if isinstance(weight, bool) or not isinstance(weight, Real):
        raise InvalidRequest(f"{what} must be a number, not {_show(weight)}")
    w = _float(weight, what)
    if not math.isfinite(w) or w <= 0:
        raise InvalidRequest(f"{what} must be a finite number > 0, not {_show(weight)}")
    if not MIN_WEIGHT <= w <= MAX_WEIGHT:
        raise InvalidRequest(f"{what} must be between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}, not {_show(weight)}")
    return str(int(w)) if w.is_integer() else repr(w)


def check_seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidRequest(f"{what} must be a number of seconds, not {_show(value)}")
    s = _float(value, what)
    if not math.isfinite(s) or s < 0 or (s == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidRequest(f"{what} must be a finite number of seconds {bound}, not {_show(value)}")
    if s > MAX_TTL:
        raise InvalidRequest(f"{what} must be at most {MAX_TTL:g} seconds, not {_show(value)}")
    return s


def ttl_ms(ttl: object) -> int:
    """A lease TTL in whole milliseconds (at least 1)."""
    return max(1, round(check_seconds(ttl, "ttl") * 1000))
