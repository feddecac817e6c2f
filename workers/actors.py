"""One Dramatiq actor per command type, each on its policy's queue.

Each retry and time-limit option has one source, the command type's policy:

- whether and when to retry: ``workers.decisions.retry_plan`` alone (the policy's
  ``max_retries`` and back-off, bounded by the command's deadline); the executor raises
  ``dramatiq.Retry`` with the delay, and the actor's ``retry_when`` lets Dramatiq retry
  only that (and a Redis outage that outlasted the client's own retries);
- the time limit: the policy's ``time_limit_ms`` is the connector's deadline; Dramatiq's
  own time limit, derived from it here, is only a backstop;
- the age limit: the command's ``deadline_at`` (the api sets it from ``max_age_ms``),
  enforced by the executor's pre-flight and the deadline sweeper with a terminal status,
  so Dramatiq's own age limit is not used.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage

from common.commands import COMMAND_TYPES, CommandType
from common.policy import CommandPolicy
from workers.executor import execute_command
from workers.runtime import Runtime

__all__ = ["REDIS_OUTAGE_RETRIES", "declare_actors", "dramatiq_time_limit_ms", "retry_when"]

#: Dramatiq's time limit is a backstop: the connector's own deadline (the policy's
#: time limit) ends a stuck exchange first and records ``timeout``.
TIME_LIMIT_MARGIN_MS = 5_000
#: Deliveries after one whose Redis writes failed beyond the client's own retries (a
#: Redis outage, not a command failure): the command may still finish once Redis is back.
REDIS_OUTAGE_RETRIES = 3


def dramatiq_time_limit_ms(policy: CommandPolicy) -> int:
    """Dramatiq's time limit for the type: its policy's, plus the backstop margin."""
    return policy.time_limit_ms + TIME_LIMIT_MARGIN_MS


def retry_when(retries: int, exception: BaseException) -> bool:
    """Dramatiq's retry decision: the executor's planned retries, and Redis outages."""
    if isinstance(exception, dramatiq.Retry):
        return True
    return isinstance(exception, redis.ConnectionError | redis.TimeoutError) and (
        retries < REDIS_OUTAGE_RETRIES
    )


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
            retry_when=retry_when,
            time_limit=dramatiq_time_limit_ms(policy),
        )(_actor_fn(command_type, runtime))
    return actors
