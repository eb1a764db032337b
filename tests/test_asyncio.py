"""The asyncio front end (wshare_redis.asyncio).

First the core contract, written once and run on the sync and the asyncio front end alike
(``Front.run`` awaits what the asyncio front end returns). Then what only asyncio has, on a
real redis-server: hundreds of tasks over a client of 8 connections (safety from the recorded
hold intervals, weighted shares, connections counted with CLIENT LIST), cancellation at
random moments leaking nothing, ``async with`` releasing on cancellation, one BLPOP per pool
that picks up new waiters without polling.
"""
from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from typing import Any, Callable, Iterator, Optional

import fakeredis
import pytest
import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster

from wshare_redis import (AcquireCancelled, AcquireTimeout, InvalidRequest, Lease, LeaseLost, Lock, NotReplicated,
                          Pool, PoolNotFound)
from wshare_redis import asyncio as wa
from wshare_redis.asyncio import _dispatch
from wshare_redis.scripts import async_scripts_for

CLIENT_NAME = "wshare-async-test"


# -- one contract, two front ends --------------------------------------------------------------

class Front:
    """A sync or an asyncio front end on one backend. ``run(x)`` returns x, or awaits it on
    this front's event loop if it is awaitable, so one test body drives both."""

    def __init__(self, kind: str, backend: str, make_client: Callable[[], Any]) -> None:
        self.kind, self.backend = kind, backend
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.client = make_client()

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def run(self, x: Any) -> Any:
        if self.loop is not None and inspect.isawaitable(x):
            return self.loop.run_until_complete(x)
        return x

    def pool(self, name: str, **kw: Any) -> Any:
        return (wa.Pool if self.is_async else Pool)(self.client, name, **kw)

    def lock(self, name: str, **kw: Any) -> Any:
        return (wa.Lock if self.is_async else Lock)(self.client, name, **kw)

    def start(self, call: Callable[[], Any]) -> "Started":
        """Run ``call()`` (a blocking call, or a coroutine) concurrently: a thread or a task."""
        return Started(self, call)

    def pause(self, seconds: float) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(asyncio.sleep(seconds))
        else:
            time.sleep(seconds)

    def wait_until(self, cond: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out waiting for a condition"
            self.pause(0.01)

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        # As asyncio.run ends: cancel what is left (a dispatcher's last BLPOP), let it finish.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.run(gather_all(pending))
        self.run(self.client.aclose())
        self.run(self.loop.shutdown_asyncgens())
        self.loop.close()


async def gather_all(tasks: Any) -> list[Any]:
    return await asyncio.gather(*tasks, return_exceptions=True)


class Started:
    def __init__(self, front: Front, call: Callable[[], Any]) -> None:
        self.front = front
        self.value: Any = None
        self.error: Optional[BaseException] = None
        if front.loop is not None:
            self.task: Optional[asyncio.Task[Any]] = front.loop.create_task(self._await(call()))
            return
        self.task = None
        self.thread = threading.Thread(target=self._call, args=(call,), daemon=True)
        self.thread.start()

    async def _await(self, x: Any) -> None:
        try:
            self.value = await x
        except BaseException as e:  # recorded for the test
            self.error = e

    def _call(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except BaseException as e:  # recorded for the test
            self.error = e

    def result(self, timeout: float = 5.0) -> Any:
        if self.task is not None:
            self.front.run(asyncio.wait_for(asyncio.shield(self.task), timeout))
        else:
            self.thread.join(timeout)
            assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.value


def _cluster_client(request: pytest.FixtureRequest, make: Callable[[str], Any]) -> Callable[[], Any]:
    cluster = request.getfixturevalue("redis_cluster")
    flusher = RedisCluster.from_url(cluster.url)
    flusher.flushall()
    flusher.close()
    return lambda: make(cluster.url)


@pytest.fixture(params=["sync-fake", "sync-real", "async-fake", "async-real", "async-real-decoded", "async-cluster"])
def front(request: pytest.FixtureRequest) -> Iterator[Front]:
    kind, backend = request.param.split("-", 1)
    make: Callable[[], Any]
    if backend == "fake":
        make = fakeredis.FakeAsyncRedis if kind == "async" else fakeredis.FakeRedis
    elif backend == "cluster":
        make = _cluster_client(request, aredis.RedisCluster.from_url)
    else:
        url = request.getfixturevalue("url")
        decoded = backend == "real-decoded"
        if kind == "async":
            make = lambda: aredis.Redis.from_url(url, decode_responses=decoded, max_connections=8)  # noqa: E731
        else:
            make = lambda: redis.Redis.from_url(url, decode_responses=decoded)  # noqa: E731
    f = Front(kind, backend, make)
    yield f
    f.close()


@pytest.fixture
def pool(front: Front, name: str) -> Any:
    p = front.pool(name)
    front.run(p.configure(capacity=3))
    return p


def test_fills_refuses_and_tokens_increase(front, pool):
    run = front.run
    a = run(pool.try_acquire("a", units=2))
    b = run(pool.try_acquire("b"))
    assert run(pool.try_acquire("c")) is None
    assert a.units == 2 and b.member == "b" and b.token > a.token
    st = run(pool.status())
    assert (st.capacity, st.held, st.free, st.waiting) == (3, 3, 0, 0)
    assert run(a.release()) is True
    assert run(a.release()) is False
    assert run(a.release()) is False
    c = run(pool.try_acquire("c", units=2))
    assert c.token > b.token
    assert isinstance(c, wa.Lease if front.is_async else Lease)


def test_renew_keeps_the_token_and_moves_the_expiry(front, pool):
    run = front.run
    lease = run(pool.try_acquire("a", ttl=5))
    before = lease.expires_at
    run(lease.renew(ttl=60))
    assert lease.ttl == 60 and lease.expires_at > before + 50
    assert run(pool.lease(lease.id)).token == lease.token
    assert run(pool.revoke(lease.id)) is True and run(pool.revoke(lease.id)) is False
    with pytest.raises(LeaseLost):
        run(lease.renew())
    counts = run(pool.status()).member_counters["a"]
    assert (counts["revocations"], counts["releases"]) == (1, 0)  # revoke() says so to the script


@pytest.mark.parametrize("call", [
    lambda p: p.try_acquire("a", units=0),
    lambda p: p.try_acquire("a", ttl=0),
    lambda p: p.try_acquire(""),
    lambda p: p.acquire("a", timeout=-1),
    lambda p: p.acquire("a", units=True),
    lambda p: p.set_weight("a", 0),
    lambda p: p.set_weight("a", 1, max_units=-1),
    lambda p: p.configure(capacity=-1),
    lambda p: p.handoffs(limit=-1),
    lambda p: p.revoke("bad\nid"),
])
def test_bad_input_is_invalid_before_any_change(front, pool, call):
    with pytest.raises(InvalidRequest):
        front.run(call(pool))
    assert front.run(pool.status()).members == {}
    with pytest.raises(InvalidRequest):
        front.pool("a{b}")
    with pytest.raises(InvalidRequest):
        front.pool("p", min_replicas=-1)


def test_a_missing_pool_is_pool_not_found(front, name):
    p = front.pool(name)
    for call in (lambda: p.try_acquire("a"), lambda: p.acquire("a", timeout=1), p.status, p.leases,
                 lambda: p.set_weight("a", 1)):
        with pytest.raises(PoolNotFound):
            front.run(call())
    assert front.run(p.delete()) is False


def test_status_members_leases_and_delete(front, pool):
    run = front.run
    run(pool.set_weight("a", 2, max_units=2))
    with pytest.raises(InvalidRequest):
        run(pool.try_acquire("a", units=3))  # above its cap: can never be met
    lease = run(pool.try_acquire("a", units=2))
    st = run(pool.status())
    m = st.members["a"]
    assert (st.name, st.held, st.free, st.default_weight, st.last_token) == (pool.name, 2, 1, 1.0, lease.token)
    assert (m.weight, m.max_units, m.held, m.waiting, m.fair_share) == (2.0, 2, 2, 0, 2.0)
    assert [(x.id, x.token, x.units, x.member) for x in run(pool.leases())] == [(lease.id, lease.token, 2, "a")]
    assert run(pool.remove_member("a")) is True and run(pool.remove_member("a")) is False
    assert run(pool.delete()) is True
    with pytest.raises(PoolNotFound):
        run(pool.status())


def test_a_waiter_is_granted_on_release_and_a_timeout_leaves_the_queue(front, pool):
    run = front.run
    holder = run(pool.try_acquire("a", units=3))
    with pytest.raises(AcquireTimeout):
        run(pool.acquire("b", timeout=0))
    with pytest.raises(AcquireTimeout):
        run(pool.acquire("b", timeout=0.2))
    assert run(pool.status()).waiting == 0
    waiter = front.start(lambda: pool.acquire("b", units=2, timeout=10))
    front.wait_until(lambda: run(pool.status()).waiting == 2)
    run(holder.release())
    lease = waiter.result()
    assert lease.units == 2 and lease.token > holder.token
    counts = run(pool.status()).member_counters["b"]
    assert (counts["timeouts"], counts["cancels"], counts["grants"]) == (1, 0, 1)


def test_cancel_event_and_pool_cancel(front, pool):
    run = front.run
    run(pool.try_acquire("a", units=3))
    event = asyncio.Event() if front.is_async else threading.Event()
    waiter = front.start(lambda: pool.acquire("b", cancel=event))
    front.wait_until(lambda: run(pool.status()).waiting == 1)
    event.set()
    with pytest.raises(AcquireCancelled):
        waiter.result()
    assert run(pool.park("c", "job-1")) is None
    assert run(pool.cancel("job-1")) is True and run(pool.cancel("job-1")) is False
    st = run(pool.status())
    assert st.waiting == 0
    assert (st.counters["cancels"], st.counters["timeouts"]) == (2, 0)


def test_lock(front, name):
    run = front.run
    lock, other = front.lock(name, ttl=5), front.lock(name, ttl=5)
    lease = run(lock.acquire())
    assert lock.token == lease.token
    with pytest.raises(InvalidRequest):
        run(lock.acquire())  # not reentrant
    with pytest.raises(AcquireTimeout):
        run(other.acquire(timeout=0.1))
    assert run(lock.release()) is True and lock.token is None and run(lock.release()) is False
    assert run(other.acquire(timeout=1)).token > lease.token


def test_unconfirmed_grants_are_given_back(front, pool):
    """min_replicas on a server without replicas: nothing is confirmed, nothing is kept."""
    if front.backend == "fake":
        pytest.skip("fakeredis has no WAIT")
    run = front.run
    strict = front.pool(pool.name, min_replicas=1, replica_timeout=0.02)
    with pytest.raises(NotReplicated):
        run(strict.try_acquire("a"))
    holder = run(pool.try_acquire("a", units=3))
    waiter = front.start(lambda: strict.acquire("b", timeout=10))  # granted through the wake list
    front.wait_until(lambda: run(pool.status()).waiting == 1)
    run(holder.release())
    with pytest.raises(NotReplicated):
        waiter.result()
    st = run(pool.status())
    assert (st.held, st.waiting, run(pool.leases())) == (0, 0, [])


# -- asyncio only: helpers -------------------------------------------------------------------

def arun(coro: Any) -> Any:
    return asyncio.run(coro)


def client(url: str, **kw: Any) -> aredis.Redis:
    return aredis.Redis.from_url(url, max_connections=8, client_name=CLIENT_NAME, **kw)


async def settled() -> None:
    """Until every detached clean-up (give-backs of cancelled tasks) has run."""
    deadline = time.monotonic() + 10
    while _dispatch._background:
        assert time.monotonic() < deadline, "clean-ups did not finish"
        await asyncio.sleep(0.01)


async def connections(monitor: aredis.Redis) -> tuple[int, int]:
    """(connections of the test client, those of them blocked in BLPOP), from CLIENT LIST."""
    ours = [c for c in await monitor.client_list() if c.get("name") == CLIENT_NAME]
    return len(ours), sum(1 for c in ours if "b" in c.get("flags", ""))  # b: in a blocking command


def max_overlap(intervals: list[tuple[float, float, int]]) -> int:
    """The most units held at once, from (start, end, units) intervals."""
    events = sorted([(s, u) for s, _, u in intervals] + [(e, -u) for _, e, u in intervals],
                    key=lambda ev: (ev[0], ev[1]))  # ends before starts at the same instant
    held = peak = 0
    for _, du in events:
        held += du
        peak = max(peak, held)
    return peak


async def assert_nothing_left(pool: wa.Pool) -> None:
    await settled()
    st = await pool.status()
    assert (st.held, st.waiting, await pool.leases()) == (0, 0, [])


# -- asyncio only: hundreds of tasks, a handful of connections ----------------------------------

def test_three_hundred_tasks_share_by_weight_and_never_exceed_capacity_over_eight_connections(url, name):
    capacity, tasks_per_member, hold = 8, 150, 0.02
    warmup, window = 1.0, 3.0
    weights = {"light": 1, "heavy": 3}

    async def main() -> tuple[list[tuple[str, float, float, int]], list[int], tuple[int, int]]:
        r, monitor = client(url), aredis.Redis.from_url(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=capacity)
        for member, weight in weights.items():
            await pool.set_weight(member, weight)
        held: list[tuple[str, float, float, int]] = []
        tokens: list[int] = []
        stop = False

        async def worker(member: str) -> None:
            while not stop:
                async with pool.acquire(member, ttl=30) as lease:
                    start = time.monotonic()
                    tokens.append(lease.token)
                    await asyncio.sleep(hold)
                    held.append((member, start, time.monotonic(), lease.units))

        workers = [asyncio.create_task(worker(m)) for m in weights for _ in range(tasks_per_member)]
        peak = (0, 0)
        t0 = time.monotonic()
        while time.monotonic() < t0 + warmup + window:
            await asyncio.sleep(0.1)
            sample = await connections(monitor)
            peak = (max(peak[0], sample[0]), max(peak[1], sample[1]))
            assert all(not w.done() for w in workers), [w.exception() for w in workers if w.done()]
        stop = True
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await assert_nothing_left(pool)
        await r.aclose()
        await monitor.aclose()
        held_in = [(m, max(s, t0 + warmup), min(e, t0 + warmup + window), u) for m, s, e, u in held]
        return [x for x in held_in if x[2] > x[1]], tokens, peak

    held, tokens, (conns, blocked) = arun(main())
    assert max_overlap([(s, e, u) for _, s, e, u in held]) <= capacity  # safety
    assert len(set(tokens)) == len(tokens)  # every grant its own fencing token
    assert conns <= 8 and blocked <= 1  # one BLPOP for all the waiting tasks
    service = {m: sum(e - s for mm, s, e, _ in held if mm == m) for m in weights}
    total = sum(service.values())
    print(f"{len(tokens)} grants; shares {({m: round(v / total, 3) for m, v in service.items()})}; "
          f"busy {total / window / capacity:.2f}; {conns} connections, {blocked} in BLPOP")
    for member, weight in weights.items():
        ideal = weight / sum(weights.values())
        assert abs(service[member] / total / ideal - 1) <= 0.10, (service, total)


def test_a_cancellation_storm_leaks_no_unit(url, name):
    capacity, tasks, duration = 4, 300, 3.0
    rng = random.Random(7)

    async def main() -> dict[str, int]:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=capacity)
        intervals: list[tuple[float, float, int]] = []
        state: dict[asyncio.Task[None], str] = {}
        errors: list[BaseException] = []
        seen = {"cancelled waiting": 0, "cancelled holding": 0, "granted": 0, "timed out": 0}

        async def worker(seed: int) -> None:
            me = asyncio.current_task()
            assert me is not None
            own = random.Random(seed)
            while True:
                state[me] = "waiting"
                try:
                    async with pool.acquire(own.choice("abc"), units=own.choice((1, 1, 2)), ttl=30,
                                            timeout=own.choice((None, 0.3, 2.0))) as lease:
                        state[me] = "holding"
                        seen["granted"] += 1
                        start = time.monotonic()
                        try:
                            await asyncio.sleep(own.uniform(0, 0.02))
                        finally:
                            intervals.append((start, time.monotonic(), lease.units))
                except AcquireTimeout:
                    seen["timed out"] += 1
                except asyncio.CancelledError:
                    raise
                except BaseException as e:  # anything else fails the test below
                    errors.append(e)
                    raise

        def spawn(i: int) -> None:
            state[asyncio.get_running_loop().create_task(worker(i))] = "starting"

        for i in range(tasks):
            spawn(i)
        end = time.monotonic() + duration
        n = tasks
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0, 0.004))
            live = [t for t in state if not t.done()]
            holding = [t for t in live if state[t] == "holding"]
            victim = rng.choice(holding if holding and rng.random() < 0.3 else live)
            seen["cancelled " + state[victim]] = seen.get("cancelled " + state[victim], 0) + 1
            victim.cancel()
            if rng.random() < 0.5:  # a second cancellation while it cleans up
                await asyncio.sleep(0)
                victim.cancel()
            spawn(n)
            n += 1
        for t in state:
            t.cancel()
        await asyncio.gather(*state, return_exceptions=True)
        assert errors == []
        await assert_nothing_left(pool)
        assert max_overlap(intervals) <= capacity
        await r.aclose()
        return seen

    seen = arun(main())
    print(seen)
    assert seen["cancelled waiting"] > 100 and seen["cancelled holding"] > 20 and seen["granted"] > 100, seen


def test_a_task_cancelled_inside_async_with_releases(url, name):
    async def main() -> None:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=2)
        lock = wa.Lock(r, name + "-lock")
        await lock.pool.configure(capacity=1)
        inside = asyncio.Event()

        async def hold_with_acquire() -> None:
            async with pool.acquire("a") as lease:
                assert lease.units == 1
                inside.set()
                await asyncio.sleep(30)

        async def hold_with_lease() -> None:
            async with await pool.acquire("b"):
                inside.set()
                await asyncio.sleep(30)

        async def hold_lock() -> None:
            async with lock:
                inside.set()
                await asyncio.sleep(30)

        for body, twice in [(hold_with_acquire, False), (hold_with_lease, False), (hold_with_acquire, True),
                            (hold_lock, True)]:
            inside.clear()
            task = asyncio.create_task(body())
            await inside.wait()
            task.cancel()
            if twice:  # cancelled again while releasing: the release still completes
                await asyncio.sleep(0)
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await assert_nothing_left(pool)
            await assert_nothing_left(lock.pool)
        await r.aclose()

    arun(main())


def test_a_grant_racing_a_cancellation_is_given_back(url, name):
    """The waiter is cancelled just as its grant lands: in the wake list, taken by the
    dispatcher, or handed to the task but not yet seen. Each time the units come back."""
    async def main() -> None:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=1)
        for i in range(30):
            holder = await pool.try_acquire("a")
            waiter = asyncio.create_task(pool.acquire("b", timeout=10))
            while (await pool.status()).waiting == 0:
                await asyncio.sleep(0.005)
            await holder.release()  # grants the waiter and pushes to its wake list
            for _ in range(i % 3):  # let the dispatcher get nearer to the task each round
                await asyncio.sleep(0)
            waiter.cancel()
            try:
                lease = await waiter
            except asyncio.CancelledError:
                pass
            else:  # the task had returned before the cancellation landed: it holds the lease
                await lease.release()
            await assert_nothing_left(pool)
        counters = (await pool.status()).member_counters["b"]
        assert counters["timeouts"] == 0
        await r.aclose()

    arun(main())


def test_try_acquire_cancelled_mid_call_leaves_no_lease(url, name):
    async def main() -> None:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=1000)
        tasks = [asyncio.create_task(pool.try_acquire("a")) for _ in range(200)]
        await asyncio.sleep(0.002)
        for t in tasks:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for lease in done:
            if isinstance(lease, wa.Lease):
                await lease.release()
        await assert_nothing_left(pool)
        await r.aclose()

    arun(main())


def test_one_blpop_serves_many_waiters_and_new_ones_join_without_polling(url, name, monkeypatch):
    async def main() -> None:
        r, monitor = client(url), aredis.Redis.from_url(url)
        pool = wa.Pool(r, name)
        # No check-in for a minute: a waiter that joins while the BLPOP blocks must be woken by
        # the control list, not found by a timeout or a check-in.
        monkeypatch.setattr(pool, "_max_block", 60.0)
        await pool.configure(capacity=2)
        await pool.set_weight("b", 1, max_units=1)
        await pool.try_acquire("b", ttl=120)  # b is at its cap: its waiters stay queued
        holder = await pool.try_acquire("a", ttl=120)
        first = [asyncio.create_task(pool.acquire("b", ttl=120)) for _ in range(100)]
        while (await pool.status()).waiting < 100:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        conns, blocked = await connections(monitor)
        assert blocked == 1 and conns <= 8  # every waiter parked on one BLPOP
        late = asyncio.create_task(pool.acquire("c", ttl=120))  # joins while that BLPOP blocks
        while (await pool.status()).waiting < 101:
            await asyncio.sleep(0.01)
        await holder.release()  # the free unit can only go to c
        lease = await asyncio.wait_for(late, 10)  # long before any check-in or BLPOP timeout
        assert lease.member == "c"
        for t in first:
            t.cancel()
        await asyncio.gather(*first, return_exceptions=True)
        await lease.release()
        for held in await pool.leases():
            await held.release()
        await assert_nothing_left(pool)
        await r.aclose()
        await monitor.aclose()

    arun(main())


def test_library_reload_and_eval_fallback(url, name):
    async def main() -> None:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=1)
        lease = await pool.try_acquire("a")
        await r.function_flush()  # the library is gone (as after a restart without persistence)
        assert await lease.release() is True
        scripts = async_scripts_for(r)
        scripts.functions = False  # as on a Redis without Functions (< 7): EVAL scripts
        try:
            holder = await pool.try_acquire("a")
            waiter = asyncio.create_task(pool.acquire("b", timeout=10))
            while (await pool.status()).waiting == 0:
                await asyncio.sleep(0.01)
            await holder.release()
            assert await (await waiter).release() is True
            await r.script_flush()
            strict = wa.Pool(r, name, min_replicas=1, replica_timeout=0.02)  # EVAL inside a pipeline
            with pytest.raises(NotReplicated):
                await strict.try_acquire("c")
        finally:
            scripts.functions = None
        await assert_nothing_left(pool)
        await r.aclose()

    arun(main())


def test_auto_renew_runs_in_a_task_and_reports_a_revoked_lease(url, name):
    async def main() -> None:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=1)
        lost = asyncio.Event()

        async def on_lost(lease: wa.Lease) -> None:
            lost.set()

        lease = await pool.acquire("a", ttl=0.3, auto_renew=True, on_lost=on_lost)
        await asyncio.sleep(0.5)  # outlives its ttl: renewed meanwhile
        assert not lease.lost and (await pool.status()).held == 1
        await pool.revoke(lease.id)
        await asyncio.wait_for(lost.wait(), 5)
        assert lease.lost and await lease.release() is False
        await assert_nothing_left(pool)
        await r.aclose()

    arun(main())


def test_max_hold_stops_the_renewal_task_and_the_lease_runs_out(url, name):
    async def main() -> None:
        r = client(url)
        pool = wa.Pool(r, name)
        await pool.configure(capacity=1)
        lost = asyncio.Event()

        async def on_lost(lease: wa.Lease) -> None:
            lost.set()

        lock = wa.Lock(r, name + "-lock", ttl=0.3, auto_renew=True, max_hold=0.2)
        held = await lock.acquire(timeout=1)
        lease = await pool.acquire("a", ttl=0.3, auto_renew=True, max_hold=0.6, on_lost=on_lost)
        await asyncio.sleep(0.45)  # outlives its ttl: renewed meanwhile
        assert not lease.lost and not lost.is_set() and (await pool.status()).held == 1
        await asyncio.wait_for(lost.wait(), 5)
        assert lease.lost
        for _ in range(100):  # no longer renewed: it runs out within its ttl
            if not (await pool.status()).held:
                break
            await asyncio.sleep(0.05)
        assert (await pool.status()).held == 0 and await lease.release() is False
        assert held.lost and await lock.release() is False  # the lock's lease ran out the same way
        with pytest.raises(InvalidRequest, match="auto_renew=True"):
            await pool.try_acquire("a", max_hold=1)
        await assert_nothing_left(pool)
        await r.aclose()

    arun(main())


def test_a_waiter_gives_up_with_redis_unavailable_after_its_timeout():
    from wshare_redis.embedded import RedisServer

    async def main(server: RedisServer) -> None:
        r = aredis.Redis.from_url(server.url, max_connections=8, socket_timeout=1)
        pool = wa.Pool(r, "outage")
        await pool.configure(capacity=1)
        await pool.try_acquire("a")
        waiter = asyncio.create_task(pool.acquire("b", timeout=1.0))
        while (await pool.status()).waiting == 0:
            await asyncio.sleep(0.01)
        server.stop()
        from wshare_redis import RedisUnavailable
        with pytest.raises(RedisUnavailable):
            await asyncio.wait_for(waiter, 10)
        await r.aclose()

    with RedisServer() as server:
        arun(main(server))


def test_readme_asyncio_example_runs(url, capsys):
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"## asyncio\n.*?```python\n(.*?)```", readme, re.S).group(1)
    assert 'from_url("redis://localhost:6379/0"' in block
    exec(compile(block.replace("redis://localhost:6379/0", url), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "0" and out[1].startswith("fencing token ")
    r = redis.Redis.from_url(url)
    assert r.hget("wshare:{gpu}:pool", "held") == b"0" and r.hget("wshare:{gpu}:pool", "waiting") == b"0"
    r.close()
