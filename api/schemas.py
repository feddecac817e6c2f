"""Request and response bodies of the REST API (the shapes existing clients rely on)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.commands import CommandRecord
from common.users import Role
from common.vehicles import ConnectionStatus

__all__ = [
    "CommandCreate",
    "CommandPublic",
    "CommandSubmitted",
    "CommandsPublic",
    "LoginRequest",
    "LogoutRequest",
    "MePublic",
    "RefreshRequest",
    "TokenPair",
    "VehiclePublic",
    "VehicleStatusPublic",
]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class MePublic(BaseModel):
    user_id: str
    username: str
    role: Role
    email: str | None


class VehiclePublic(BaseModel):
    vehicle_id: str
    vin: str
    make: str
    model: str
    year: int
    connection_status: ConnectionStatus
    last_seen_at: datetime | None
    metadata: dict[str, Any]


class VehicleStatusPublic(BaseModel):
    connection_status: ConnectionStatus
    last_seen_at: datetime | None
    health: dict[str, Any]


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vehicle_id: uuid.UUID
    command_name: str = Field(min_length=1, max_length=64, examples=["ReadDTC"])
    command_params: dict[str, Any] = Field(default_factory=dict, examples=[{"ecuAddress": "0x10"}])


class CommandPublic(CommandRecord):
    """A command. ``started_at`` and ``request_id`` are additions to the original shape."""


class CommandSubmitted(CommandPublic):
    websocket_url: str = Field(description="Where the realtime process streams this command.")


class CommandsPublic(BaseModel):
    commands: list[CommandPublic]
    limit: int
    offset: int
    total: int
