"""Section 1-2 of the benchmark: the round-trip floor and uncontended acquire+release cycles.

One client, interleaved rounds: two EVALSHA of `return 1` per cycle (the floor), PING,
wshare try_acquire+release, wshare Lock, redis-py Lock, python-redis-lock. Median rates,
and for each case the median over rounds of its rate over the floor measured just before it.

Two more rows take the wshare cycle apart:
- "wshare scripts, bare FCALL": the same two script calls made with ``client.fcall`` and
  nothing else, so the gap to the try_acquire+release row is this library's Python code;
- "bound: the scripts' Redis commands": two EVAL scripts that issue exactly the Redis
  commands the acquire and release scripts issue in this cycle (reads and writes of the
  pool, member, lease and index keys) with constant arguments and no logic, so the gap to
  the floor is what the state changes themselves cost the server, and the gap from there
  to the bare FCALL row is the cost of the scripts' own logic.
    python benchmarks/cycle.py [--url URL] [--quick]
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import redis

from wshare_redis import Lock, Pool

FLOOR = "floor: 2 x EVALSHA return 1"


def timed(fn: Callable[[], Any], seconds: float, batch: int = 50) -> tuple[int, float]:
    """Call fn in batches for about ``seconds``: (calls made, seconds taken)."""
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= end:
            return n, now - t0


def rate(fn: Callable[[], Any], seconds: float) -> float:
    n, elapsed = timed(fn, seconds)
    return n / elapsed


# The Redis commands the acquire script issues when it grants at once to a member that was
# idle while another member holds, and those of the release that follows (see lua/; checked
# against INFO commandstats: 10 and 11 commands). Like the scripts, they get one key, the
# pool's prefix, and derive the key names from it.
COMMANDS_ACQUIRE = """
local b = KEYS[1]
local t = redis.call('TIME')
redis.call('HMGET', b .. 'pool', 'capacity', 'default_weight', 'held', 'waiting', 'token', 'seq', 'vclock', 'avg_hold', 'next_exp', 'next_dead')
redis.call('HGET', b .. 'members', 'm')
redis.call('ZRANGE', b .. 'active', '0', '0', 'WITHSCORES')
redis.call('HINCRBY', b .. 'stats', 'grants:m', '1')
redis.call('HSET', b .. 'leases', ARGV[1], '1:1764000000000000:30000:1764000000000:m')
redis.call('ZADD', b .. 'expiry', '1764000030000', ARGV[1])
redis.call('ZADD', b .. 'active', 0.25, 'm')
redis.call('HSET', b .. 'members', 'm', 'w=1 max=- held=1 wait=0 vs=0.25 vt=1764000000000 head=0:0 kind=auto')
redis.call('HSET', b .. 'pool', 'held', '2', 'token', '1764000000000000')
return {'ok', '1764000000000000', '1764000030000'}
"""
COMMANDS_RELEASE = """
local b = KEYS[1]
local t = redis.call('TIME')
redis.call('HMGET', b .. 'pool', 'capacity', 'default_weight', 'held', 'waiting', 'token', 'seq', 'vclock', 'avg_hold', 'next_exp', 'next_dead')
redis.call('HGET', b .. 'leases', ARGV[1])
redis.call('HDEL', b .. 'leases', ARGV[1])
redis.call('ZREM', b .. 'expiry', ARGV[1])
redis.call('HGET', b .. 'members', 'm')
redis.call('ZREM', b .. 'active', 'm')
redis.call('ZRANGE', b .. 'active', '0', '0', 'WITHSCORES')
redis.call('HSET', b .. 'members', 'm', 'w=1 max=- held=0 wait=0 vs=0.25 vt=1764000000000 head=0:0 kind=auto')
redis.call('HINCRBY', b .. 'stats', 'releases:m', '1')
redis.call('HSET', b .. 'pool', 'held', '1', 'avg_hold', 0.0012345678901234567)
return {1, 0}
"""


def cases(r: redis.Redis) -> dict[str, Callable[[], Any]]:
    one = r.register_script("return 1")
    pool = Pool(r, "bench-cycle")
    pool.configure(capacity=4)
    other = pool.try_acquire("other", ttl=600)  # another member holds, as in a shared pool
    assert other is not None
    keys = pool.keys.script_keys
    names = pool._scripts.names
    ids = iter(range(1 << 62))
    cmd_keys = ["bench-cmds:{c}:"]
    r.hset("bench-cmds:{c}:pool", mapping={"capacity": 4, "default_weight": 1, "held": 1, "waiting": 0,
                                            "token": 1764000000000000, "seq": 0, "vclock": 0, "avg_hold": 0.001,
                                            "next_exp": 1764000030000, "next_dead": 9007199254740991})
    r.zadd("bench-cmds:{c}:active", {"other": 0.5})
    cmd_acquire = r.register_script(COMMANDS_ACQUIRE)
    cmd_release = r.register_script(COMMANDS_RELEASE)

    def bare_fcall() -> None:
        lease_id = f"bench-{next(ids)}"
        if pool._scripts.functions is False:  # Redis < 7: the EVALSHA scripts
            pool._scripts.acquire(keys=keys, args=["m", 1, 30000, lease_id, "try", 0, "", ""])
            pool._scripts.release(keys=keys, args=[lease_id])
            return
        r.fcall(names["acquire"], len(keys), *keys, "m", 1, 30000, lease_id, "try", 0, "", "")
        r.fcall(names["release"], len(keys), *keys, lease_id)

    def commands_only() -> None:
        lease_id = f"bench-{next(ids)}"
        cmd_acquire(keys=cmd_keys, args=[lease_id])
        cmd_release(keys=cmd_keys, args=[lease_id])
    lock = Lock(r, "bench-lock")
    rlock = r.lock("bench-redis-py-lock", timeout=30)

    def floor() -> None:
        one()
        one()

    def lock_cycle() -> None:
        lock.acquire()
        lock.release()

    def redis_py_lock() -> None:
        rlock.acquire()
        rlock.release()

    out: dict[str, Callable[[], Any]] = {
        FLOOR: floor, "PING": r.ping, "wshare try_acquire+release": lambda: pool.try_acquire("m").release(),
        "wshare Lock acquire+release": lock_cycle, "redis-py Lock acquire+release": redis_py_lock,
        "wshare scripts, bare FCALL": bare_fcall, "bound: the scripts' Redis commands": commands_only}
    try:
        import redis_lock  # python-redis-lock, the [bench] extra
        prl = redis_lock.Lock(r, "bench-prl", expire=30)

        def prl_cycle() -> None:
            prl.acquire()
            prl.release()
        out["python-redis-lock acquire+release"] = prl_cycle
    except ImportError:
        pass
    return out


def cleanup(r: redis.Redis) -> None:
    """Delete every key ``cases`` made."""
    Pool(r, "bench-cycle").delete()
    r.delete(*[f"bench-cmds:{{c}}:{k}" for k in ("pool", "members", "leases", "expiry", "active", "stats")])
    Pool(r, "bench-lock").delete()


def run(url: str, quick: bool) -> list[dict[str, Any]]:
    """Each round measures every case right after a floor measurement of its own, and the
    case's ratio is the median over rounds of case / that floor: a burst of load from
    elsewhere on a shared machine then skews one round's pair, not a whole row."""
    r = redis.Redis.from_url(url)
    todo = cases(r)
    seconds, rounds = (0.2, 2) if quick else (0.5, 7)
    for fn in todo.values():
        rate(fn, 0.2)  # warm up: scripts loaded, connections open
    rates: dict[str, list[float]] = {k: [] for k in todo}
    ratios: dict[str, list[float]] = {k: [] for k in todo}
    for _ in range(rounds):
        for k, fn in todo.items():
            floor = rate(todo[FLOOR], seconds)
            value = floor if k == FLOOR else rate(fn, seconds)
            rates[FLOOR].append(floor)
            if k != FLOOR:
                rates[k].append(value)
            ratios[k].append(value / floor)
    cleanup(r)
    return [{"section": "1-2 uncontended, one client", "name": k, "value": statistics.median(rates[k]),
             "unit": "cycles/s", "ratio": statistics.median(ratios[k]), "note": ""} for k in todo]


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'uncontended, one client':40} {'cycles/s':>10} {'x floor':>8}"]
    lines += [f"{r['name']:40} {r['value']:10,.0f} {r['ratio']:8.2f}" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    from run import standalone
    standalone(__doc__, run, format_rows)
