"""Lock, key schema, name rules and the fair-share computation."""
from __future__ import annotations

import threading
import time

import pytest

from wshare_redis import AcquireTimeout, InvalidRequest, Lease, Lock, Pool
from wshare_redis.pool import new_id
from wshare_redis.keys import KEY_SUFFIXES, check_name, pool_keys
from wshare_redis.status import fair_shares


def test_lock_excludes_and_tokens_increase(r, name):
    a, b = Lock(r, name, ttl=30), Lock(r, name, ttl=30)
    first = a.acquire(timeout=1)
    assert isinstance(first, Lease) and a.token == first.token
    with pytest.raises(AcquireTimeout):
        b.acquire(timeout=0.2)
    with pytest.raises(InvalidRequest):
        a.acquire(timeout=0)  # not reentrant
    assert a.release() is True and a.release() is False and a.token is None
    with b as lease:
        assert b.token == lease.token > first.token
    assert Pool(r, name).status().capacity == 1


def test_lock_waiters_are_served_in_arrival_order(r, name):
    holder = Lock(r, name, ttl=30)
    holder.acquire()
    got = []

    def contender(i):
        lock = Lock(r, name, ttl=30)
        lock.acquire(timeout=10)
        got.append(i)
        lock.release()

    threads = []
    for i in range(4):
        t = threading.Thread(target=contender, args=(i,), daemon=True)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while Pool(r, name).status().waiting < i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    holder.release()
    for t in threads:
        t.join(5)
    assert got == [0, 1, 2, 3]


def test_lock_can_be_released_from_another_thread(r, name):
    lock = Lock(r, name, ttl=30)
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert Lock(r, name).acquire(timeout=1) is not None


def test_key_schema():
    k = pool_keys("wshare", "gpu")
    assert k.key("pool") == "wshare:{gpu}:pool"
    assert k.wake("abc") == "wshare:{gpu}:wake:abc"
    assert k.script_keys == ["wshare:{gpu}:"]
    assert [k.key(s) for s in KEY_SUFFIXES][:2] == ["wshare:{gpu}:pool", "wshare:{gpu}:members"]
    assert pool_keys("p", "a*b[c]").pattern == "p:{a\\*b\\[c\\]}:*"


@pytest.mark.parametrize("good", ["a", "team-a", "Ünïcödé 名前", "x" * 200, "with space", "a:b", "{x}"])
def test_names_accepted(good):
    assert check_name(good, "member") == good


@pytest.mark.parametrize("bad", ["", "a\x00", "tab\there", "x" * 201, "é" * 101, "\ud800", 5, None, b"bytes"])
def test_names_rejected(bad):
    with pytest.raises(InvalidRequest):
        check_name(bad, "member")


def test_fair_shares_weighted_max_min():
    assert fair_shares(10, {"a": 1, "b": 3}, {"a": 99, "b": 99}) == pytest.approx({"a": 2.5, "b": 7.5})
    # a capped member's excess is redistributed by weight
    got = fair_shares(8, {"a": 1, "b": 2, "c": 5}, {"a": 99, "b": 99, "c": 1})
    assert got == pytest.approx({"a": 7 / 3, "b": 14 / 3, "c": 1})
    # members with no demand take no share
    assert fair_shares(6, {"a": 1, "b": 1}, {"a": 4, "b": 0}) == {"a": 4.0, "b": 0.0}
    assert fair_shares(0, {"a": 1}, {"a": 3}) == {"a": 0.0}


def test_status_reports_fair_shares(r, name):
    p = Pool(r, name)
    p.configure(capacity=10)
    p.set_weight("a", 1)
    p.set_weight("b", 3)
    p.set_weight("idle", 5)
    a, b = p.try_acquire("a", units=5), p.try_acquire("b", units=4)
    st = p.status()  # demands 5 and 4 fit in 10: each its demand
    assert (st.members["a"].fair_share, st.members["b"].fair_share) == (5, 4)
    assert st.members["idle"].fair_share == 0
    for member in "ab":  # queue 5 more units each: demands 10 and 9 compete
        assert p._run("acquire", member, 5, 30000, new_id(), "wait", 10000, "")[0] == "queued"
    st = p.status()
    assert (st.members["a"].waiting, st.members["b"].waiting, st.waiting) == (5, 5, 10)
    assert st.members["a"].fair_share == pytest.approx(2.5)
    assert st.members["b"].fair_share == pytest.approx(7.5)
    assert st.members["idle"].fair_share == 0
    a.release(), b.release()


def test_history_checks_detect_overlap_and_measure_shares():
    from history import max_concurrent, shares
    recs = [{"member": "a", "t0": 0.0, "t1": 2.0, "units": 2},
            {"member": "b", "t0": 1.0, "t1": 3.0, "units": 1},
            {"member": "b", "t0": 3.0, "t1": 4.0, "units": 3}]
    assert max_concurrent(recs) == {"all": 3}
    assert max_concurrent(recs, key=lambda r: r["member"]) == {"a": 2, "b": 3}
    assert shares(recs, 0.0, 4.0) == {"a": 1.0, "b": 1.25}
