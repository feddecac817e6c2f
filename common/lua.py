"""The Redis Lua scripts (``common/lua/*.lua``), read once and registered on a client.

Each script opens with a header naming every ``KEYS`` and ``ARGV`` slot and reads them
into named locals. A registered script runs by ``EVALSHA`` and loads itself when the
server does not know it (after a restart). Scripts are called on their own, never
queued on a pipeline: there redis-py checks ``SCRIPT EXISTS`` before every pipeline
(one more round trip), or the source travels with every call, and a ``NOSCRIPT``
inside a transaction leaves the other commands applied without it. What a pipeline
would add goes into the script instead.

A line ``--#include NAME`` is replaced by ``common/lua/lib/NAME.lua``: Lua helpers that
more than one script needs (the audit append) are written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

__all__ = ["LuaScript", "lua_script"]

SCRIPTS_DIR = Path(__file__).with_name("lua")
LIB_DIR = SCRIPTS_DIR / "lib"
_INCLUDE = re.compile(r"^--#include ([a-z_]+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script's name and source."""

    name: str
    source: str

    def register(self, client: redis.Redis) -> Any:
        """A callable ``(keys=[...], args=[...])`` for a synchronous client."""
        return client.register_script(self.source)

    def register_async(self, client: redis.asyncio.Redis) -> Any:
        """A callable ``await script(keys=[...], args=[...])`` for an asyncio client."""
        return client.register_script(self.source)


@cache
def lua_script(name: str) -> LuaScript:
    """The script ``common/lua/<name>.lua``."""
    source = (SCRIPTS_DIR / f"{name}.lua").read_text()
    return LuaScript(name, _INCLUDE.sub(lambda m: _library(m.group(1)).rstrip("\n"), source))


def _library(name: str) -> str:
    return (LIB_DIR / f"{name}.lua").read_text()
