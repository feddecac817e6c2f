"""Subscribing a client to a command: authorize, hold the channel, replay, go live."""

from __future__ import annotations

import structlog

from common.access import can_view_command
from common.command_store import CommandStore
from common.eventlog import AsyncEventLog
from realtime.connection import ClientConnection
from realtime.hub import Hub, Subscription
from realtime.relay import Relay

__all__ = ["RealtimeService"]

log = structlog.get_logger(__name__)


class RealtimeService:
    def __init__(self, hub: Hub, relay: Relay, events: AsyncEventLog, commands: CommandStore):
        self.hub = hub
        self.relay = relay
        self.events = events
        self.commands = commands

    async def can_view(self, connection: ClientConnection, command_id: str) -> bool:
        """The command exists and the connection's user may see it."""
        command = await self.commands.get(command_id)
        user = connection.user
        return command is not None and can_view_command(user.role, user.user_id, command)

    async def subscribe(self, connection: ClientConnection, command_id: str, since: int) -> None:
        """Deliver every event of ``command_id`` after ``since``, then live ones, exactly once.

        Order matters: register (live events are buffered), hold the channel until Redis
        confirms, then read the log; ``Hub.finish_replay`` merges the two. May raise
        ``RelayUnavailable``.
        """
        if command_id in connection.subscriptions:
            return
        subscription = Subscription(command_id=command_id, sink=connection.push, last_seq=since)
        self.hub.add(subscription)
        connection.subscriptions[command_id] = subscription
        try:
            await self.relay.acquire(command_id)
        except BaseException:
            self.hub.remove(subscription)
            connection.subscriptions.pop(command_id, None)
            raise
        await self.resync(subscription)

    async def resync(self, subscription: Subscription) -> None:
        """Read the log after the subscription's position and deliver it, then go live."""
        backlog = await self.events.read_since(subscription.command_id, subscription.last_seq)
        self.hub.finish_replay(subscription, [(e.seq, e.data) for e in backlog])

    async def unsubscribe(self, connection: ClientConnection, command_id: str) -> bool:
        subscription = connection.subscriptions.pop(command_id, None)
        if subscription is None:
            return False
        self.hub.remove(subscription)
        await self.relay.release(command_id)
        return True

    async def unsubscribe_all(self, connection: ClientConnection) -> None:
        for command_id in list(connection.subscriptions):
            await self.unsubscribe(connection, command_id)
