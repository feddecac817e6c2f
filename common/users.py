"""Users and roles, kept in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, cast

import redis.asyncio
from pydantic import BaseModel, ConfigDict

from common.auth_events import AuthEvent
from common.keys import Keys
from common.passwords import hash_password

__all__ = ["Role", "User", "UserStore"]


class Role(StrEnum):
    VIEWER = "viewer"
    ENGINEER = "engineer"
    ADMIN = "admin"


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    username: str
    role: Role
    email: str | None = None
    active: bool = True
    password_hash: str

    def to_redis(self) -> dict[str, str]:
        data = self.model_dump(mode="json", exclude_none=True)
        data["active"] = "1" if self.active else "0"
        return {k: str(v) for k, v in data.items()}

    @classmethod
    def from_redis(cls, fields: dict[str, str]) -> User:
        data: dict[str, Any] = dict(fields)
        data["active"] = fields.get("active", "1") == "1"
        return cls.model_validate(data)


class UserExistsError(Exception):
    pass


class UserStore:
    """Reads and writes users; usernames are unique and case-sensitive."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def get_by_username(self, username: str) -> User | None:
        fields = cast(dict[str, str], await self._client.hgetall(self._keys.user(username)))
        return User.from_redis(fields) if fields else None

    async def get_by_id(self, user_id: str) -> User | None:
        username = cast(str | None, await self._client.get(self._keys.user_by_id(user_id)))
        return await self.get_by_username(username) if username else None

    async def create(
        self,
        *,
        username: str,
        password: str,
        role: Role,
        email: str | None = None,
        active: bool = True,
        replace: bool = False,
    ) -> User:
        """Create a user (or, with ``replace``, reset an existing one keeping its id)."""
        existing = await self.get_by_username(username)
        if existing and not replace:
            raise UserExistsError(username)
        user = User(
            user_id=existing.user_id if existing else str(uuid.uuid4()),
            username=username,
            role=role,
            email=email,
            active=active,
            password_hash=hash_password(password),
        )
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.user(username))
            pipe.hset(self._keys.user(username), mapping=cast(Mapping[Any, Any], user.to_redis()))
            pipe.set(self._keys.user_by_id(user.user_id), username)
            await pipe.execute()
        return user

    async def set_active(self, username: str, active: bool) -> User | None:
        """Enable or disable a user; a deactivation is pushed to every process
        (``common.auth_events``). Returns the user, or None when unknown."""
        user = await self.get_by_username(username)
        if user is None:
            return None
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.user(username), "active", "1" if active else "0")
            if not active:
                event = AuthEvent(kind="user_deactivated", user_id=user.user_id)
                pipe.publish(self._keys.auth_events, event.model_dump_json(exclude_none=True))
            await pipe.execute()
        return user.model_copy(update={"active": active})
