"""Text views of a pool for the command line: the status table and the live bars."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .status import PoolStatus


def status_dict(st: PoolStatus) -> dict[str, Any]:
    """PoolStatus as plain JSON-ready data."""
    return asdict(st)


def status_table(st: PoolStatus) -> str:
    """The status of a pool as an aligned table that fits 80 columns."""
    lines = [f"pool {st.name}: capacity {st.capacity}, held {st.held}, free {st.free}, "
             f"waiting {st.waiting} (units)",
             f"{'member':<20} {'weight':>8} {'max':>6} {'fair share':>10} {'held':>6} {'waiting':>8} {'parked':>7}"]
    for name, m in st.members.items():
        cap = "-" if m.max_units is None else str(m.max_units)
        mark = " (removed)" if m.removed else ""
        lines.append(f"{_clip(name, 20):<20} {m.weight:>8g} {cap:>6} {m.fair_share:>10.2f} "
                     f"{m.held:>6} {m.waiting:>8} {m.parked:>7}{mark}")
    lines.append(f"{'total':<20} {sum(m.weight for m in st.members.values()):>8g} {'':>6} "
                 f"{sum(m.fair_share for m in st.members.values()):>10.2f} {st.held:>6} {st.waiting:>8} "
                 f"{sum(m.parked for m in st.members.values()):>7}")
    return "\n".join(lines)


def bars(st: PoolStatus, width: int = 80) -> str:
    """One line per member: held units as '#', up to its fair share marked with '|'."""
    scale = max(st.capacity, st.held, 1)
    room = max(width - 40, 10)
    lines = [f"{st.name}: {st.held}/{st.capacity} held, {st.waiting} waiting"]
    for name, m in st.members.items():
        filled = round(m.held / scale * room)
        share = min(round(m.fair_share / scale * room), room)
        bar = ["#" if i < filled else " " for i in range(room)]
        if 0 < share <= room:
            bar[share - 1] = "|" if share > filled else "#"
        lines.append(f"{_clip(name, 14):<14} {''.join(bar)} {m.held:>3}/{m.fair_share:<5.1f} w{m.weight:g}")
    return "\n".join(lines)


def one_line(st: PoolStatus) -> str:
    """A compact single line for logs and non-terminal output."""
    parts = [f"{name}={m.held}/{m.fair_share:.1f}" for name, m in st.members.items()]
    return f"{st.name} held {st.held}/{st.capacity} waiting {st.waiting}: " + " ".join(parts)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "~"
