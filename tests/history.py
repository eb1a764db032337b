"""Checks over what worker processes recorded: concurrent holdings and time-averaged shares."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def run_workers(url: str, pool: str, specs: list[dict], tmp: Path, *, lead: float = 1.5) -> list[dict]:
    """Start one process per spec (keys: member, threads, hold_ms, start, stop offsets in s,
    and optional units_max, timeout, ttl), wait for all, and return every record."""
    t0 = time.time() + lead
    procs = []
    for i, s in enumerate(specs):
        out = tmp / f"w{i}.jsonl"
        cmd = [sys.executable, str(HERE / "mp_worker.py"), "--url", url, "--pool", pool,
               "--member", s["member"], "--threads", str(s.get("threads", 4)),
               "--hold-ms", str(s.get("hold_ms", 40)), "--start", str(t0 + s.get("start", 0)),
               "--stop", str(t0 + s["stop"]), "--out", str(out), "--seed", str(i),
               "--units-max", str(s.get("units_max", 1)), "--ttl", str(s.get("ttl", 30))]
        if s.get("fixed"):
            cmd.append("--fixed")
        if s.get("timeout") is not None:
            cmd += ["--timeout", str(s["timeout"])]
        procs.append((subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(HERE.parent)}), out))
    records = []
    for p, out in procs:
        assert p.wait(timeout=120) == 0, "a worker process failed"
        records += [json.loads(line) for line in out.read_text().splitlines()]
    for r in records:
        if "t0" in r:
            r["t0"] -= t0
            r["t1"] -= t0
    return records


def max_concurrent(records: list[dict], key=lambda r: "all") -> dict:
    """The most units held at any instant, per group, from recorded hold intervals."""
    events = defaultdict(list)
    for r in records:
        if "t0" in r:
            events[key(r)] += [(r["t0"], 1, r["units"]), (r["t1"], 0, -r["units"])]
    peak = {}
    for group, evs in events.items():
        cur = best = 0
        for _, _, d in sorted(evs):  # at equal times releases (0) sort before grants (1)
            cur += d
            best = max(best, cur)
        peak[group] = best
    return peak


def shares(records: list[dict], start: float, stop: float) -> dict:
    """Time-averaged units held per member over [start, stop]."""
    area = defaultdict(float)
    for r in records:
        if "t0" in r:
            overlap = min(r["t1"], stop) - max(r["t0"], start)
            if overlap > 0:
                area[r["member"]] += overlap * r["units"]
    return {m: a / (stop - start) for m, a in area.items()}
