"""Where an uncontended try_acquire + release cycle spends its time, server and client side.

Three tables, measured on a private redis-server (or ``--url``):

1. The server, by Redis command: INFO commandstats over many cycles, as commands and
   microseconds per cycle, against the FCALL total. The gap between the two is the scripts'
   own Lua work plus the cost of calling Redis from Lua (building arguments, converting
   replies).
2. The server, by piece of lib.lua: a Functions library made of lib.lua plus functions that
   each run one piece (loading the pool's state, a member's record, saving, ...) N times in
   one FCALL, so the fixed cost of a call drops out.
3. The client: time inside redis-py's ``fcall`` and outside it (this library's Python) per
   cycle, for try_acquire + release and for the same two FCALLs made bare.

    python benchmarks/breakdown.py [--url URL] [--quick]
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cycle  # noqa: E402  (the cycles measured, from benchmarks/)
from wshare_redis import Pool  # noqa: E402
from wshare_redis.scripts import lua_dir  # noqa: E402

#: Pieces of lib.lua, each run N times inside one FCALL (after bind and load_pool once).
PIECES = {
    "bind (key names, cached)": "bind(KEYS)",
    "now_ms (TIME)": "now_ms()",
    "load_pool (HMGET + checks)": "bind(KEYS) load_pool()",
    "rec_load (HGET + parse)": "RECS = {} rec_load('m')",
    "place (ZRANGE active)": "RECS = {} local r = rec_load('m') place(r, nil)",
    "rec_save (ZADD active + HSET)": "RECS = {} local r = rec_load('m') r.vs = r.vs + 0.001 rec_save(r)",
    "count (HINCRBY)": "count('grants', 'm')",
    "save_pool (HSET 2 fields)": "P.held = P.held + 1 P.token = P.token + 1 save_pool()",
}


def commands_per_cycle(r: redis.Redis, cycle: Callable[[], Any], n: int) -> list[tuple[str, float, float]]:
    """(command, calls per cycle, us per cycle) from INFO commandstats over n cycles."""
    cycle()
    r.config_resetstat()
    for _ in range(n):
        cycle()
    rows = []
    for key, v in r.info("commandstats").items():
        name = key[len("cmdstat_"):]
        if name.startswith("config") or name == "info":
            continue
        rows.append((name, v["calls"] / n, v["usec"] / n))
    return sorted(rows, key=lambda row: (row[0] != "fcall", -row[2]))


def pieces(r: redis.Redis, n: int) -> list[tuple[str, float]]:
    """(piece, us per run) for each of PIECES, run n times in one FCALL, on a pool of their
    own (some pieces write nonsense state: it is deleted afterwards)."""
    pool = Pool(r, "bench-profile-pieces")
    pool.configure(capacity=4)
    assert pool.try_acquire("other", ttl=600) is not None and pool.try_acquire("m", ttl=600) is not None
    code = ["#!lua name=wshare_profile_pieces", (lua_dir() / "lib.lua").read_text("utf-8")]
    names = {}
    for i, body in enumerate(PIECES.values()):
        names[i] = f"wshare_profile_{i}"
        code.append(f"redis.register_function('{names[i]}', function(KEYS, ARGV)\n"
                    f"bind(KEYS) load_pool()\nfor _ = 1, tonumber(ARGV[1]) do {body} end\nreturn 1 end)")
    r.function_load("\n".join(code), replace=True)
    keys = pool.keys.script_keys
    out = []
    try:
        for i, label in enumerate(PIECES):
            r.config_resetstat()
            r.fcall(names[i], len(keys), *keys, n)
            out.append((label, r.info("commandstats")["cmdstat_fcall"]["usec"] / n))
    finally:
        r.function_delete("wshare_profile_pieces")
        pool.delete()
    return out


def client_split(r: redis.Redis, cases: dict[str, Callable[[], Any]], n: int,
                 rounds: int) -> dict[str, tuple[float, float]]:
    """{case: (us per cycle inside redis-py's fcall, us per cycle outside it)}, medians over
    rounds; every case's script calls go through ``r.fcall``."""
    inside: list[int] = []
    plain_fcall = r.fcall

    def timed_fcall(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter_ns()
        try:
            return plain_fcall(*args, **kwargs)
        finally:
            inside.append(time.perf_counter_ns() - t)

    r.fcall = timed_fcall  # type: ignore[method-assign]
    try:
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
        for _ in range(rounds):
            for label, fn in cases.items():
                fn()
                inside.clear()
                t = time.perf_counter_ns()
                for _ in range(n):
                    fn()
                total = (time.perf_counter_ns() - t) / n / 1000
                ins = sum(inside) / n / 1000
                results[label].append((ins, total - ins))
    finally:
        del r.fcall  # back to the class's method
    return {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for k, v in results.items()}


def run(url: str, quick: bool) -> list[str]:
    """The three tables, as lines (run.py's section interface). The cycles are cycle.py's:
    try_acquire + release of a member while another member holds, and the same two script
    calls made with a bare FCALL."""
    r = redis.Redis.from_url(url)
    fns = cycle.cases(r)
    wshare, bare = fns["wshare try_acquire+release"], fns["wshare scripts, bare FCALL"]
    n = 200 if quick else 3000

    out = ["[1] server time per try_acquire + release cycle, by Redis command (INFO commandstats)",
           f"{'command':22} {'calls/cycle':>12} {'us/cycle':>10}"]
    rows = commands_per_cycle(r, wshare, n)
    for name, calls, us in rows:
        out.append(f"{name:22} {calls:12.2f} {us:10.2f}")
    fcall = next((us for name, _, us in rows if name == "fcall"), 0.0)
    nested = sum(us for name, _, us in rows if name != "fcall")
    commands = sum(calls for name, calls, _ in rows if name != "fcall")
    out.append(f"{'inside the commands':22} {commands:12.2f} {nested:10.2f}")
    out.append(f"{'Lua and bridging':22} {'':12} {fcall - nested:10.2f}   (FCALL total minus its commands)")
    empty = next(us for name, _, us in commands_per_cycle(r, fns[cycle.FLOOR], n) if name == "evalsha") / 2
    out.append(f"{'empty script call':22} {'':12} {empty:10.2f}   (EVALSHA return 1, per call)")

    out += ["", "[2] server time by piece of lib.lua (each run many times inside one FCALL)",
            f"{'piece':32} {'us/run':>8}"]
    for label, us in pieces(r, 500 if quick else 5000):
        out.append(f"{label:32} {us:8.2f}")
    out.append("(pieces that read a record include rec_load; the ones after load_pool run with it loaded)")

    out += ["", "[3] client time per cycle: inside redis-py's fcall (round trip, server, parsing) and outside",
            f"{'case':24} {'inside us':>10} {'outside us':>11}"]
    split = client_split(r, {"try_acquire + release": wshare, "bare FCALLs": bare}, n, 2 if quick else 5)
    for label, (ins, outs) in split.items():
        out.append(f"{label:24} {ins:10.1f} {outs:11.1f}")
    cycle.cleanup(r)
    r.close()
    return out


def format_rows(rows: list[str]) -> str:
    return "\n".join(rows)


if __name__ == "__main__":
    from run import standalone
    standalone(__doc__, run, format_rows)
