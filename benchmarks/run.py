"""The wshare-redis benchmark: every section in one run on one private redis-server, peers
beside us, ratios computed within the run. Prints tables and writes docs/benchmarks.md.

    python benchmarks/run.py            # full run (a few minutes), writes docs/benchmarks.md
    python benchmarks/run.py --quick    # short run (CI), writes nothing unless --out is given
    python benchmarks/run.py --url redis://127.0.0.1:6391/0   # a server of yours (it is FLUSHed)
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SECTIONS = ["cycle", "contended", "scaling", "breakdown"]  # one module each in benchmarks/


def machine(url: str) -> list[str]:
    import redis
    info = redis.Redis.from_url(url).info("server")
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    return [f"- machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}; {platform.platform()}",
            f"- redis-server {info.get('redis_version')} on loopback; Python {platform.python_version()}",
            "- redis-py " + version("redis") + ", hiredis " + version("hiredis") + ", python-redis-lock "
            + version("python-redis-lock") + ", dramatiq " + version("dramatiq") + ", wshare-redis "
            + version("wshare-redis"),
            f"- run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]


def standalone(doc: str, run: Callable[[str, bool], Any], format_rows: Callable[[Any], str]) -> None:
    """The command line of a section run on its own: ``--url`` (default: a private
    redis-server) and ``--quick``; prints its table."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.url:
        print(format_rows(run(a.url, a.quick)))
    else:
        from wshare_redis.embedded import RedisServer
        with RedisServer() as server:
            print(format_rows(run(server.url, a.quick)))


def run_all(url: str, quick: bool) -> tuple[list[str], list[str]]:
    tables, failures = [], []
    for name in SECTIONS:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            failures.append(f"{name}: cannot import ({e})")
            continue
        t0 = time.monotonic()
        rows = module.run(url, quick)
        if not rows:
            failures.append(f"{name}: no results")
        tables.append(f"### {name} ({time.monotonic() - t0:.0f} s)\n\n```\n{module.format_rows(rows)}\n```")
        print(tables[-1], flush=True)
    return tables, failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a Redis to use (FLUSHed); default: a private redis-server")
    ap.add_argument("--quick", action="store_true", help="short windows (CI)")
    ap.add_argument("--out", help="markdown file to write (default: docs/benchmarks.md for a full run)")
    a = ap.parse_args()
    out = a.out or (None if a.quick else str(HERE.parent / "docs" / "benchmarks.md"))
    if a.url:
        tables, failures, desc = *run_all(a.url, a.quick), machine(a.url)
    else:
        from wshare_redis.embedded import RedisServer
        with RedisServer() as server:
            tables, failures = run_all(server.url, a.quick)
            desc = machine(server.url)
    if out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("# Benchmarks\n\nWritten by `python benchmarks/run.py`" + (" --quick" if a.quick else "")
                             + f" at commit {commit or '?'}. Ratios are computed within this one run.\n\n"
                             + "\n".join(desc) + "\n\n" + "\n\n".join(tables) + "\n")
        print(f"wrote {out}")
    for f in failures:
        print("FAILED", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
