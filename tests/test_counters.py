"""The per-member event counters the scripts keep in the pool's stats hash."""
from __future__ import annotations

import threading
import time

import pytest

from wshare_redis import AcquireTimeout, InvalidRequest, MemberRemoved, Pool
from wshare_redis.status import COUNTERS, parse_counters


def counters(r, pool: Pool) -> dict[str, dict[str, int]]:
    raw = r.hgetall(pool.keys.key("stats"))
    return parse_counters({(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                           for k, v in raw.items()})


def test_every_event_is_counted_once_per_member(r, name):
    pool = Pool(r, name)
    pool.configure(capacity=2)
    pool.set_weight("b", 1, max_units=2)
    a1 = pool.try_acquire("a", ttl=30)
    a2 = pool.try_acquire("a", ttl=0.05)
    assert a1 and a2
    assert pool.try_acquire("b") is None           # busy: not counted as anything
    with pytest.raises(AcquireTimeout):
        pool.acquire("b", timeout=0.05)             # queued, then timed out
    time.sleep(0.1)                                  # a2 expires
    assert a1.release()                              # reclaims a2 first, then releases a1
    b = pool.try_acquire("b", ttl=30)
    assert b is not None
    assert pool.revoke(b.id)

    # a queued request failed by a lowered cap, and one by the member's removal
    holder = pool.try_acquire("c", units=2, ttl=30)
    assert holder is not None
    errors: list[BaseException] = []

    def wait(member: str, units: int) -> None:
        try:
            pool.acquire(member, units=units, timeout=10)
        except BaseException as e:  # recorded for the assertions below
            errors.append(e)

    threads = [threading.Thread(target=wait, args=("b", 2)), threading.Thread(target=wait, args=("d", 1))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while pool.status().waiting < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.set_weight("b", 1, max_units=1)
    pool.remove_member("d")
    for t in threads:
        t.join(10)
    assert sorted(type(e).__name__ for e in errors) == ["InvalidRequest", "MemberRemoved"]
    assert any(isinstance(e, InvalidRequest) for e in errors) and any(isinstance(e, MemberRemoved) for e in errors)
    holder.release()

    got = counters(r, pool)
    zero = dict.fromkeys(COUNTERS, 0)
    assert got["a"] == zero | {"grants": 2, "releases": 1, "expirations": 1}
    assert got["b"] == zero | {"grants": 1, "revocations": 1, "queued": 2, "timeouts": 1, "failed": 1}
    assert got["c"] == zero | {"grants": 1, "releases": 1}
    assert got["d"] == zero | {"queued": 1, "failed": 1}
    # forgotten members keep their counters; delete() removes them with the pool
    assert pool.delete()
    assert counters(r, pool) == {}


def test_an_interrupted_waiter_counts_as_cancelled_and_a_dead_one_as_purged(r, name):
    pool = Pool(r, name)
    pool.configure(capacity=1)
    holder = pool.try_acquire("a", ttl=30)
    assert holder is not None
    cancel = threading.Event()
    t = threading.Thread(target=lambda: pytest.raises(Exception, pool.acquire, "b", timeout=10, cancel=cancel))
    t.start()
    deadline = time.monotonic() + 5
    while pool.status().waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    cancel.set()
    t.join(10)
    # a waiter that stops checking in: queued with a 50 ms alive window, then purged
    assert pool._run("acquire", "c", 1, 30000, "w-dead", "wait", 50, "", "")[0] == "queued"
    time.sleep(0.1)
    pool.status()  # any call purges waiters presumed dead
    got = counters(r, pool)
    assert got["b"]["cancels"] == 1 and got["b"]["queued"] == 1 and got["b"]["timeouts"] == 0
    assert got["c"]["purged"] == 1 and got["c"]["queued"] == 1
