"""Fixtures: every core test runs against fakeredis (with Lua) and a real redis-server that
this session starts on a free loopback port and stops at the end."""
from __future__ import annotations

import uuid
from typing import Iterator

import fakeredis
import pytest
import redis

from wshare_redis.embedded import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of the session's real server, with its database flushed for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    yield redis_server.url


@pytest.fixture(params=["fake", "real", "real-decoded"])
def r(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client on fakeredis, on the real server, and on the real server with decoded replies."""
    if request.param == "fake":
        client = fakeredis.FakeRedis()
    else:
        server = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(server.url, decode_responses=request.param == "real-decoded")
        client.flushdb()
    yield client
    client.close()


@pytest.fixture
def name() -> str:
    return "t-" + uuid.uuid4().hex[:10]
