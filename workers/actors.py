"""One Dramatiq actor per command type, each on its policy's queue with its options."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from common.broker import TIME_LIMIT_MARGIN_MS
from common.commands import COMMAND_TYPES, CommandType
from workers.executor import execute_command
from workers.runtime import Runtime

__all__ = ["declare_actors"]


def _actor_fn(command_type: CommandType, runtime: Runtime) -> Any:
    def run(command_id: str, request_id: str | None = None, vehicle_id: str | None = None) -> None:
        message = CurrentMessage.get_current_message()
        retries = int(message.options.get("retries", 0)) if message is not None else 0
        execute_command(
            runtime,
            command_id,
            command_name=command_type.name,
            retries=retries,
            vehicle_id=vehicle_id,
        )

    run.__name__ = command_type.actor_name
    run.__qualname__ = command_type.actor_name
    return run


def declare_actors(
    broker: dramatiq.Broker, runtime: Runtime
) -> dict[str, dramatiq.Actor[Any, None]]:
    """Declare every command type's actor on ``broker``; keyed by command name.

    The broker needs the ``CurrentMessage`` middleware (the retry count comes from it).
    """
    actors = {}
    for command_type in COMMAND_TYPES.values():
        policy = runtime.policies[command_type.name]
        actors[command_type.name] = dramatiq.actor(
            actor_name=command_type.actor_name,
            queue_name=policy.queue_name,
            priority=policy.priority,
            broker=broker,
            max_retries=policy.max_retries,
            min_backoff=policy.min_backoff_ms,
            max_backoff=policy.max_backoff_ms,
            max_age=policy.max_age_ms,
            time_limit=policy.time_limit_ms + TIME_LIMIT_MARGIN_MS,
        )(_actor_fn(command_type, runtime))
    return actors
