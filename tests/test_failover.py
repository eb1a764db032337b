"""Redis restarts, crashes, replication and failover, on real redis-server processes.

Each test starts its own servers (they are killed and restarted), on free loopback ports.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Iterator

import pytest
import redis

from wshare_redis import (AcquireTimeout, Lock, NotReplicated, Pool, PoolNotFound, RedisUnavailable)
from wshare_redis.embedded import RedisServer
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = pytest.mark.real

#: How long redis-py 8 (default Retry: 10 attempts, backoff capped at 1 s) may spend on one
#: command against a dead server before raising: the bound on how late an outage is noticed.
CLIENT_RETRY_BUDGET = 8.0


def snapshot(pool: Pool) -> dict[str, Any]:
    """Everything a client can see of a pool: status and live leases with their tokens."""
    st = pool.status()
    return {
        "capacity": st.capacity, "held": st.held, "waiting": st.waiting,
        "members": {k: (m.weight, m.max_units, m.held, m.waiting, m.virtual_service) for k, m in st.members.items()},
        "leases": sorted((x.id, x.member, x.units, x.token) for x in pool.leases()),
    }


def until_someone_waits(pool: Pool, timeout: float = 10.0) -> None:
    """Return once a request is queued in the pool (or after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while pool.status().waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.02)


def build_state(pool: Pool) -> list[Any]:
    """A pool with weights, a cap, live leases and a parked request: returns the leases."""
    pool.configure(capacity=4, default_weight=1)
    pool.set_weight("a", 3, max_units=3)
    pool.set_weight("b", 1)
    leases = [pool.try_acquire("a", ttl=60), pool.try_acquire("a", units=2, ttl=60),
              pool.try_acquire("b", ttl=60)]
    assert all(leases)
    assert pool.park("b", "parked-1", units=1, ttl=60) is None  # full: queued, survives restarts
    return leases


@pytest.fixture
def aof_always() -> Iterator[RedisServer]:
    with RedisServer(args=("--appendonly", "yes", "--appendfsync", "always")) as server:
        yield server


@pytest.mark.parametrize("fsync", ["always", "everysec"])
@pytest.mark.parametrize("how", ["shutdown", "kill -9"])
def test_pool_state_survives_a_restart_with_aof(fsync, how):
    with RedisServer(args=("--appendonly", "yes", "--appendfsync", fsync)) as server:
        client = redis.Redis.from_url(server.url)
        pool = Pool(client, "p")
        leases = build_state(pool)
        before = snapshot(pool)
        if how == "shutdown":
            server.restart()
        else:
            if fsync == "everysec":
                time.sleep(1.5)  # everysec: what was written in the last second may be lost
            server.kill()
            server.start()
        # the same client object reconnects by itself
        assert snapshot(pool) == before
        # and carries on: renew, release, hand-off to the parked request, new tokens larger
        leases[0].renew()
        assert leases[1].release()
        assert pool.handoffs() == ["parked-1"]
        fresh = pool.try_acquire("b", ttl=60)
        assert fresh is not None and fresh.token > max(x.token for x in leases)
        print(f"appendfsync {fsync}, {how}: pool state identical after the restart "
              f"({len(before['leases'])} leases, {before['waiting']} units queued); client carried on")
        client.close()


#: The waiter's client: redis-py's default retries (which ride out a short outage by
#: themselves), or none, so that only wshare's own retry loop carries the waiter through.
CLIENT_RETRIES = {"default retries": {}, "no client retries": {"retry": Retry(NoBackoff(), 0)}}


@pytest.mark.parametrize("retries", CLIENT_RETRIES)
def test_a_waiter_blocked_through_a_crash_gets_its_grant(aof_always, retries):
    client = redis.Redis.from_url(aof_always.url)
    pool = Pool(client, "p")
    pool.configure(capacity=1)
    holder = pool.try_acquire("a", ttl=60)
    assert holder is not None
    got: dict[str, Any] = {}

    def wait() -> None:
        waiter_client = redis.Redis.from_url(aof_always.url, **CLIENT_RETRIES[retries])
        try:
            got["lease"] = Pool(waiter_client, "p").acquire("b", timeout=60)
            got["at"] = time.monotonic()
        except Exception as e:  # recorded for the assertion below
            got["error"] = e
        finally:
            waiter_client.close()

    t = threading.Thread(target=wait)
    t.start()
    until_someone_waits(pool)
    assert pool.status().waiting == 1
    aof_always.kill()
    time.sleep(1.5)  # the waiter retries meanwhile
    aof_always.start()
    released = time.monotonic()
    assert holder.release()  # the holder carries on too, and the unit goes to the waiter
    t.join(timeout=30)
    assert not t.is_alive()
    assert "error" not in got, got.get("error")
    print(f"{retries}: the waiter blocked through a 1.5 s crash got its grant "
          f"{got['at'] - released:.3f} s after the holder's release on the restarted server")
    assert got["lease"].token > holder.token
    assert got["lease"].release()
    client.close()


@pytest.mark.parametrize("retries", CLIENT_RETRIES)
def test_a_waiter_whose_timeout_passes_during_an_outage_gets_a_clear_error(aof_always, retries):
    client = redis.Redis.from_url(aof_always.url)
    pool = Pool(client, "p")
    pool.configure(capacity=1)
    holder = pool.try_acquire("a", ttl=60)
    assert holder is not None
    got: dict[str, Any] = {}
    timeout = 1.5

    def wait() -> None:
        waiter_client = redis.Redis.from_url(aof_always.url, **CLIENT_RETRIES[retries])
        start = time.monotonic()
        try:
            Pool(waiter_client, "p").acquire("b", timeout=timeout)
        except Exception as e:  # recorded for the assertions below
            got["error"], got["after"] = e, time.monotonic() - start
        finally:
            waiter_client.close()

    t = threading.Thread(target=wait)
    t.start()
    until_someone_waits(pool)
    aof_always.kill()
    t.join(timeout=timeout + CLIENT_RETRY_BUDGET + 5)
    assert not t.is_alive(), "the waiter hung past its timeout"
    assert isinstance(got["error"], RedisUnavailable), got
    assert isinstance(got["error"], ConnectionError)  # also the builtin that fits
    assert got["after"] <= timeout + (CLIENT_RETRY_BUDGET if not CLIENT_RETRIES[retries] else 1.0)
    print(f"{retries}: {type(got['error']).__name__} {got['after']:.2f} s after the call (timeout {timeout} s)")
    # back up: the waiter stopped checking in, so the server drops its entry by itself
    aof_always.start()
    deadline = time.monotonic() + 20
    while pool.status().waiting and time.monotonic() < deadline:
        time.sleep(0.2)
        pool.try_acquire("c")  # any call purges waiters that stopped checking in
    assert pool.status().waiting == 0
    client.close()


def test_without_persistence_a_restart_gives_pool_not_found_and_configure_recovers():
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        pool = Pool(client, "p")
        pool.configure(capacity=2)
        lease = pool.try_acquire("a")
        assert lease is not None
        got: dict[str, Any] = {}
        pool.try_acquire("a")  # full now

        def wait() -> None:
            try:
                Pool(redis.Redis.from_url(server.url), "p").acquire("b", timeout=60)
            except Exception as e:  # recorded for the assertion below
                got["error"] = e

        t = threading.Thread(target=wait)
        t.start()
        until_someone_waits(pool)
        server.restart()  # no AOF, no RDB: everything is gone
        t.join(timeout=30)
        assert isinstance(got.get("error"), PoolNotFound), got  # the waiter is told, not left hanging
        with pytest.raises(PoolNotFound):
            pool.try_acquire("a")
        # the documented start-up step: configure is idempotent, so every worker may call it
        pool.configure(capacity=2)
        pool.configure(capacity=2)
        again = pool.try_acquire("a")
        assert again is not None and again.token > lease.token  # tokens start at the server clock
        client.close()


# -- replication and failover -------------------------------------------------------------

@pytest.fixture
def primary_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer() as primary:
        with RedisServer(args=("--replicaof", "127.0.0.1", str(primary.port))) as replica:
            r = redis.Redis.from_url(replica.url)
            deadline = time.monotonic() + 20
            while r.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica did not sync"
                time.sleep(0.05)
            r.close()
            yield primary, replica


def test_confirmed_grants_survive_a_failover_to_the_replica(primary_and_replica):
    primary, replica = primary_and_replica
    client = redis.Redis.from_url(primary.url)
    pool = Pool(client, "p", min_replicas=1, replica_timeout=2.0)
    pool.configure(capacity=8)
    confirmed = [pool.try_acquire(f"m{i % 3}", ttl=60) for i in range(6)]
    assert all(confirmed)
    confirmed[0].renew(ttl=120)  # a confirmed renewal
    renewed_until = confirmed[0].expires_at
    # a grant that reaches a blocked waiter through its wake list is confirmed too
    pool.configure(capacity=6)
    got: dict[str, Any] = {}
    t = threading.Thread(target=lambda: got.update(
        lease=Pool(redis.Redis.from_url(primary.url), "p", min_replicas=1, replica_timeout=2.0)
        .acquire("w", ttl=60, timeout=30)))
    t.start()
    until_someone_waits(pool)
    assert confirmed[5].release()
    t.join(timeout=30)
    confirmed = confirmed[:5] + [got["lease"]]
    lock = Lock(client, "l", ttl=60, min_replicas=1, replica_timeout=2.0)
    lock_lease = lock.acquire(timeout=5)

    primary.kill()  # the primary crashes; promote the replica
    promoted = redis.Redis.from_url(replica.url)
    promoted.execute_command("REPLICAOF", "NO", "ONE")
    after = Pool(promoted, "p")
    leases = {x.id: x for x in after.leases()}
    for lease in confirmed:
        assert lease.id in leases, f"confirmed grant {lease} lost in the failover"
        assert leases[lease.id].token == lease.token
    assert leases[confirmed[0].id].expires_at == pytest.approx(renewed_until)
    assert Pool(promoted, "l").leases()[0].token == lock_lease.token
    # the new primary carries on, with larger tokens
    assert after.status().held == 6
    after.configure(capacity=9)
    extra = after.try_acquire("x")
    assert extra is not None and extra.token > max(x.token for x in confirmed)
    assert leases[confirmed[1].id].release()  # and the leases carried over can be released there
    print(f"failover: all {len(confirmed)} confirmed grants (one handed to a blocked waiter), the confirmed "
          "renewal and the lock's token were on the promoted replica")
    client.close()
    promoted.close()


def test_an_unconfirmed_grant_is_given_back_and_raises(primary_and_replica):
    primary, replica = primary_and_replica
    client = redis.Redis.from_url(primary.url)
    pool = Pool(client, "p", min_replicas=1, replica_timeout=0.2)
    pool.configure(capacity=2)
    held = pool.try_acquire("a", ttl=60)
    assert held is not None
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
    try:
        with pytest.raises(NotReplicated) as e:
            pool.try_acquire("b", ttl=60)
        assert e.value.wanted == 1 and e.value.acked == 0
        assert pool.status().held == 1  # the unconfirmed unit was given back
        with pytest.raises(NotReplicated):
            held.renew()
        assert pool.status().held == 1  # a renewal that was not confirmed keeps the lease
        with pytest.raises(NotReplicated):
            Pool(client, "p", min_replicas=2, replica_timeout=0.1).try_acquire("c")
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    assert pool.try_acquire("b", ttl=60) is not None  # acknowledged again
    with pytest.raises(AcquireTimeout):
        pool.acquire("c", timeout=0.2)
    client.close()


def test_min_replicas_is_checked():
    client = redis.Redis()  # no I/O happens
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError):
            Pool(client, "p", min_replicas=bad)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            Pool(client, "p", min_replicas=1, replica_timeout=bad)
