"""Dramatiq middleware: per-message log context (command, request, actor)."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

__all__ = ["LogContext"]


class LogContext(dramatiq.Middleware):
    """Bind ``command_id``, ``request_id``, ``actor`` and ``message_id`` for the message's logs."""

    def before_process_message(self, broker: Any, message: Any) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            actor=message.actor_name,
            message_id=message.message_id,
            command_id=message.args[0] if message.args else None,
            request_id=message.kwargs.get("request_id"),
        )

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message
