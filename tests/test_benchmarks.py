"""The benchmark must not rot: its quick mode runs every section end to end. Nothing here
asserts a speed (machines are shared and noisy), only that each section produced results."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_quick_benchmark_runs_every_section(tmp_path):
    out = tmp_path / "bench.md"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    text = out.read_text()
    for section in ("### cycle", "### contended", "### scaling", "### breakdown"):
        assert section in text
    assert "floor: 2 x EVALSHA return 1" in text and "redis-server" in text
    # the rows that take the wshare figures apart, and the bound of each contended section
    for row in ("wshare scripts, bare FCALL", "bound: the scripts' Redis commands",
                "bound: BLPOP/RPUSH token list", "x bound"):
        assert row in text, row
    assert text.count("bound: BLPOP/RPUSH token list") == 2
    # the breakdown: server time by command and by piece of lib.lua, client time in and out of fcall
    for row in ("Lua and bridging", "load_pool (HMGET + checks)", "try_acquire + release", "bare FCALLs"):
        assert row in text, row


def test_the_commands_bound_issues_what_the_scripts_issue(redis_server):
    """The "bound: the scripts' Redis commands" row is only a bound while its two scripts
    issue the same Redis commands as a real try_acquire + release cycle: compare the
    commands each makes (INFO commandstats) on the real server."""
    import redis

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import breakdown
        import cycle
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    r = redis.Redis.from_url(redis_server.url)
    r.flushdb()
    fns = cycle.cases(r)
    wshare, bound = fns["wshare try_acquire+release"], fns["bound: the scripts' Redis commands"]

    def commands(fn) -> dict[str, int]:
        out = {name: round(calls * 10) for name, calls, _ in breakdown.commands_per_cycle(r, fn, 10)
               if name not in ("fcall", "evalsha")}
        # A release either rewrites the member's record or, when it went idle owing nothing
        # (a hold shorter than the clock's millisecond), forgets it: one HSET or one HDEL.
        out["hset+hdel"] = out.pop("hset", 0) + out.pop("hdel", 0)
        return out

    issued = commands(wshare)
    assert sum(issued.values()) == 10 * 21, issued  # 10 acquire + 11 release commands per cycle
    assert commands(bound) == issued
    cycle.cleanup(r)
    r.close()
