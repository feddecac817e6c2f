"""What admitting a client reads from Redis, in two round trips instead of four.

A handshake needs the token's revocation mark, the user behind it and the command it
names. ``read_admission`` asks for the first, the user's name and the command in one
pipeline, then for the user's record; the caller decides (``RealtimeService.admit``).
A reconnect storm is thousands of these at once, and each redis-py round trip costs
the process more CPU than Redis spends answering it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis.asyncio

from common.commands import CommandRecord
from common.keys import Keys
from common.tokens import TokenClaims
from common.users import User

__all__ = ["AdmissionReads", "read_admission"]


@dataclass(frozen=True, slots=True)
class AdmissionReads:
    revoked: bool
    #: None when the user is unknown.
    user: User | None
    #: None when the command is unknown (or its id was not worth asking for).
    command: CommandRecord | None


async def read_admission(
    client: redis.asyncio.Redis, keys: Keys, claims: TokenClaims, command_id: str | None
) -> AdmissionReads:
    """The token's revocation, its user and ``command_id``'s record (when given)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(keys.revoked_access_token(claims.jti))
        pipe.get(keys.user_by_id(claims.sub))
        if command_id is not None:
            pipe.hgetall(keys.command(command_id))
        answers = await pipe.execute()
    revoked, username = bool(answers[0]), cast(str | None, answers[1])
    fields = cast(dict[str, str], answers[2]) if command_id is not None else {}
    command = CommandRecord.from_redis(fields) if fields else None
    user = None
    if username and not revoked:
        user_fields = cast(dict[str, str], await client.hgetall(keys.user(username)))
        user = User.from_redis(user_fields) if user_fields else None
    return AdmissionReads(revoked=revoked, user=user, command=command)
