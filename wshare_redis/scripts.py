"""Loads the Lua operations from lua/ and binds them to a Redis client.

Each script is lua/lib.lua followed by one operation file. The files ship inside the wheel
(as wshare_redis/lua); in an editable install or a source checkout they are read from the
top-level lua/ directory, so the one copy in the repository stays the source of truth.
"""
from __future__ import annotations

import weakref
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

OPERATIONS = ("acquire", "release", "renew", "wait", "cancel", "configure", "set_member",
              "remove_member", "status", "leases", "delete", "tick")


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
    """The full source of one operation: the shared helpers, then the operation itself."""
    if operation not in OPERATIONS:
        raise KeyError(operation)
    d = lua_dir()
    return (d / "lib.lua").read_text("utf-8") + "\n" + (d / f"{operation}.lua").read_text("utf-8")


class Scripts:
    """The operations registered on one client; ``scripts.acquire(keys, args)`` runs one.

    redis-py's ``Script`` sends EVALSHA and loads the script on NOSCRIPT (after a restart
    or SCRIPT FLUSH), so every call is one round trip in the steady state.
    """

    def __init__(self, client: Any) -> None:
        for op in OPERATIONS:
            setattr(self, op, client.register_script(source(op)))


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
