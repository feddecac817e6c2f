"""Request and response bodies of the REST API (the shapes existing clients rely on)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from common.commands import COMMAND_TYPES, CommandRecord
from common.users import Role
from common.vehicles import ConnectionStatus

__all__ = [
    "MAX_OFFSET",
    "CommandCreate",
    "CommandPublic",
    "CommandSubmitted",
    "CommandsPublic",
    "HistoryBound",
    "LoginRequest",
    "LogoutRequest",
    "MePublic",
    "RefreshRequest",
    "TokenPair",
    "VehiclePublic",
    "VehicleStatusPublic",
    "day_end",
    "day_start",
]

#: Largest ``offset`` any list accepts: far past any history, far below Redis's int64.
MAX_OFFSET = 1_000_000_000

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_8601(value: object) -> object:
    """An ISO 8601 date or date and time; numbers (epoch seconds) are refused."""
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE.match(text):
                return date.fromisoformat(text)
            if _DATE_TIME.match(text):
                return datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not a valid ISO 8601 date or date and time ({exc})") from None
    raise ValueError("expected an ISO 8601 date (2026-01-31) or date and time (2026-01-31T12:00Z)")


#: A bound on a submission time: a date and time (no offset means UTC) or a whole day.
HistoryBound = Annotated[datetime | date, BeforeValidator(_iso_8601)]


def day_start(bound: datetime | date) -> datetime:
    """The first moment ``bound`` covers: itself, or a date's midnight (UTC)."""
    if isinstance(bound, datetime):
        return bound if bound.tzinfo else bound.replace(tzinfo=UTC)
    return datetime.combine(bound, time(), tzinfo=UTC)


def day_end(bound: datetime | date) -> datetime:
    """The last moment ``bound`` covers: itself, or a date's last microsecond (UTC)."""
    if isinstance(bound, datetime):
        return day_start(bound)
    return datetime.combine(bound, time.max, tzinfo=UTC)


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
    # The document lists the known names; an unknown one is still our precise 422.
    command_name: str = Field(
        min_length=1,
        max_length=64,
        examples=["ReadDTC"],
        json_schema_extra={"enum": cast(list[JsonValue], sorted(COMMAND_TYPES))},
    )
    command_params: dict[str, Any] = Field(default_factory=dict, examples=[{"ecuAddress": "0x10"}])


class CommandPublic(CommandRecord):
    """A command. ``started_at`` and ``request_id`` are additions to the original shape."""


class CommandSubmitted(CommandPublic):
    websocket_url: str = Field(description="Where the realtime process streams this command.")


class CommandsPublic(BaseModel):
    commands: list[CommandPublic]
    limit: int
    offset: int
    total: int = Field(description="Every command matching the filters.")
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page; null on the last page.",
    )
