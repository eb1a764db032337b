"""Fixtures: every core test runs against fakeredis (with Lua), a real redis-server and a
real three-primary Redis Cluster, which this session starts on free loopback ports and
stops at the end."""
from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import uuid
from typing import Iterator

import fakeredis
import pytest
import redis
from redis.cluster import RedisCluster

from wshare_redis.embedded import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def cluster_port() -> int:
    """A free loopback port for a cluster node: at most 55535, with the cluster bus port
    (port + 10000) free as well."""
    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    """Three redis-server processes in cluster mode on loopback, joined into one cluster
    (``redis-cli --cluster create``, no replicas): every slot has a primary."""

    def __init__(self) -> None:
        self.servers = [RedisServer(port=cluster_port(), args=("--cluster-enabled", "yes", "--cluster-config-file",
                                                               "nodes.conf", "--cluster-node-timeout", "5000"))
                        for _ in range(3)]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> "Cluster":
        try:
            for s in self.servers:
                s.start()
            cli = shutil.which("redis-cli")
            if cli is None:
                raise FileNotFoundError("redis-cli (package redis-tools) is needed to create the test cluster")
            subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{s.port}" for s in self.servers],
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 30
            for s in self.servers:
                node = redis.Redis(port=s.port)
                while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the test cluster did not come up")
                    time.sleep(0.05)
                node.close()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of the session's real server, with its database flushed for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    yield redis_server.url


@pytest.fixture(params=["fake", "real", "real-decoded", "cluster"])
def r(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client on fakeredis, on the real server, on the real server with decoded replies,
    and on the real three-primary cluster (redis.cluster.RedisCluster)."""
    if request.param == "fake":
        client = fakeredis.FakeRedis()
    elif request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster.from_url(cluster.url)
        client.flushall()
    else:
        server = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(server.url, decode_responses=request.param == "real-decoded")
        client.flushdb()
    yield client
    client.close()


@pytest.fixture
def name() -> str:
    return "t-" + uuid.uuid4().hex[:10]
