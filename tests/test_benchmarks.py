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
    for section in ("### cycle", "### contended", "### scaling"):
        assert section in text
    assert "floor: 2 x EVALSHA return 1" in text and "redis-server" in text
    # the rows that take the wshare figures apart, and the bound of each contended section
    for row in ("wshare scripts, bare FCALL", "bound: the scripts' Redis commands",
                "bound: BLPOP/RPUSH token list", "x bound"):
        assert row in text, row
    assert text.count("bound: BLPOP/RPUSH token list") == 2
