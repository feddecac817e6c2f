"""One Dramatiq actor per command type, each on its own queue with its own options."""

from __future__ import annotations

from typing import Any

import dramatiq

from common.commands import COMMAND_TYPES, CommandType
from workers import runtime
from workers.executor import execute_command

__all__ = ["declare_actors"]


def _actor_fn(command_type: CommandType) -> Any:
    def run(command_id: str, request_id: str | None = None) -> None:
        execute_command(runtime.current(), command_id, command_name=command_type.name)

    run.__name__ = command_type.actor_name
    run.__qualname__ = command_type.actor_name
    return run


def declare_actors(broker: dramatiq.Broker) -> dict[str, dramatiq.Actor[Any, None]]:
    """Declare every command type's actor on ``broker``; keyed by command name."""
    return {
        command_type.name: dramatiq.actor(
            actor_name=command_type.actor_name,
            queue_name=command_type.queue_name,
            broker=broker,
            max_retries=command_type.max_retries,
            time_limit=command_type.time_limit_ms,
        )(_actor_fn(command_type))
        for command_type in COMMAND_TYPES.values()
    }
