"""Commands and their responses in Redis, for the asyncio processes (api, realtime)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio

from common.commands import CommandRecord, CommandStatus
from common.events import Response
from common.keys import Fields, Keys
from common.lua import lua_script

__all__ = ["CommandStore"]

#: common/lua/cancel_request.lua
_CANCEL_SCRIPT = lua_script("cancel_request")


class CommandStore:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._cancel = _CANCEL_SCRIPT.register_async(client)

    async def create(self, command: CommandRecord) -> None:
        """Store the command and index it by time, user, vehicle, status and type."""
        score = command.submitted_at.timestamp()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.command(command.command_id),
                mapping=cast(Mapping[Any, Any], {**command.to_redis(), "submitted_ts": score}),
            )
            pipe.zadd(self._keys.commands, {command.command_id: score})
            pipe.zadd(self._keys.commands_by_user(command.user_id), {command.command_id: score})
            pipe.zadd(
                self._keys.commands_by_vehicle(command.vehicle_id), {command.command_id: score}
            )
            pipe.zadd(self._keys.commands_by_status(command.status), {command.command_id: score})
            pipe.zadd(
                self._keys.commands_by_type(command.command_name), {command.command_id: score}
            )
            await pipe.execute()

    async def request_cancel(self, command_id: str) -> bool:
        """Flag a running command for cancellation; False if it is not running."""
        args = [Fields.STATUS, CommandStatus.IN_PROGRESS.value, Fields.CANCEL_REQUESTED]
        return bool(await self._cancel(keys=[self._keys.command(command_id)], args=args))

    async def get(self, command_id: str) -> CommandRecord | None:
        fields = cast(dict[str, str], await self._client.hgetall(self._keys.command(command_id)))
        return CommandRecord.from_redis(fields) if fields else None

    async def list_commands(
        self,
        *,
        user_id: str | None = None,
        vehicle_id: str | None = None,
        status: CommandStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[CommandRecord], int]:
        """Newest first, filtered; returns ``(page, total matching)``."""
        if user_id is not None:
            index = self._keys.commands_by_user(user_id)
        elif vehicle_id is not None:
            index = self._keys.commands_by_vehicle(vehicle_id)
        else:
            index = self._keys.commands
        needs_filter = status is not None or (user_id is not None and vehicle_id is not None)
        if not needs_filter:
            total = await self._client.zcard(index)
            ids = cast(list[str], await self._client.zrevrange(index, offset, offset + limit - 1))
            return await self._load(ids), total
        # Filtered listing walks the index; fine for a fleet's command history per user/vehicle.
        ids = cast(list[str], await self._client.zrevrange(index, 0, -1))
        matching = [
            c
            for c in await self._load(ids)
            if (status is None or c.status == status)
            and (vehicle_id is None or c.vehicle_id == vehicle_id)
        ]
        return matching[offset : offset + limit], len(matching)

    async def _load(self, ids: list[str]) -> list[CommandRecord]:
        if not ids:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for command_id in ids:
                pipe.hgetall(self._keys.command(command_id))
            rows = await pipe.execute()
        return [CommandRecord.from_redis(r) for r in rows if r]

    async def responses(self, command_id: str) -> list[Response]:
        """The command's responses ordered by ``sequence_number``."""
        raw = cast(list[str], await self._client.hvals(self._keys.command_responses(command_id)))
        responses = [Response.model_validate_json(r) for r in raw]
        return sorted(responses, key=lambda r: r.sequence_number)
