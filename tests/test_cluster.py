"""Redis Cluster specifics, on the real three-primary cluster of the session (the core suite
runs on it too, through the ``r`` fixture's "cluster" parameter)."""
from __future__ import annotations

import json
import threading
from typing import Any, Iterator

import pytest
from redis.cluster import RedisCluster

from wshare_redis import Lock, NotReplicated, Pool

pytestmark = pytest.mark.real


@pytest.fixture
def rc(redis_cluster: Any) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    client.flushall()
    yield client
    client.close()


def pools_on_every_shard(rc: RedisCluster) -> dict[str, Pool]:
    """Pools named so that every primary of the cluster serves at least one of them."""
    by_node: dict[str, Pool] = {}
    for i in range(200):
        pool = Pool(rc, f"pool-{i}")
        node = rc.get_node_from_key(pool.keys.key("pool")).name
        by_node.setdefault(node, pool)
        if len(by_node) == 3:
            return by_node
    raise AssertionError(f"pool names reached only {sorted(by_node)}")


def test_pools_on_different_shards_work_side_by_side(rc):
    pools = pools_on_every_shard(rc)
    for node, pool in pools.items():
        pool.configure(capacity=2)
        pool.set_weight("a", 2)
        first = pool.try_acquire("a", ttl=30)
        assert first is not None
        assert pool.lease(first.id) is not None  # the single-lease lookup is one script too
        second = pool.acquire("b", timeout=1)
        assert pool.try_acquire("c") is None
        assert pool.status().held == 2
        listed = pool.leases()
        assert {x.id for x in listed} == {first.id, second.id}
        assert [x.expires_at for x in listed] == sorted(x.expires_at for x in listed)
        # every key of the pool lives on the one node that serves its hash tag
        for n in rc.get_primaries():
            keys = list(rc.get_redis_connection(n).scan_iter(match=pool.keys.pattern))
            assert (n.name == node) == bool(keys), (n.name, node, keys)
        assert first.release() and second.release()
    # deleting one pool leaves the others
    doomed, *kept = pools.values()
    assert doomed.delete()
    assert not list(rc.scan_iter(match=doomed.keys.pattern))
    for pool in kept:
        assert pool.status().capacity == 2


def test_a_blocked_waiter_is_handed_the_unit_on_its_shard(rc):
    for pool in pools_on_every_shard(rc).values():
        pool.configure(capacity=1)
        holder = pool.try_acquire("a")
        assert holder is not None
        got: dict[str, Any] = {}
        t = threading.Thread(target=lambda p=pool: got.update(lease=p.acquire("b", timeout=10)))
        t.start()
        for _ in range(500):
            if pool.status().waiting:
                break
            threading.Event().wait(0.01)
        assert holder.release()
        t.join(timeout=15)
        assert got["lease"].token > holder.token
        got["lease"].release()


def test_lock_and_min_replicas_on_a_cluster(rc):
    lock = Lock(rc, "cluster-lock", ttl=5)
    with lock as lease:
        assert lease.token > 0
    # the cluster has no replicas: WAIT (sent to the pool's own node) confirms nothing
    pool = Pool(rc, "needs-replicas", min_replicas=1, replica_timeout=0.05)
    pool.configure(capacity=1)
    with pytest.raises(NotReplicated) as e:
        pool.try_acquire("a")
    assert e.value.acked == 0
    assert pool.status().held == 0  # given back


def test_the_cli_takes_a_cluster_url(redis_cluster, rc):
    from click.testing import CliRunner

    from wshare_redis.cli import main
    url = redis_cluster.url.replace("redis://", "redis+cluster://", 1)
    pools = list(pools_on_every_shard(rc).values())

    def wshare(*args: str) -> str:
        res = CliRunner().invoke(main, ["--url", url, *args])
        assert res.exit_code == 0, res.output
        return res.output

    for pool in pools:
        wshare("pool", "configure", pool.name, "--capacity", "3")
        wshare("member", "set", pool.name, "a", "--weight", "2")
    listed = wshare("pool", "list")
    assert all(pool.name in listed for pool in pools)  # pools on every node are listed
    lease = pools[1].try_acquire("a")
    assert lease is not None
    status = json.loads(wshare("status", pools[1].name, "--json"))
    assert status["held"] == 1 and status["members"]["a"]["weight"] == 2
    assert lease.id in wshare("leases", pools[1].name)
    wshare("revoke", pools[1].name, lease.id)
    assert pools[1].status().held == 0
    # a cluster URL pointing at a plain server, and a plain URL to a cluster node: one-line errors
    bad = CliRunner().invoke(main, ["--url", "redis+cluster://127.0.0.1:1", "status", "x"])
    assert bad.exit_code != 0 and len(bad.output.strip().splitlines()) == 1, bad.output


def test_the_metrics_exporter_lists_and_reports_pools_on_every_shard(redis_cluster, rc, tmp_path):
    """`wshare metrics` over a cluster URL, scraped over HTTP: with no POOL it finds the pools
    on every primary (SCAN of each node) and reports each one's state and counters."""
    pytest.importorskip("prometheus_client")
    from test_metrics import by_member, by_pool, exporter
    url = redis_cluster.url.replace("redis://", "redis+cluster://", 1)
    pools = list(pools_on_every_shard(rc).values())
    for i, pool in enumerate(pools):
        pool.configure(capacity=4 + i)
        pool.set_weight("a", 1 + i)
        assert pool.try_acquire("a", units=1 + i, ttl=60) is not None
        assert pool.try_acquire("b", units=1, ttl=60) is not None
    released = pools[0].try_acquire("c")
    assert released is not None and released.release()
    with exporter(url, tmp_path=tmp_path) as ex:
        m = ex.scrape()
    assert m["wshare_up"] == {(): 1.0} and m["wshare_scrape_pool_errors"] == {(): 0.0}
    assert by_pool(m["wshare_pool_capacity_units"]) == {p.name: 4 + i for i, p in enumerate(pools)}
    assert by_pool(m["wshare_pool_held_units"]) == {p.name: 2 + i for i, p in enumerate(pools)}
    for i, pool in enumerate(pools):
        assert by_member(m["wshare_member_weight"], pool.name)["a"] == 1 + i
        held = by_member(m["wshare_member_held_units"], pool.name)
        assert {x: v for x, v in held.items() if v} == {"a": 1 + i, "b": 1}  # c, idle, may still be listed
        grants = by_member(m["wshare_member_grants_total"], pool.name)
        assert grants == ({"a": 1, "b": 1, "c": 1} if i == 0 else {"a": 1, "b": 1})
    assert by_member(m["wshare_member_releases_total"], pools[0].name) == {"a": 0, "b": 0, "c": 1}
