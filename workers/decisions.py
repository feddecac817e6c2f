"""What a worker decides about a command, as plain functions of what it read (no I/O).

``preflight`` says whether a delivered command runs or ends before any exchange,
``retry_plan`` whether a failed attempt is tried again, and ``ERROR_OUTCOMES`` maps each
connector error to the terminal status and error code it ends with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dramatiq.common import compute_backoff

from common.commands import TERMINAL_STATUSES, CommandRecord, CommandStatus
from common.policy import CommandPolicy
from workers.connector import (
    ConnectorError,
    ExchangeCancelled,
    ExchangeTimeout,
    NegativeResponse,
)

__all__ = [
    "ERROR_OUTCOMES",
    "Finish",
    "Retry",
    "Run",
    "Skip",
    "outcome_of",
    "preflight",
    "retry_plan",
]


@dataclass(frozen=True, slots=True)
class Run:
    """Execute the command now."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to do: no such command, or it already ended (``status``)."""

    status: CommandStatus | None


@dataclass(frozen=True, slots=True)
class Finish:
    """End the command without an exchange."""

    status: CommandStatus
    message: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``delay_ms`` (at ``retry_at``)."""

    delay_ms: int
    retry_at: datetime


def preflight(
    command: CommandRecord | None,
    *,
    actor_command: str,
    vehicle_exists: bool,
    now: datetime,
    vehicle_connected: bool = True,
) -> Run | Skip | Finish:
    """Decide what a delivery of ``command`` to the ``actor_command`` actor does."""
    if command is None:
        return Skip(None)
    if command.status in TERMINAL_STATUSES:
        return Skip(command.status)
    if command.command_name != actor_command:
        message = f"Command type {command.command_name} sent to the {actor_command} actor"
        return Finish(CommandStatus.FAILED, message, "internal_error")
    if command.cancel_requested:
        return Finish(CommandStatus.CANCELLED)
    if command.deadline_at is not None and now >= command.deadline_at:
        message = "The command was not executed before its deadline"
        return Finish(CommandStatus.TIMEOUT, message, "deadline_exceeded")
    if not vehicle_exists:
        message = f"Vehicle {command.vehicle_id} no longer exists"
        return Finish(CommandStatus.FAILED, message, "vehicle_not_found")
    if not vehicle_connected:
        message = f"Vehicle {command.vehicle_id} is offline; the command was ended"
        return Finish(CommandStatus.FAILED, message, "vehicle_offline")
    return Run()


#: Connector error -> the terminal status it ends the command with (most specific first);
#: the error code is the exception's ``code``.
ERROR_OUTCOMES: tuple[tuple[type[ConnectorError], CommandStatus], ...] = (
    (ExchangeCancelled, CommandStatus.CANCELLED),
    (ExchangeTimeout, CommandStatus.TIMEOUT),
    (NegativeResponse, CommandStatus.FAILED),
    (ConnectorError, CommandStatus.FAILED),
)


def outcome_of(exc: ConnectorError) -> Finish:
    """The terminal status, message and code a connector error ends the command with."""
    for kind, status in ERROR_OUTCOMES:
        if isinstance(exc, kind):
            if status == CommandStatus.CANCELLED:
                return Finish(status)
            return Finish(status, exc.message, exc.code)
    raise AssertionError("ConnectorError is the last row")  # pragma: no cover


def retry_plan(
    exc: ConnectorError,
    policy: CommandPolicy,
    *,
    retries: int,
    deadline_at: datetime | None,
    now: datetime,
) -> Retry | None:
    """Another attempt after a failed one, if the error, the policy and the deadline allow.

    ``retries`` is how many retries already happened (Dramatiq's count): the back-off is
    Dramatiq's exponential one from the policy's ``min_backoff_ms`` to ``max_backoff_ms``.
    """
    if not (exc.transient and policy.retry_safe and retries < policy.max_retries):
        return None
    _, delay_ms = compute_backoff(
        retries, factor=max(policy.min_backoff_ms, 1), max_backoff=policy.max_backoff_ms
    )
    delay_ms = max(delay_ms, policy.min_backoff_ms)
    retry_at = now + timedelta(milliseconds=delay_ms)
    if deadline_at is not None and retry_at >= deadline_at:
        return None
    return Retry(delay_ms, retry_at)
