"""Loads the Lua operations from lua/ and binds them to a Redis client.

Each script is lua/lib.lua followed by one operation file. The files ship inside the wheel
(as wshare_redis/lua); in an editable install or a source checkout they are read from the
top-level lua/ directory, so the one copy in the repository stays the source of truth.
"""
from __future__ import annotations

import hashlib
import weakref
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from redis.exceptions import ResponseError

OPERATIONS = ("acquire", "release", "renew", "wait", "cancel", "configure", "set_member",
              "remove_member", "status", "leases", "lease", "delete", "tick")


def lua_dir() -> Path:
    """Where the Lua files are: inside the installed package, else the source checkout."""
    packaged = resources.files(__package__) / "lua"
    if packaged.is_dir() and (packaged / "lib.lua").is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "lua"
    if (checkout / "lib.lua").is_file():
        return checkout
    raise FileNotFoundError(f"wshare-redis Lua scripts not found in {packaged} nor {checkout}")


@lru_cache(maxsize=None)
def standalone(name: str) -> str:
    """A script that runs on its own, without lib.lua (the RQ-side scripts)."""
    return (lua_dir() / f"{name}.lua").read_text("utf-8")


@lru_cache(maxsize=None)
def source(operation: str) -> str:
    """One operation as an EVAL script: the shared helpers, bind(KEYS), the operation."""
    if operation not in OPERATIONS:
        raise KeyError(operation)
    d = lua_dir()
    return ((d / "lib.lua").read_text("utf-8") + "\nbind(KEYS)\n"
            + (d / f"{operation}.lua").read_text("utf-8"))


@lru_cache(maxsize=None)
def library() -> tuple[str, dict[str, str]]:
    """All operations as one Redis Functions library, named after a hash of its code so that
    versions can coexist on a server: (library code, {operation: function name})."""
    d = lua_dir()
    ops = {op: (d / f"{op}.lua").read_text("utf-8") for op in OPERATIONS}
    digest = hashlib.sha1(((d / "lib.lua").read_text("utf-8") + "".join(ops.values())).encode()).hexdigest()[:12]
    name = f"wshare_{digest}"
    names = {op: f"{name}_{op}" for op in OPERATIONS}
    code = [f"#!lua name={name}", (d / "lib.lua").read_text("utf-8")]
    for op, body in ops.items():
        code.append(f"redis.register_function('{names[op]}', function(KEYS, ARGV)\nbind(KEYS)\n{body}\nend)")
    return "\n".join(code) + "\n", names


class Scripts:
    """The operations on one client; ``scripts.call("acquire", keys, args)`` runs one.

    Redis 7+ (and fakeredis): one Functions library, loaded on first use and again if the
    server lost it (restart without persistence, FUNCTION FLUSH); each call is one FCALL
    that runs only its operation. Older servers: EVALSHA of per-operation scripts, which
    redis-py reloads on NOSCRIPT. Either way every call is one round trip.
    The EVAL scripts are also attributes (``scripts.acquire``) for pipelined bulk use.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.functions: Optional[bool] = None  # unknown until the first call
        self.code, self.names = library()
        for op in OPERATIONS:
            setattr(self, op, client.register_script(source(op)))

    def call(self, op: str, keys: list[str], args: tuple[Any, ...]) -> Any:
        if self.functions is not False:
            for attempt in (1, 2):
                try:
                    reply = self.client.fcall(self.names[op], len(keys), *keys, *args)
                    self.functions = True
                    return reply
                except ResponseError as e:
                    text = str(e).lower()
                    if "function not found" in text and attempt == 1:
                        self._load()
                        continue
                    if "unknown command" not in text:
                        raise
                    self.functions = False  # no Functions on this server: EVAL from now on
                    break
        return getattr(self, op)(keys=keys, args=args)

    def call_confirmed(self, op: str, keys: list[str], args: tuple[Any, ...], replicas: int,
                       timeout_ms: int) -> tuple[Any, int]:
        """Run an operation and then WAIT for ``replicas`` replicas on the same connection
        (one pipeline, one round trip): (reply, replicas that acknowledged the write)."""
        for attempt in (1, 2):
            pipe = node_client(self.client, keys[0]).pipeline(transaction=False)
            if self.functions is not False:
                pipe.fcall(self.names[op], len(keys), *keys, *args)
            else:
                getattr(self, op)(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
            if isinstance(acked, Exception):
                raise acked
            if isinstance(reply, ResponseError) and self.functions is not False:
                text = str(reply).lower()
                if "function not found" in text and attempt == 1:
                    self._load()
                    continue
                if "unknown command" in text:
                    self.functions = False
                    continue
            if isinstance(reply, Exception):
                raise reply
            if self.functions is None:
                self.functions = True
            return reply, int(acked)
        raise ResponseError(f"could not run {op}")  # pragma: no cover

    def _load(self) -> None:
        try:
            self.client.function_load(self.code)
        except ResponseError as e:
            if "already exists" not in str(e).lower():
                raise


def node_client(client: Any, key: str) -> Any:
    """The client to pipeline commands about ``key`` with a keyless command such as WAIT: on
    Redis Cluster the plain client of the node serving the key, else ``client`` itself."""
    get_node = getattr(client, "get_node_from_key", None)
    if get_node is None:
        return client
    return client.get_redis_connection(get_node(key))


_by_client: "weakref.WeakKeyDictionary[Any, Scripts]" = weakref.WeakKeyDictionary()


def scripts_for(client: Any) -> Scripts:
    """The Scripts of ``client``, registered once per client object (no I/O)."""
    try:
        found = _by_client.get(client)
    except TypeError:  # a client that cannot be weakly referenced
        return Scripts(client)
    if found is None:
        found = _by_client[client] = Scripts(client)
    return found
