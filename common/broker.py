"""The Dramatiq Redis broker and the message for a command, shared by api and workers.

The api sends messages by actor and queue name (from ``COMMAND_TYPES``); it never
imports actor code.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from common.commands import CommandType
from common.keys import Keys
from common.settings import Settings

__all__ = ["build_broker", "command_message"]


def build_broker(settings: Settings) -> RedisBroker:
    """A Redis broker for ``settings``, with Dramatiq's default middleware."""
    return RedisBroker(  # type: ignore[no-untyped-call] # unannotated in dramatiq
        url=settings.effective_redis_url,
        namespace=Keys(settings.key_prefix).broker_namespace,
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
    )


def command_message(
    command_type: CommandType, command_id: str, *, request_id: str | None
) -> dramatiq.Message[None]:
    """The message that asks the command type's actor to execute ``command_id``."""
    return dramatiq.Message(
        queue_name=command_type.queue_name,
        actor_name=command_type.actor_name,
        args=(command_id,),
        kwargs={"request_id": request_id},
        options={},
    )
