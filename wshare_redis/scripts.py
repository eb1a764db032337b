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
from typing import Any, Optional, TypeVar

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


class _Library:
    """What the sync and the asyncio script runners share: the library and its names, what
    the server was found to support, and what to do about an error reply to FCALL."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.functions: Optional[bool] = None  # unknown until the first call
        self.code, self.names = library()
        for op in OPERATIONS:  # EVAL scripts, for servers without Functions and for pipelines
            setattr(self, op, client.register_script(source(op)))

    def _recovery(self, error: Exception, attempt: int) -> str:
        """After an error reply to FCALL: "load" the library and try again (the server lost
        it: restart without persistence, FUNCTION FLUSH), "eval" (no Functions on this server:
        EVAL scripts from now on) or "raise"."""
        text = str(error).lower()
        if "function not found" in text and attempt == 1:
            return "load"
        if "unknown command" in text:
            self.functions = False
            return "eval"
        return "raise"

    def _settle(self, reply: Any, acked: Any, attempt: int) -> str:
        """What to do with the (script reply, WAIT reply) of a confirmed call: "done", or
        "load" the library / "retry" after the script's error reply (see _recovery). Raises
        the error replies there is nothing to do about."""
        if isinstance(acked, Exception):
            raise acked
        if isinstance(reply, ResponseError) and self.functions is not False:
            action = self._recovery(reply, attempt)
            if action == "load":
                return "load"
            if action != "raise":
                return "retry"
        if isinstance(reply, Exception):
            raise reply
        if self.functions is None:
            self.functions = True
        return "done"

    def _command(self, op: str, keys: list[str], args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The raw command running ``op``, for pipelines of raw commands."""
        if self.functions is False:
            return ("EVAL", source(op), len(keys), *keys, *args)
        return ("FCALL", self.names[op], len(keys), *keys, *args)


class Scripts(_Library):
    """The operations on one client; ``scripts.call("acquire", keys, args)`` runs one.

    Redis 7+ (and fakeredis): one Functions library, loaded on first use and again if the
    server lost it (restart without persistence, FUNCTION FLUSH); each call is one FCALL
    that runs only its operation. Older servers: EVALSHA of per-operation scripts, which
    redis-py reloads on NOSCRIPT. Either way every call is one round trip.
    The EVAL scripts are also attributes (``scripts.acquire``) for pipelined bulk use.
    """

    def call(self, op: str, keys: list[str], args: tuple[Any, ...]) -> Any:
        for attempt in (1, 2):
            if self.functions is False:
                break
            try:
                reply = self.client.fcall(self.names[op], len(keys), *keys, *args)
                self.functions = True
                return reply
            except ResponseError as e:
                action = self._recovery(e, attempt)
                if action == "raise":
                    raise
                if action == "load":
                    self._load()
        return getattr(self, op)(keys=keys, args=args)

    def call_confirmed(self, op: str, keys: list[str], args: tuple[Any, ...], replicas: int,
                       timeout_ms: int) -> tuple[Any, int]:
        """Run an operation and then WAIT for ``replicas`` replicas on the same connection
        (one pipeline, one round trip): (reply, replicas that acknowledged the write)."""
        for attempt in (1, 2, 3):
            pipe = node_client(self.client, keys[0]).pipeline(transaction=False)
            if self.functions is not False:
                pipe.fcall(self.names[op], len(keys), *keys, *args)
            else:
                getattr(self, op)(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
            step = self._settle(reply, acked, attempt)
            if step == "load":
                self._load()
            if step == "done":
                return reply, int(acked)
        raise ResponseError(f"could not run {op}")  # pragma: no cover

    def _load(self) -> None:
        try:
            self.client.function_load(self.code)
        except ResponseError as e:
            if "already exists" not in str(e).lower():
                raise


class AsyncScripts(_Library):
    """``Scripts`` for a ``redis.asyncio`` client (Redis or RedisCluster): the same library,
    names and recovery, awaited."""

    async def call(self, op: str, keys: list[str], args: tuple[Any, ...]) -> Any:
        for attempt in (1, 2):
            if self.functions is False:
                break
            try:
                reply = await self.client.fcall(self.names[op], len(keys), *keys, *args)
                self.functions = True
                return reply
            except ResponseError as e:
                action = self._recovery(e, attempt)
                if action == "raise":
                    raise
                if action == "load":
                    await self._load()
        return await getattr(self, op)(keys=keys, args=args)

    async def call_confirmed(self, op: str, keys: list[str], args: tuple[Any, ...], replicas: int,
                             timeout_ms: int) -> tuple[Any, int]:
        """``Scripts.call_confirmed``, awaited (the EVAL fallback sends the script's source)."""
        for attempt in (1, 2, 3):
            reply, acked = await node_pipeline(self.client, keys[0], [self._command(op, keys, args),
                                                                     ("WAIT", replicas, timeout_ms)])
            step = self._settle(reply, acked, attempt)
            if step == "load":
                await self._load()
            if step == "done":
                return reply, int(acked)
        raise ResponseError(f"could not run {op}")  # pragma: no cover

    async def _load(self) -> None:
        try:
            await self.client.function_load(self.code)
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


async def node_pipeline(client: Any, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Run raw commands in order on one connection to the node serving ``key`` (one round
    trip; a keyless command such as WAIT then applies to the same connection): their
    results, error replies as exceptions in place. ``client`` is a redis.asyncio client."""
    get_node = getattr(client, "get_node_from_key", None)
    if get_node is None:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))
    from redis.asyncio.cluster import PipelineCommand  # only for RedisCluster
    queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
    await get_node(key).execute_pipeline(queued)
    return [c.result for c in queued]


_by_client: "weakref.WeakKeyDictionary[Any, Scripts]" = weakref.WeakKeyDictionary()
_by_async_client: "weakref.WeakKeyDictionary[Any, AsyncScripts]" = weakref.WeakKeyDictionary()


def scripts_for(client: Any) -> Scripts:
    """The Scripts of ``client``, registered once per client object (no I/O)."""
    return _registered(_by_client, Scripts, client)


def async_scripts_for(client: Any) -> AsyncScripts:
    """The AsyncScripts of a redis.asyncio ``client``, registered once per client object."""
    return _registered(_by_async_client, AsyncScripts, client)


S = TypeVar("S", bound=_Library)


def _registered(registry: "weakref.WeakKeyDictionary[Any, S]", kind: type[S], client: Any) -> S:
    try:
        found = registry.get(client)
    except TypeError:  # a client that cannot be weakly referenced
        return kind(client)
    if found is None:
        found = registry[client] = kind(client)
    return found
