"""What ``Pool.status()`` returns, and the weighted max-min fair share it reports."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from .errors import PoolStateError

_MEMBER = re.compile(
    r"^w=(\S+) max=(\S+) held=(\d+) wait=(\d+) vs=(\S+) vt=(\d+) head=(\d+):(\d+) kind=(set|auto|removed)$")


@dataclass(frozen=True)
class MemberStatus:
    """One member of a pool as of the status call.

    ``waiting`` is the units asked by the member's queued requests; ``fair_share`` its
    weighted max-min share of the capacity given every member's demand (held + waiting,
    capped by max_units). ``virtual_service`` is S, the ranking key (unit-seconds/weight,
    lower is served first). ``removed``: removed while leases were live; they run on.
    ``parked``: how many of its queued requests are parked jobs (no client blocks on them).
    ``counters``: its events since the pool was created (see COUNTERS).
    """

    weight: float
    max_units: int | None
    held: int
    waiting: int
    fair_share: float
    virtual_service: float = 0.0
    removed: bool = False
    parked: int = 0
    counters: dict[str, int] = field(default_factory=dict)


#: The events the scripts count per member, in the pool's stats hash ("<counter>:<member>").
COUNTERS = ("grants", "releases", "revocations", "expirations", "queued", "timeouts", "cancels",
            "failed", "purged")


@dataclass(frozen=True)
class PoolStatus:
    """A pool as of the status call: units held and free, units asked by queued requests.

    ``counters``: events per counter summed over every member ever counted, and
    ``member_counters`` those of each member (members forgotten since included)."""

    name: str
    capacity: int
    held: int
    free: int
    waiting: int
    members: dict[str, MemberStatus] = field(default_factory=dict)
    default_weight: float = 1.0
    last_token: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    member_counters: dict[str, dict[str, int]] = field(default_factory=dict)


def fair_shares(capacity: float, weights: Mapping[str, float],
                demands: Mapping[str, float]) -> dict[str, float]:
    """Weighted max-min (water-filling) shares of ``capacity``.

    Members with no demand get 0; a member never gets more than it demands, and what a
    member cannot use is split among the others by weight.
    """
    share = {m: 0.0 for m in weights}
    active = {m for m in weights if demands.get(m, 0) > 0}
    left = float(capacity)
    while active and left > 1e-12:
        wsum = sum(weights[m] for m in active)
        satisfied = {m for m in active if demands[m] - share[m] <= left * weights[m] / wsum}
        if not satisfied:
            for m in active:
                share[m] += left * weights[m] / wsum
            break
        for m in satisfied:
            left -= demands[m] - share[m]
            share[m] = float(demands[m])
        active -= satisfied
    return share


def parse_member(name: str, record: str) -> tuple[float, int | None, int, int, float, bool]:
    """(weight, max_units, held, waiting, S, removed) from a member's stored record."""
    m = _MEMBER.match(record)
    if not m:
        raise PoolStateError(f"member {name!r} has a malformed record {record!r}")
    w, mx, held, wait, vs, _vt, _hseq, _hu, kind = m.groups()
    try:
        return (float(w), None if mx == "-" else int(mx), int(held), int(wait), float(vs), kind == "removed")
    except ValueError:
        raise PoolStateError(f"member {name!r} has a malformed record {record!r}") from None


def parse_counters(stats: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """{member: {counter: count}} from the pool's stats hash; every counter present (0 if none)."""
    out: dict[str, dict[str, int]] = {}
    for key, value in stats.items():
        counter, sep, member = key.partition(":")
        if not sep or counter not in COUNTERS:
            continue  # not ours: ignore rather than fail a status call
        try:
            n = int(value)
        except ValueError:
            continue
        out.setdefault(member, dict.fromkeys(COUNTERS, 0))[counter] = n
    return out


def build_status(name: str, pool: Mapping[str, str], members: Mapping[str, str],
                 parked: Mapping[str, str] | None = None, stats: Mapping[str, str] | None = None) -> PoolStatus:
    try:
        capacity, held, waiting = int(pool["capacity"]), int(pool.get("held", 0)), int(pool.get("waiting", 0))
        default_weight, token = float(pool["default_weight"]), int(pool.get("token", 0))
    except (KeyError, ValueError) as e:
        raise PoolStateError(f"pool {name!r} has a malformed state hash: {e}") from None
    parsed = {m: parse_member(m, rec) for m, rec in members.items()}
    weights = {m: p[0] for m, p in parsed.items()}
    demands = {m: min(p[2] + p[3], p[1]) if p[1] is not None else p[2] + p[3] for m, p in parsed.items()}
    shares = fair_shares(capacity, weights, demands)
    parked_by = Counter((parked or {}).values())
    by_member = parse_counters(stats or {})
    out = {m: MemberStatus(weight=p[0], max_units=p[1], held=p[2], waiting=p[3], fair_share=shares[m],
                           virtual_service=p[4], removed=p[5], parked=parked_by.get(m, 0),
                           counters=by_member.get(m, dict.fromkeys(COUNTERS, 0)))
           for m, p in sorted(parsed.items())}
    totals = {c: sum(x[c] for x in by_member.values()) for c in COUNTERS}
    return PoolStatus(name=name, capacity=capacity, held=held, free=max(capacity - held, 0),
                      waiting=waiting, members=out, default_weight=default_weight, last_token=token,
                      counters=totals, member_counters=dict(sorted(by_member.items())))
