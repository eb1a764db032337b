"""The pool's contract, on fakeredis and a real redis-server (see conftest.r)."""
from __future__ import annotations

import math
import threading
import time

import pytest

from wshare_redis import (AcquireCancelled, AcquireTimeout, InvalidRequest, Lease, LeaseLost, MemberRemoved, Pool,
                          PoolNotFound, PoolStateError, WshareError)
from wshare_redis.pool import new_id


def all_keys(r) -> list[str]:
    """Every key on the server, or on every primary of a cluster."""
    nodes = [r.get_redis_connection(n) for n in r.get_primaries()] if hasattr(r, "get_primaries") else [r]
    return [k.decode() if isinstance(k, bytes) else k for node in nodes for k in node.keys("*")]


def wait_until(cond, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class Waiter(threading.Thread):
    """acquire() in a thread, recording the lease or the exception."""

    def __init__(self, pool, member, **kw):
        super().__init__(daemon=True)
        self.pool, self.member, self.kw = pool, member, kw
        self.lease = self.error = None
        self.done_at = None

    def run(self):
        try:
            self.lease = self.pool.acquire(self.member, **self.kw)
        except BaseException as e:  # recorded for the test to assert on
            self.error = e
        self.done_at = time.monotonic()


def start_waiter(pool, member, **kw):
    """Start a waiter and return once its request is queued."""
    before = pool.status().waiting
    w = Waiter(pool, member, **kw)
    w.start()
    wait_until(lambda: pool.status().waiting > before or not w.is_alive(), what="waiter queued")
    return w


@pytest.fixture
def pool(r, name):
    p = Pool(r, name)
    p.configure(capacity=3)
    return p


# -- configuration and basic leases ---------------------------------------------------------

def test_unconfigured_pool_raises_pool_not_found(r, name):
    p = Pool(r, name)
    for call in (lambda: p.try_acquire("a"), lambda: p.acquire("a", timeout=0.1), p.status,
                 lambda: p.set_weight("a", 1)):
        with pytest.raises(PoolNotFound) as e:
            call()
        assert name in str(e.value) and "configure" in str(e.value)
    assert not all_keys(r)


def test_configure_is_idempotent_and_keeps_unmentioned_settings(r, name):
    p = Pool(r, name)
    p.configure(capacity=4, default_weight=2.5)
    p.configure(capacity=4, default_weight=2.5)
    p.configure(capacity=5)
    st = p.status()
    assert (st.capacity, st.default_weight, st.held, st.free, st.waiting) == (5, 2.5, 0, 5, 0)
    lease = p.try_acquire("newcomer")
    assert p.status().members["newcomer"].weight == 2.5
    lease.release()


def test_try_acquire_fills_the_pool_then_returns_none(pool):
    a = pool.try_acquire("a", units=2, ttl=30)
    b = pool.try_acquire("b", units=1, ttl=30)
    assert isinstance(a, Lease) and isinstance(b, Lease)
    assert (a.pool, a.member, a.units, b.member, b.units) == (pool.name, "a", 2, "b", 1)
    assert pool.try_acquire("a") is None and pool.try_acquire("c") is None
    st = pool.status()
    assert (st.held, st.free, st.members["a"].held, st.members["b"].held) == (3, 0, 2, 1)
    assert a.release() is True and a.release() is False
    assert pool.status().held == 1


def test_expiry_is_on_the_server_clock_and_reclaimed_by_the_next_operation(pool):
    t0 = time.time()
    lease = pool.try_acquire("a", units=3, ttl=0.25)
    assert abs(lease.expires_at - (t0 + 0.25)) < 1.0
    assert pool.try_acquire("b") is None
    time.sleep(0.4)
    b = pool.try_acquire("b", units=3, ttl=30)
    assert b is not None and b.token > lease.token
    assert lease.release() is False
    with pytest.raises(LeaseLost):
        lease.renew()


def test_tokens_strictly_increase_and_renewal_keeps_the_token(pool):
    tokens = []
    for i in range(30):
        lease = pool.try_acquire("ab"[i % 2], ttl=30)
        tokens.append(lease.token)
        if i % 3 == 0:
            before, token = lease.expires_at, lease.token
            time.sleep(0.002)
            lease.renew(ttl=60)
            assert lease.token == token and lease.expires_at > before
        lease.release()
    assert all(b > a for a, b in zip(tokens, tokens[1:]))


def test_tokens_keep_increasing_after_the_pool_is_deleted_and_created_again(r, name):
    p = Pool(r, name)
    p.configure(capacity=1)
    first = p.try_acquire("a").token
    p.delete()
    p.configure(capacity=1)
    assert p.try_acquire("a").token > first


def test_renew_of_an_ended_lease_raises_lease_lost(pool):
    lease = pool.try_acquire("a")
    lease.release()
    with pytest.raises(LeaseLost) as e:
        lease.renew()
    assert lease.id in str(e.value)


def test_revoke_frees_units_and_the_auto_renewing_holder_learns_it_lost(pool):
    lost = threading.Event()
    lease = pool.acquire("a", units=3, ttl=0.3, auto_renew=True, on_lost=lambda l: lost.set())
    assert [x.id for x in pool.leases()] == [lease.id]
    assert pool.revoke(lease.id) is True
    assert pool.revoke(lease.id) is False
    assert pool.status().held == 0
    assert lost.wait(2) and lease.lost
    assert lease.release() is False


def test_auto_renew_keeps_a_lease_alive_past_its_ttl(pool):
    lease = pool.acquire("a", units=3, ttl=0.3, auto_renew=True)
    time.sleep(1.0)
    assert not lease.lost
    assert pool.try_acquire("b") is None
    assert pool.status().members["a"].held == 3
    assert lease.release() is True
    assert pool.try_acquire("b") is not None


def test_max_hold_stops_renewing_reports_the_loss_and_the_lease_runs_out(pool):
    """A hung holder cannot keep its units for ever: past max_hold the lease is no longer
    renewed, on_lost is called at once, and the lease ends at its TTL."""
    lost: list[tuple[float, Lease]] = []
    t0 = time.monotonic()
    lease = pool.acquire("a", units=2, ttl=0.3, auto_renew=True, max_hold=0.6,
                         on_lost=lambda x: lost.append((time.monotonic(), x)))
    time.sleep(0.45)  # past its first ttl: renewed meanwhile
    assert not lease.lost and not lost and pool.status().members["a"].held == 2
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [x for _, x in lost] == [lease] and lease.lost and lost[0][0] - t0 >= 0.6
    while pool.status().held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.status().held == 0  # not renewed any more: it ran out
    assert lease.release() is False


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "5", True])
def test_max_hold_is_checked_before_anything_changes(pool, bad):
    with pytest.raises(InvalidRequest, match="max_hold"):
        pool.try_acquire("a", auto_renew=True, max_hold=bad)
    with pytest.raises(InvalidRequest, match="max_hold"):
        pool.acquire("a", auto_renew=True, max_hold=bad, timeout=0)
    assert pool.status().held == 0 and pool.leases() == []


def test_max_hold_needs_auto_renew(pool):
    with pytest.raises(InvalidRequest, match="auto_renew=True"):
        pool.acquire("a", max_hold=5, timeout=1)
    assert pool.status().held == 0 and pool.leases() == []


def test_leases_lists_live_leases_with_their_fields(pool):
    a = pool.try_acquire("a", units=2, ttl=30)
    b = pool.try_acquire("b", ttl=0.1)
    time.sleep(0.2)
    listed = pool.leases()
    assert [(x.id, x.member, x.units, x.token) for x in listed] == [(a.id, "a", 2, a.token)]
    assert abs(listed[0].expires_at - a.expires_at) < 0.01 and b.release() is False


def test_lease_context_manager_releases(pool):
    with pool.acquire("a", units=2, timeout=1) as lease:
        assert pool.status().members["a"].held == 2 and lease.units == 2
    assert pool.status().held == 0


# -- bad input ----------------------------------------------------------------------------

BAD = [
    ("units=0", lambda p: p.try_acquire("a", units=0)),
    ("units=-1", lambda p: p.try_acquire("a", units=-1)),
    ("units=1.5", lambda p: p.try_acquire("a", units=1.5)),
    ("units=True", lambda p: p.try_acquire("a", units=True)),
    ("units='2'", lambda p: p.acquire("a", units="2", timeout=0.1)),
    ("units huge", lambda p: p.try_acquire("a", units=10**30)),
    ("units over capacity", lambda p: p.try_acquire("a", units=4)),
    ("blocking units over capacity", lambda p: p.acquire("a", units=4, timeout=0.1)),
    ("units over max_units", lambda p: p.try_acquire("capped", units=2)),
    ("ttl=0", lambda p: p.try_acquire("a", ttl=0)),
    ("ttl=-1", lambda p: p.try_acquire("a", ttl=-1)),
    ("ttl=nan", lambda p: p.try_acquire("a", ttl=math.nan)),
    ("ttl=inf", lambda p: p.try_acquire("a", ttl=math.inf)),
    ("timeout=-1", lambda p: p.acquire("a", timeout=-1)),
    ("weight=0", lambda p: p.set_weight("c", 0)),
    ("weight=-1", lambda p: p.set_weight("c", -1)),
    ("weight=nan", lambda p: p.set_weight("c", math.nan)),
    ("weight=inf", lambda p: p.set_weight("c", math.inf)),
    ("weight='3'", lambda p: p.set_weight("c", "3")),
    ("max_units=-1", lambda p: p.set_weight("c", 1, max_units=-1)),
    ("max_units=1.5", lambda p: p.set_weight("c", 1, max_units=1.5)),
    ("default_weight=0", lambda p: p.configure(capacity=3, default_weight=0)),
    ("capacity=-1", lambda p: p.configure(capacity=-1)),
    ("capacity=2.5", lambda p: p.configure(capacity=2.5)),
    ("empty member", lambda p: p.try_acquire("")),
    ("member not str", lambda p: p.try_acquire(b"a")),
    ("member with NUL", lambda p: p.try_acquire("a\x00b")),
    ("member with newline", lambda p: p.set_weight("a\nb", 1)),
    ("member over-long", lambda p: p.try_acquire("m" * 201)),
    ("pool name with brace", lambda p: Pool(p.client, "x{y}").configure(capacity=1)),
    ("pool name with closing brace", lambda p: Pool(p.client, "x}").configure(capacity=1)),
    ("empty pool name", lambda p: Pool(p.client, "").configure(capacity=1)),
    ("over-long pool name", lambda p: Pool(p.client, "p" * 300)),
    ("prefix with brace", lambda p: Pool(p.client, "ok", prefix="a{b")),
    ("revoke empty id", lambda p: p.revoke("")),
]


@pytest.mark.parametrize("what,call", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_invalid_request_and_changes_nothing(pool, what, call):
    pool.set_weight("capped", 1, max_units=1)
    holder = pool.try_acquire("a", ttl=30)
    before = pool.status()
    with pytest.raises(InvalidRequest) as e:
        call(pool)
    assert isinstance(e.value, ValueError) and isinstance(e.value, WshareError)
    assert str(e.value)
    assert pool.status() == before
    holder.release()


def test_error_hierarchy():
    assert issubclass(AcquireTimeout, TimeoutError) and issubclass(PoolNotFound, LookupError)
    assert all(issubclass(c, WshareError) for c in (InvalidRequest, AcquireTimeout, PoolNotFound, LeaseLost))


def test_state_edited_into_nonsense_gives_a_clear_error(r, pool):
    pool.try_acquire("a").release()
    r.hset(pool.keys.key("members"), "a", "not a record")
    with pytest.raises(PoolStateError) as e:
        pool.try_acquire("a")
    assert "member a" in str(e.value) and "Traceback" not in str(e.value)
    with pytest.raises(PoolStateError):
        pool.status()
    r.hset(pool.keys.key("pool"), "capacity", "lots")
    with pytest.raises(PoolStateError) as e:
        pool.try_acquire("b")
    assert "capacity" in str(e.value)


# -- rules: caps, drain, resize, removal ---------------------------------------------------

def test_member_cap_holds_and_idle_share_is_lent(pool):
    pool.set_weight("b", 5, max_units=1)
    b = pool.try_acquire("b")
    assert pool.try_acquire("b") is None  # cap reached, units free
    a = pool.try_acquire("a", units=2)  # a borrows what b cannot use
    assert a is not None and pool.status().free == 0
    st = pool.status().members
    assert (st["b"].max_units, st["b"].held, st["a"].held) == (1, 1, 2)
    pool.set_weight("b", 5)  # weight only: the cap stays
    assert pool.status().members["b"].max_units == 1
    pool.set_weight("b", 5, max_units=None)
    assert pool.status().members["b"].max_units is None
    a.release(), b.release()


def test_capacity_zero_drains_then_resize_grants_the_waiters(pool):
    live = pool.try_acquire("a", units=2)
    pool.configure(capacity=0)
    assert pool.try_acquire("b") is None
    assert pool.status().members["a"].held == 2  # live leases run on
    w = start_waiter(pool, "b", units=3, timeout=10)  # units > capacity is fine while drained
    assert w.is_alive()
    live.release()
    time.sleep(0.1)
    assert w.is_alive() and pool.status().held == 0
    pool.configure(capacity=3)
    w.join(5)
    assert w.lease is not None and w.lease.units == 3


def test_resize_fails_queued_requests_it_makes_impossible(pool):
    holder = pool.try_acquire("a", units=3)
    w = start_waiter(pool, "b", units=3, timeout=10)
    small = start_waiter(pool, "c", units=2, timeout=10)
    pool.configure(capacity=2)
    w.join(5)
    assert isinstance(w.error, InvalidRequest) and "capacity is 2" in str(w.error)
    assert small.is_alive()
    holder.release()
    small.join(5)
    assert small.lease is not None and pool.status().waiting == 0


def test_lowered_cap_fails_queued_requests_it_makes_impossible(pool):
    holder = pool.try_acquire("a", units=3)
    w = start_waiter(pool, "b", units=2, timeout=10)
    pool.set_weight("b", 1, max_units=1)
    w.join(5)
    assert isinstance(w.error, InvalidRequest) and "max_units 1" in str(w.error)
    holder.release()
    assert pool.status().waiting == 0


def test_remove_member_fails_its_waiters_and_its_leases_run_on(pool):
    pool.set_weight("b", 2)
    lease = pool.try_acquire("b", units=2)
    other = pool.try_acquire("a")
    w = start_waiter(pool, "b", timeout=10)
    assert pool.remove_member("b") is True
    w.join(5)
    assert isinstance(w.error, MemberRemoved)
    st = pool.status()
    assert st.members["b"].removed and st.members["b"].held == 2 and st.held == 3
    assert lease.release() is True
    assert "b" not in pool.status().members
    assert pool.remove_member("b") is False and pool.remove_member("nobody") is False
    other.release()


# -- rules: ranking, FIFO, no starvation -------------------------------------------------

def test_fifo_within_a_member(pool):
    holder = pool.try_acquire("x", units=3)
    waiters = [start_waiter(pool, "a", timeout=10) for _ in range(3)]
    order = []
    holder.release()  # three units free: all three granted in one hand-off, in order
    for w in waiters:
        w.join(5)
        order.append(w.lease.token)
    assert order == sorted(order)


def test_head_of_queue_is_not_overtaken_by_a_smaller_request(pool):
    pool.set_weight("big", 1)
    pool.set_weight("small", 1)
    holder = pool.try_acquire("x", units=2)
    big = start_waiter(pool, "big", units=2, timeout=10)  # 1 free, needs 2
    assert pool.try_acquire("small") is None  # would fit, but ranks behind the head
    small = start_waiter(pool, "small", timeout=10)
    holder.release()
    big.join(5), small.join(5)
    assert big.lease is not None and small.lease is not None
    assert big.lease.token < small.lease.token


def test_freed_units_go_to_the_lowest_virtual_service(pool):
    pool.configure(capacity=2)
    pool.set_weight("heavy", 1)
    pool.set_weight("light", 1)
    h = pool.try_acquire("heavy")
    time.sleep(0.3)  # heavy accrues service alone
    l_ = pool.try_acquire("light")
    hw = start_waiter(pool, "heavy", timeout=10)
    lw = start_waiter(pool, "light", timeout=10)  # asked later, but has less service
    h.release()
    lw.join(5)
    assert lw.lease is not None and hw.is_alive()
    l_.release()
    hw.join(5)
    st = pool.status().members
    assert st["heavy"].virtual_service > st["light"].virtual_service


def test_weight_scales_virtual_service(pool):
    pool.set_weight("a", 1)
    pool.set_weight("b", 4)
    a, b = pool.try_acquire("a"), pool.try_acquire("b")
    time.sleep(0.4)
    a.release(), b.release()
    st = pool.status().members
    assert st["a"].virtual_service == pytest.approx(4 * st["b"].virtual_service, rel=0.15)


def test_member_back_from_idle_banks_no_credit(pool):
    pool.configure(capacity=1)
    pool.set_weight("a", 1)
    pool.set_weight("b", 1)  # b idle, its S at 0, from the start
    a = pool.try_acquire("a")
    time.sleep(0.3)
    a.release()  # a used the pool alone; the pool's virtual time is a's service now
    s_a = pool.status().members["a"].virtual_service
    b = pool.try_acquire("b")  # b was idle all along
    st = pool.status().members
    assert st["b"].virtual_service >= s_a > 0.25
    b.release()


def test_members_that_joined_by_acquiring_are_forgotten_when_idle(pool):
    pool.set_weight("added", 1)
    lease = pool.try_acquire("passer-by")
    assert pool.status().members["passer-by"].weight == 1.0
    lease.release()
    pool.try_acquire("added").release()
    assert set(pool.status().members) == {"added"}
    holder = pool.try_acquire("x", units=3)
    assert pool.try_acquire("tried-once") is None
    assert "tried-once" not in pool.status().members
    holder.release()


def test_reweight_applies_from_now_on(pool):
    pool.set_weight("a", 1)
    lease = pool.try_acquire("a")
    time.sleep(0.3)
    pool.set_weight("a", 100)
    s1 = pool.status().members["a"].virtual_service
    time.sleep(0.3)
    lease.release()
    s2 = pool.status().members["a"].virtual_service
    assert s1 > 0.25 and s2 - s1 < 0.02


# -- blocking, hand-off, cancellation ----------------------------------------------------

def test_blocking_acquire_times_out_and_leaves_the_queue(pool):
    holder = pool.try_acquire("a", units=3)
    t0 = time.monotonic()
    with pytest.raises(AcquireTimeout) as e:
        pool.acquire("b", timeout=0.3)
    assert 0.28 <= time.monotonic() - t0 < 2.0
    assert e.value.member == "b" and pool.status().waiting == 0
    with pytest.raises(AcquireTimeout):
        pool.acquire("b", timeout=0)
    holder.release()


def test_release_hands_units_to_a_blocked_waiter_at_once(pool):
    holder = pool.try_acquire("a", units=3)
    w = start_waiter(pool, "b", units=2, timeout=10)
    t0 = time.monotonic()
    holder.release()
    w.join(5)
    assert w.lease is not None and w.lease.units == 2
    assert w.done_at - t0 < 1.0  # pushed, not found by a heartbeat (every 2 s)


def test_crashed_holders_units_reach_a_waiter_with_nobody_else_acting(pool):
    pool.try_acquire("crashed", units=3, ttl=0.5)  # never released, never renewed
    t0 = time.monotonic()
    w = start_waiter(pool, "b", units=3, timeout=10)
    w.join(5)
    assert w.lease is not None and 0.3 < w.done_at - t0 < 0.5 + 0.5


def test_grant_racing_a_timeout_returns_the_lease(pool):
    holder = pool.try_acquire("a", units=3)
    waiter = new_id()
    assert pool._run("acquire", "b", 1, 30000, waiter, "wait", 10000, "")[0] == "queued"
    holder.release()  # grants the waiter and pushes to its wake list
    message, _ = pool._wait(waiter, -1, deadline=time.monotonic())  # its deadline has passed
    assert message.startswith("ok:")
    assert pool.status().members["b"].held == 1 and pool.status().waiting == 0


def test_interrupted_waiter_leaves_the_queue_and_a_racing_grant_is_returned(pool, monkeypatch):
    holder = pool.try_acquire("a", units=3)

    def interrupted(*args, **kw):
        holder.release()  # the grant lands just before the interrupt
        raise KeyboardInterrupt

    monkeypatch.setattr(pool.client, "blpop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pool.acquire("b", units=2, timeout=5)
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def test_cancel_event_stops_a_waiter_and_a_racing_grant_is_given_back(pool):
    holder = pool.try_acquire("a", units=3)
    cancel = threading.Event()
    w = start_waiter(pool, "b", cancel=cancel)
    cancel.set()
    w.join(5)
    assert isinstance(w.error, AcquireCancelled) and pool.status().waiting == 0
    waiter = new_id()
    assert pool._run("acquire", "b", 2, 30000, waiter, "wait", 10000, "")[0] == "queued"
    holder.release()  # granted to the waiter ...
    assert pool._wait(waiter, -1, None, cancel)[0] == "cancelled"  # ... which was cancelled meanwhile
    st = pool.status()
    assert (st.held, st.waiting) == (0, 0)


def test_a_grant_popped_but_never_seen_is_released(pool, monkeypatch):
    holder = pool.acquire("a", units=3, ttl=30)
    real_blpop = pool.client.blpop

    def lost_reply(keys, timeout=0):
        item = real_blpop(keys, timeout=timeout)
        if item is not None:  # the server popped the grant; the reply never arrives
            raise KeyboardInterrupt
        return item

    monkeypatch.setattr(pool.client, "blpop", lost_reply)
    threading.Timer(0.2, holder.release).start()
    with pytest.raises(KeyboardInterrupt):
        pool.acquire("b", ttl=30, timeout=5)
    st = pool.status()
    assert (st.held, st.waiting, pool.leases()) == (0, 0, [])


def test_a_queued_members_new_request_does_not_strand_free_units(pool):
    pool.configure(capacity=2)
    pool.set_weight("b", 1)
    pool.set_weight("c", 1)
    pool.try_acquire("b")  # b holds 1; 1 unit free
    assert pool._run("acquire", "b", 2, 60000, new_id(), "wait", 60000, "")[0] == "queued"  # does not fit
    c = new_id()
    assert pool._run("acquire", "c", 1, 60000, c, "wait", 60000, "")[0] == "queued"  # ties with b, later
    time.sleep(0.3)
    assert pool.try_acquire("b") is None  # b's S rises: c now ranks first and fits ...
    assert pool.client.lrange(pool.keys.wake(c), 0, -1)  # ... and is granted at once


def test_hand_off_of_hundreds_of_units_at_once_completes(pool):
    pool.configure(capacity=150)
    big = pool.try_acquire("a", units=150)
    for _ in range(150):
        assert pool._run("acquire", "b", 1, 60000, new_id(), "wait", 60000, "")[0] == "queued"
    big.release()
    st = pool.status()
    assert (st.held, st.waiting) == (150, 0)


def test_an_error_halfway_keeps_counters_and_tokens_consistent(r, pool):
    pool.configure(capacity=2)
    a = pool.try_acquire("a", units=2)
    waiter = new_id()
    assert pool._run("acquire", "b", 1, 60000, waiter, "wait", 60000, "")[0] == "queued"
    assert pool._run("acquire", "c", 1, 60000, new_id(), "wait", 60000, "")[0] == "queued"
    record = r.hget(pool.keys.key("members"), "c")
    record = record.decode() if isinstance(record, bytes) else record
    r.hset(pool.keys.key("members"), "c", record.replace("held=0", "held=x"))
    with pytest.raises(PoolStateError):
        a.release()  # b is granted, then the hand-off stumbles on c's record
    raw = r.hget(pool.keys.key("pool"), "token")
    granted = r.lrange(pool.keys.wake(waiter), 0, -1)[0]
    granted = granted.decode() if isinstance(granted, bytes) else granted
    assert granted.split(":")[1] == (raw.decode() if isinstance(raw, bytes) else raw)
    held = int(r.hget(pool.keys.key("pool"), "held"))
    leases = r.hvals(pool.keys.key("leases"))
    assert held == sum(int(v.split(b":" if isinstance(v, bytes) else ":")[0]) for v in leases) == 1


def test_a_dead_waiter_is_purged_after_it_stops_checking_in(pool):
    holder = pool.try_acquire("a", units=3)
    assert pool._run("acquire", "b", 1, 30000, new_id(), "wait", 200, "")[0] == "queued"
    assert pool.status().waiting == 1
    time.sleep(0.3)
    assert pool.status().waiting == 0
    holder.release()
    assert pool.status().held == 0  # the purged waiter was not granted


def test_waiter_learns_the_pool_was_deleted(pool, monkeypatch):
    monkeypatch.setattr(pool, "_max_block", 0.1)
    pool.try_acquire("a", units=3)
    w = start_waiter(pool, "b", timeout=10)
    pool.delete()
    w.join(5)
    assert isinstance(w.error, PoolNotFound)


# -- scripts, keys, Cluster layout -------------------------------------------------------

def test_recovers_after_script_flush(r, pool):
    lease = pool.try_acquire("a")
    r.script_flush()
    assert lease.release() is True
    r.script_flush()
    assert pool.try_acquire("a", units=3) is not None


def test_recovers_after_function_flush_and_works_without_functions(r, pool):
    from wshare_redis.scripts import scripts_for
    lease = pool.try_acquire("a")
    r.function_flush()  # the library is gone (as after a restart without persistence)
    assert lease.release() is True
    scripts = scripts_for(r)
    scripts.functions = False  # as on a Redis without Functions (< 7): EVAL scripts
    try:
        holder = pool.try_acquire("a", units=3)
        w = start_waiter(pool, "b", timeout=10)
        holder.release()
        w.join(5)
        assert w.lease is not None and w.lease.release() is True
        r.script_flush()
        assert pool.try_acquire("c") is not None
    finally:
        scripts.functions = None


def test_every_key_carries_the_hash_tag_and_delete_removes_them_all(r, pool):
    pool.set_weight("a", 2, max_units=2)
    pool.try_acquire("a")
    holder = pool.try_acquire("b", units=2)
    start_waiter(pool, "a", timeout=10)
    holder.release()
    time.sleep(0.05)
    keys = all_keys(r)
    assert keys and all(k.startswith(f"wshare:{{{pool.name}}}:") for k in keys)
    assert pool.delete() is True
    assert all_keys(r) == []
    assert pool.delete() is False


def test_prefix_separates_pools(r, name):
    a, b = Pool(r, name, prefix="one"), Pool(r, name, prefix="two")
    a.configure(capacity=1)
    b.configure(capacity=1)
    assert a.try_acquire("m") is not None and b.try_acquire("m") is not None
    a.delete()
    assert b.status().held == 1


def test_uncontended_acquire_and_release_are_one_round_trip_each(url, name, monkeypatch):
    import redis as redis_py
    from redis.connection import AbstractConnection
    client = redis_py.Redis.from_url(url)
    pool = Pool(client, name)
    pool.configure(capacity=2)
    pool.try_acquire("warm").release()  # scripts loaded, connection open
    sent = []
    original = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    lease = pool.try_acquire("a")
    lease.release()
    with pool.acquire("a", timeout=1):
        pass
    assert len(sent) == 4


def test_parked_requests_are_handed_off_by_list_not_by_wake_up(pool):
    holder = pool.try_acquire("x", units=3)
    assert pool.park("job-member", "job-1", units=2, ttl=60) is None
    assert pool.park("job-member", "job-2", units=1, ttl=60) is None
    st = pool.status()
    assert (st.waiting, st.members["job-member"].parked) == (3, 2)
    time.sleep(0.3)
    assert pool.status().waiting == 3  # parked requests are never purged as dead waiters
    assert pool.cancel("job-2") is True and pool.cancel("job-2") is False
    holder.release()
    assert pool.handoffs() == ["job-1"]
    lease = pool.lease("job-1")
    assert lease is not None and lease.units == 2 and lease.member == "job-member"
    assert not pool.client.exists(pool.keys.wake("job-1"))
    pool.ack_handoff("job-1")
    assert pool.handoffs() == [] and pool.lease("nope") is None
    assert lease.release() is True and pool.lease("job-1") is None
    granted = pool.park("job-member", "job-3", units=1, ttl=60)
    assert granted is not None and granted.id == "job-3"


def test_failed_parked_requests_are_handed_off_too(pool):
    holder = pool.try_acquire("x", units=3)
    assert pool.park("m", "job-big", units=3) is None
    pool.configure(capacity=2)
    assert pool.handoffs() == ["job-big"] and pool.lease("job-big") is None
    holder.release()
