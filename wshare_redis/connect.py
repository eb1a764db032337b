"""Redis URLs for the command line and workers: connecting, and printing them safely."""
from __future__ import annotations

import inspect
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from ._checks import MAX_TTL

DEFAULT_URL = "redis://localhost:6379/0"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A password option hides the rest of the URL: it may hold an unencoded '&' or '#'.
_SECRET_PARAM = re.compile(r"([?&](?:ssl_)?password=)(.*)$", re.IGNORECASE | re.DOTALL)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs.

    Errs on the side of hiding too much, so that a password typed without percent-encoding
    (with '@', '/', '?' or '#' in it) stays hidden too: everything between the first ':' of
    the user info and the last '@' is masked, user info without a ':' entirely, and
    everything from a ``password=`` or ``ssl_password=`` query option on.
    """
    m = _SCHEME.match(url)
    start = m.end() if m else 0
    rest = _SECRET_PARAM.sub(r"\1***", url[start:])
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:***" if colon else "***") + rest[at:]
    return url[:start] + rest


def secrets_in(url: str) -> set[str]:
    """The password-like parts of ``url`` (those mask_url hides), as written and percent-decoded."""
    found = set()
    for option in _SECRET_PARAM.finditer(url):
        found |= {option.group(2), re.split("[&#]", option.group(2))[0]}  # as written; as redis-py reads it
    scheme = _SCHEME.match(url)
    rest = _SECRET_PARAM.sub("", url[scheme.end() if scheme else 0:])
    at = rest.rfind("@")
    if at >= 0:
        user, colon, password = rest[:at].partition(":")
        found.add(password if colon else user)
    found |= {unquote(s) for s in found}
    return {s for s in found if s}


def redact(text: str, url: str) -> str:
    """``text`` with the URL masked and any password of it replaced by ***: for error messages
    that might quote the URL or parts of it. Passwords shorter than 4 characters are left
    alone (replacing them would garble the text and protect little)."""
    text = text.replace(url, mask_url(url))
    for secret in sorted(secrets_in(url), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


_ENCODE = "percent-encode '@', ':', '/', '?' and '#' in user names and passwords"


def _check_url(url: str) -> None:
    """Refuse URLs whose host would be taken from a password typed without percent-encoding
    (redis://u:pa/ss@host: the host would be "pa", looked up in DNS) before redis-py's own
    messages quote parts of it."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ValueError(f"invalid Redis URL {mask_url(url)}: bad host or port ({_ENCODE})") from None
    if "@" in parts.path + parts.query + parts.fragment:
        raise ValueError(f"invalid Redis URL {mask_url(url)}: '@' after the host ({_ENCODE})")


def _unknown_options(client: redis.Redis) -> list[str]:
    """URL query options that redis-py would only reject (TypeError) at the first command."""
    pool = client.connection_pool
    known: set[str] = set()
    for cls in pool.connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            try:
                known |= set(inspect.signature(init).parameters)
            except (TypeError, ValueError):  # pragma: no cover - a builtin __init__
                continue
    return sorted(set(pool.connection_kwargs) - known)


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """For ``redis+cluster://host:port`` (or ``rediss+cluster://``), the plain URL of the node
    to discover the cluster from; None for any other URL."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}{sep}{rest}" if plain and sep else None


def connect(url: str, **kwargs: Any) -> Any:
    """A redis-py client for ``url`` (replies decoded), failing fast when nothing answers:
    ``redis.Redis``, or ``redis.cluster.RedisCluster`` for a ``redis+cluster://`` URL (any
    node of the cluster; the others are discovered).

    Raises ValueError, with the password masked, for a malformed URL or an option redis-py
    does not know (``rediss://host?ssl_ca_certs=ca.crt`` and the like are passed on).
    """
    node = cluster_url(url)
    _check_url(node or url)
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("decode_responses", True)
    if node is not None:
        try:
            return RedisCluster.from_url(node, **kwargs)
        except ValueError as e:
            raise ValueError(f"invalid Redis URL {mask_url(url)}: {redact(str(e), url)}") from None
        except RedisClusterException as e:  # no node answered, or not a cluster
            raise redis.ConnectionError(redact(str(e), url)) from None
    try:
        client = redis.Redis.from_url(url, **kwargs)
    except ValueError as e:
        raise ValueError(f"invalid Redis URL {mask_url(url)}: {redact(str(e), url)}") from None
    problem = _option_problem(client)
    if problem:
        client.close()
        raise ValueError(f"invalid Redis URL {mask_url(url)}: {problem}")
    return client


def _option_problem(client: redis.Redis) -> str:
    """What redis-py would only fail on at the first command (a TypeError, an OverflowError)."""
    unknown = _unknown_options(client)
    if unknown:
        return f"unknown option(s) {', '.join(unknown)}"
    options = client.connection_pool.connection_kwargs
    for name in ("socket_timeout", "socket_connect_timeout"):
        value = options.get(name)
        if value is not None and not (isinstance(value, (int, float)) and 0 < value <= MAX_TTL):
            return f"{name} must be a number of seconds > 0 and at most {MAX_TTL:g}"
    return ""


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING at ``url``."""
    try:
        _check_url(url)
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError, TypeError):
        return False
