"""Redis URLs for the command line and workers: connecting, and printing them safely."""
from __future__ import annotations

import re
from typing import Any

import redis

DEFAULT_URL = "redis://localhost:6379/0"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    return re.sub(r"^(\w+://)([^:@/]*):([^@/]*)@", lambda m: f"{m.group(1)}{m.group(2)}:***@", url)


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A redis-py client for ``url`` (replies decoded), failing fast when nothing answers."""
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("decode_responses", True)
    return redis.Redis.from_url(url, **kwargs)


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False
