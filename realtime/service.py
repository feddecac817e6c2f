"""The realtime process's state and rules: connections, subscriptions, replay, recovery.

Transports (``realtime.websocket``, ``realtime.sse``) authenticate and authorize
through here, open a ``Connection``, subscribe it to commands and close it; the
relay calls ``resync`` when a subscription must re-read the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import redis.asyncio
import structlog
from redis.exceptions import RedisError

from common.access import can_view_command
from common.audit import AsyncAuditLog, AuditAction
from common.auth import authenticate_access_token
from common.command_store import CommandStore
from common.errors import AuthError
from common.eventlog import AsyncEventLog
from common.events import ProtocolErrorEvent, TokenRefreshedEvent, WelcomeEvent
from common.keys import Keys
from common.settings import Settings
from common.timeutil import isoformat
from common.tokens import TokenClaims
from common.users import User
from realtime.close_codes import CloseCode
from realtime.connection import Connection, Transport
from realtime.hub import Hub, Subscription
from realtime.lifetime import Refresh, TokenLifetime
from realtime.limits import ConnectionCounter
from realtime.metrics import LiveValues, RealtimeMetrics
from realtime.outbox import Outbox
from realtime.recovery import Recovery, decide_recovery
from realtime.relay import Relay, RelayUnavailable

__all__ = [
    "CannotRecover",
    "PositionAhead",
    "RealtimeService",
    "TooManyConnections",
    "cannot_recover_event",
    "protocol_error",
]

log = structlog.get_logger(__name__)

#: Events read from the log per round trip during a replay.
REPLAY_PAGE = 200


class CannotRecover(Exception):
    """Events after the client's position are gone from the log."""

    def __init__(self, command_id: str, last_seq: int) -> None:
        super().__init__(command_id)
        self.command_id = command_id
        self.last_seq = last_seq


class PositionAhead(Exception):
    """The client's ``since`` is past the command's last event."""


class TooManyConnections(Exception):
    """The user already has the most connections this process allows."""


def cannot_recover_event(command_id: str, last_seq: int) -> str:
    return ProtocolErrorEvent(
        command_id=command_id,
        error_code="cannot_recover",
        error_message="Events after since are no longer kept: fetch the command over REST",
        last_seq=last_seq,
    ).model_dump_json(exclude_none=True)


class RealtimeService:
    def __init__(
        self,
        settings: Settings,
        client: redis.asyncio.Redis,
        hub: Hub,
        relay: Relay,
        metrics: RealtimeMetrics,
    ) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.client = client
        self.hub = hub
        self.relay = relay
        self.metrics = metrics
        self.events = AsyncEventLog(
            client, self.keys, maxlen=settings.event_log_maxlen, ttl_s=settings.event_log_ttl_s
        )
        self.commands = CommandStore(client, self.keys)
        self.audit = AsyncAuditLog(client, self.keys, settings)
        self.connections: dict[str, Connection] = {}
        self.per_user = ConnectionCounter(settings.ws_max_connections_per_user)
        self.closing = False
        #: The fullest any closed connection's queue ever was (events, bytes).
        self.peak_queued_events = 0
        self.peak_queued_bytes = 0
        self._empty = asyncio.Event()
        self._empty.set()
        metrics.watch(self.live_values)

    # -- who may connect ------------------------------------------------------------------

    async def authenticate(self, token: str) -> tuple[User, TokenClaims]:
        """The active user behind ``token``; raises ``AuthError`` (or a Redis error)."""
        try:
            return await authenticate_access_token(self.settings, self.client, self.keys, token)
        except AuthError as exc:
            await self.audit.record(
                AuditAction.SUBSCRIPTION_REFUSED, outcome="denied", details={"reason": exc.message}
            )
            raise

    async def can_view(self, user: User, command_id: str) -> bool:
        """The command exists and ``user`` may see it (a refusal goes to the audit trail)."""
        command = await self.commands.get(command_id)
        visible = command is not None and can_view_command(user.role, user.user_id, command)
        if not visible:
            await self.audit.record(
                AuditAction.SUBSCRIPTION_REFUSED,
                outcome="denied",
                user_id=user.user_id,
                username=user.username,
                command_id=command_id[:64],
                details={"reason": "command not found or not visible"},
            )
        return visible

    def open_connection(
        self, user: User, claims: TokenClaims, *, transport: Transport, command_id: str
    ) -> Connection:
        """Register a connection for ``user``; raises ``TooManyConnections`` at the limit."""
        if not self.per_user.acquire(user.user_id):
            raise TooManyConnections(user.user_id)
        settings = self.settings
        connection = Connection(
            user,
            TokenLifetime(
                user.user_id, claims.expires_at.timestamp(), grace_s=settings.ws_token_grace_s
            ),
            Outbox(max_events=settings.ws_queue_max_events, max_bytes=settings.ws_queue_max_bytes),
            transport=transport,
            primary_command_id=command_id,
            on_slow=lambda _c: self.metrics.slow_consumer_closes.inc(),
        )
        self.connections[connection.connection_id] = connection
        self._empty.clear()
        self.metrics.connections_opened.labels(transport).inc()
        connection.push(
            WelcomeEvent(
                connection_id=connection.connection_id, expires_at=isoformat(claims.expires_at)
            ).model_dump_json()
        )
        return connection

    def close_connection(self, connection: Connection) -> None:
        """Forget the connection: unsubscribe everything, release its place."""
        if self.connections.pop(connection.connection_id, None) is None:
            return
        self.per_user.release(connection.user.user_id)
        self.peak_queued_events = max(self.peak_queued_events, connection.outbox.peak_events)
        self.peak_queued_bytes = max(self.peak_queued_bytes, connection.outbox.peak_bytes)
        if not self.connections:
            self._empty.set()
        self.unsubscribe_all(connection)

    def record_close(self, code: int) -> None:
        self.metrics.closes.labels(str(code)).inc()

    async def refresh(self, connection: Connection, token: str) -> str:
        """Adopt a new token for the connection; returns the answer event's JSON."""
        try:
            user, claims = await self.authenticate(token)
        except AuthError as exc:
            return protocol_error("invalid_token", f"Refresh refused: {exc.message}")
        verdict = connection.lifetime.refresh(user.user_id, claims.expires_at.timestamp())
        if verdict is Refresh.OTHER_USER:
            return protocol_error("invalid_token", "Refresh refused: the token is for another user")
        connection.lifetime_changed.set()
        return TokenRefreshedEvent(expires_at=isoformat(claims.expires_at)).model_dump_json()

    # -- subscriptions --------------------------------------------------------------------

    async def subscribe(self, connection: Connection, command_id: str, since: int) -> None:
        """Deliver every event of ``command_id`` after ``since``, then live ones, exactly once.

        Order matters: register (live events are buffered), hold the channel until Redis
        confirms, then read the log; ``Hub.finish_replay`` merges the two. Raises
        ``RelayUnavailable``, ``CannotRecover`` or ``PositionAhead`` (nothing held then),
        or a Redis error.
        """
        if command_id in connection.subscriptions:
            return
        subscription = Subscription(
            command_id=command_id,
            sink=connection.push,
            last_seq=since,
            connection_id=connection.connection_id,
        )
        self.hub.add(subscription)
        connection.subscriptions[command_id] = subscription
        verdict, last_seq, kept = Recovery.OK, 0, False
        try:
            subscription.hold = await self.relay.acquire(command_id)
            verdict, last_seq = await self._replay(subscription)
            kept = verdict is Recovery.OK and _following(connection, subscription)
        finally:
            # Whatever ended it (a refusal, a failure, a cancellation, the client leaving
            # while it waited), a subscription that is not kept gives its hold back now.
            if not kept:
                self._drop(connection, subscription)
        if verdict is Recovery.AHEAD:
            raise PositionAhead(command_id)
        if verdict is not Recovery.OK:
            raise CannotRecover(command_id, last_seq)

    async def follow(self, connection: Connection, command_id: str, since: int) -> None:
        """``subscribe``, with every failure turned into an error event or a close request."""
        try:
            await self.subscribe(connection, command_id, since)
            log.info("subscribed", command_id=command_id, since=since)
        except RelayUnavailable:
            connection.request_close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")
        except CannotRecover as exc:
            await self.lost(connection, command_id, exc.last_seq)
        except PositionAhead:
            if command_id == connection.primary_command_id:
                connection.request_close(
                    CloseCode.POLICY_VIOLATION, "since is beyond the command's last event"
                )
            else:
                connection.push(
                    protocol_error(
                        "invalid_message", "since is beyond the command's last event", command_id
                    )
                )
        except RedisError:
            connection.request_close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")
        except Exception:
            log.exception("subscribe_failed", command_id=command_id)
            connection.request_close(CloseCode.INTERNAL_ERROR, "Internal error")

    async def check_position(self, command_id: str, since: int) -> None:
        """Raise ``CannotRecover`` or ``PositionAhead`` now if ``since`` cannot be resumed
        (a transport that must answer before it streams); ``subscribe`` checks again."""
        last_seq = await self._last_seq(command_id)
        first = await self._read_log(command_id, since, count=1)
        first_available = first[0][0] if first else None
        verdict = decide_recovery(since=since, last_seq=last_seq, first_available=first_available)
        if verdict is Recovery.AHEAD:
            raise PositionAhead(command_id)
        if verdict is Recovery.LOST:
            raise CannotRecover(command_id, last_seq)

    async def _last_seq(self, command_id: str) -> int:
        raw = await self.client.hget(self.keys.command(command_id), "event_seq")
        return int(cast(str, raw)) if raw else 0

    async def resync(self, subscription: Subscription) -> None:
        """Re-read the log after the subscription's position (after a gap or an outage)."""
        connection = self.connections.get(subscription.connection_id)
        try:
            verdict, last_seq = await self._replay(subscription)
        except RedisError as exc:
            log.warning("resync_failed", command_id=subscription.command_id, error=str(exc))
            if connection is not None:
                connection.request_close(CloseCode.TRY_AGAIN_LATER, "Event stream unavailable")
            return
        if verdict is Recovery.OK or connection is None:
            return
        log.info("resync_cannot_recover", command_id=subscription.command_id)
        await self.lost(connection, subscription.command_id, last_seq)

    async def lost(self, connection: Connection, command_id: str, last_seq: int) -> None:
        """Tell the client a command's events are gone; its URL command closes it (4410)."""
        connection.push(cannot_recover_event(command_id, last_seq))
        if command_id == connection.primary_command_id:
            connection.request_close(
                CloseCode.CANNOT_RECOVER, "Cannot recover: fetch state over REST", drain=True
            )
        else:
            self.unsubscribe(connection, command_id)

    async def _replay(self, subscription: Subscription) -> tuple[Recovery, int]:
        """Bring the subscription up to date from the log, then switch it to live events.

        The log is read in pages, each delivered as the client makes room for it; then
        the live events buffered meanwhile. A live buffer that overflowed during this
        (``truncated``) only means one more read of the log.
        """
        command_id = subscription.command_id
        connection = self.connections.get(subscription.connection_id)
        last_seq = await self._last_seq(command_id)  # first, the log second: see recovery.py
        since = subscription.last_seq
        while connection is not None and _following(connection, subscription):
            subscription.truncated = False
            if subscription.last_seq > since:  # delivered events are positions that exist
                last_seq = max(last_seq, subscription.last_seq)
            page = await self._read_log(command_id, subscription.last_seq)
            verdict = decide_recovery(
                since=subscription.last_seq,
                last_seq=last_seq,
                first_available=page[0][0] if page else None,
            )
            if verdict is not Recovery.OK:
                return verdict, last_seq
            await self._paced(subscription, connection, page, live=False)
            if len(page) == REPLAY_PAGE or subscription.truncated:
                continue
            while not subscription.truncated:
                pending = self.hub.take_pending(subscription)
                if not pending and self.hub.go_live(subscription):
                    return Recovery.OK, last_seq
                await self._paced(subscription, connection, pending, live=True)
        return Recovery.OK, last_seq

    async def _read_log(
        self, command_id: str, since: int, *, count: int = REPLAY_PAGE
    ) -> list[tuple[int, str]]:
        """Up to ``count`` logged events with ``seq > since``, in order."""
        raw = cast(
            list[tuple[str, dict[str, str]]],
            await self.client.xrange(
                self.keys.command_events(command_id), min=f"{since + 1}-0", count=count
            ),
        )
        return [(int(entry_id.split("-", 1)[0]), fields["event"]) for entry_id, fields in raw]

    async def _paced(
        self,
        subscription: Subscription,
        connection: Connection,
        entries: list[tuple[int, str]],
        *,
        live: bool,
    ) -> None:
        """Deliver ``entries``, waiting for the client to make room whenever it is full."""
        index = 0
        while index < len(entries) and _following(connection, subscription):
            if not connection.fits(entries[index][1]):
                await connection.wait_for_room()
                continue
            self.hub.replay(subscription, entries[index : index + 1], live=live)
            index += 1

    def unsubscribe(self, connection: Connection, command_id: str) -> bool:
        """Forget one subscription and give its channel hold back (never waits, so it is
        safe in cleanup code of a cancelled task)."""
        subscription = connection.subscriptions.get(command_id)
        if subscription is None:
            return False
        self._drop(connection, subscription)
        return True

    def _drop(self, connection: Connection, subscription: Subscription) -> None:
        """Forget ``subscription`` everywhere and give its hold back (idempotent)."""
        if connection.subscriptions.get(subscription.command_id) is subscription:
            del connection.subscriptions[subscription.command_id]
        self.hub.remove(subscription)
        hold, subscription.hold = subscription.hold, None
        if hold is not None:
            self.relay.release(hold)

    def unsubscribe_all(self, connection: Connection) -> None:
        for command_id in list(connection.subscriptions):
            self.unsubscribe(connection, command_id)

    # -- shutdown and metrics -------------------------------------------------------------

    async def go_away(self, *, drain_s: float, timeout_s: float) -> None:
        """Close every connection with 1001 after sending what it has queued.

        New connections are refused from now on; returns once all have closed or after
        ``timeout_s``.
        """
        self.closing = True
        for connection in list(self.connections.values()):
            connection.request_close(
                CloseCode.GOING_AWAY, "Server shutting down: reconnect", drain=True
            )
        log.info("realtime_going_away", connections=len(self.connections), drain_s=drain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)

    def live_values(self) -> LiveValues:
        by_transport = {"websocket": 0, "sse": 0}
        for connection in self.connections.values():
            by_transport[connection.transport] += 1
        stats = self.hub.stats
        return LiveValues(
            websocket_connections=by_transport["websocket"],
            sse_connections=by_transport["sse"],
            subscriptions=len(self.hub),
            channels=self.relay.channel_count(),
            events_relayed=stats.delivered,
            events_replayed=stats.replayed,
            duplicates_dropped=stats.duplicates,
            pubsub_reconnects=self.relay.reconnects,
            pubsub_connected=self.relay.connected,
        )


def _following(connection: Connection, subscription: Subscription) -> bool:
    """The connection is open and still holds this subscription."""
    return (
        not connection.close_requested.is_set()
        and connection.subscriptions.get(subscription.command_id) is subscription
    )


def protocol_error(code: str, message: str, command_id: str | None = None) -> str:
    return ProtocolErrorEvent(
        command_id=command_id, error_code=code, error_message=message
    ).model_dump_json(exclude_none=True)
