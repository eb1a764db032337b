"""Argument checks shared by the public API: bad input fails here, before any I/O."""
from __future__ import annotations

import math
from numbers import Real

from .errors import InvalidRequest

MAX_UNITS = 2**40
MAX_TTL = 10 * 365 * 24 * 3600.0
MIN_WEIGHT, MAX_WEIGHT = 1e-9, 1e9


def check_units(units: object, what: str = "units") -> int:
    if isinstance(units, bool) or not isinstance(units, int):
        raise InvalidRequest(f"{what} must be an int, not {units!r}")
    if units < 1:
        raise InvalidRequest(f"{what} must be at least 1, not {units}")
    if units > MAX_UNITS:
        raise InvalidRequest(f"{what} must be at most {MAX_UNITS}, not {units}")
    return units


def check_capacity(capacity: object) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise InvalidRequest(f"capacity must be an int, not {capacity!r}")
    if not 0 <= capacity <= MAX_UNITS:
        raise InvalidRequest(f"capacity must be between 0 and {MAX_UNITS}, not {capacity}")
    return capacity


def check_max_units(max_units: object) -> int | None:
    if max_units is None:
        return None
    if isinstance(max_units, bool) or not isinstance(max_units, int):
        raise InvalidRequest(f"max_units must be an int or None, not {max_units!r}")
    if not 0 <= max_units <= MAX_UNITS:
        raise InvalidRequest(f"max_units must be between 0 and {MAX_UNITS}, not {max_units}")
    return max_units


def check_weight(weight: object, what: str = "weight") -> str:
    """Return the weight as the decimal string stored in Redis ("3", "0.5")."""
    if isinstance(weight, bool) or not isinstance(weight, Real):
        raise InvalidRequest(f"{what} must be a number, not {weight!r}")
    w = float(weight)
    if not math.isfinite(w) or w <= 0:
        raise InvalidRequest(f"{what} must be a finite number > 0, not {weight!r}")
    if not MIN_WEIGHT <= w <= MAX_WEIGHT:
        raise InvalidRequest(f"{what} must be between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}, not {weight!r}")
    return str(int(w)) if w.is_integer() else repr(w)


def check_seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidRequest(f"{what} must be a number of seconds, not {value!r}")
    s = float(value)
    if not math.isfinite(s) or s < 0 or (s == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidRequest(f"{what} must be a finite number of seconds {bound}, not {value!r}")
    if s > MAX_TTL:
        raise InvalidRequest(f"{what} must be at most {MAX_TTL:g} seconds, not {value!r}")
    return s


def ttl_ms(ttl: object) -> int:
    """A lease TTL in whole milliseconds (at least 1)."""
    return max(1, round(check_seconds(ttl, "ttl") * 1000))
