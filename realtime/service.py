"""The realtime process's state and rules: who is admitted, the open connections.

Transports (``realtime.websocket``, ``realtime.sse``) hand ``admit`` what the client
sent; it returns an open ``Connection`` or raises a ``Refusal``, which the transport
only renders. Following commands is ``realtime.subscriptions``; what a logout or a
deactivation ends is ``realtime.revocation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import redis.asyncio
import structlog

from common.access import can_view_command
from common.audit import AsyncAuditLog, AuditAction
from common.auth import authenticate_access_token
from common.auth_events import AuthEvent
from common.command_store import CommandStore
from common.commands import CommandRecord
from common.errors import AuthError
from common.events import TokenRefreshedEvent, WelcomeEvent
from common.keys import Keys
from common.protocol import CloseCode
from common.settings import Settings
from common.timeutil import isoformat
from common.tokens import TokenClaims, decode_token
from common.users import User
from realtime import revocation
from realtime.admission import read_admission
from realtime.connection import Connection, Transport
from realtime.hub import Hub
from realtime.lifetime import Refresh, TokenLifetime
from realtime.limits import ConnectionCounter, TokenBucket
from realtime.metrics import LiveValues, RealtimeMetrics
from realtime.outbox import Outbox
from realtime.presence_feed import PresenceFeed
from realtime.presence_streams import PresenceStreams
from realtime.refusals import (
    Refusal,
    as_refusal,
    parse_position,
    valid_command_id,
    valid_vehicle_id,
)
from realtime.relay import Relay
from realtime.revocation import Revocations
from realtime.subscriptions import Subscriptions, protocol_error

__all__ = ["RealtimeService"]

log = structlog.get_logger(__name__)

#: Refused admissions written to the audit trail per second, and at once, by one
#: process; the rest are counted in a metric.
AUDIT_REFUSALS_PER_S, AUDIT_REFUSALS_BURST = 20.0, 100


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
        self.streams = Subscriptions(client, self.keys, hub, relay)
        self.streams.connection_of = self.connections_get
        self.streams.on_empty = self._idle_watch
        self.streams.on_followed = self._not_idle
        self.presence = PresenceStreams(
            client, self.keys, PresenceFeed(max_buffer=settings.ws_queue_max_events)
        )
        self.commands = CommandStore(client, self.keys)
        self.audit = AsyncAuditLog(client, self.keys, settings)
        self.connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.revocations = Revocations(client, self.keys, self.connections, self._spawn)
        self.per_user = ConnectionCounter(settings.ws_max_connections_per_user)
        self._audit_budget = TokenBucket(
            AUDIT_REFUSALS_PER_S, AUDIT_REFUSALS_BURST, now=time.monotonic()
        )
        self.closing = False
        #: The fullest any closed connection's queue ever was (events, bytes).
        self.peak_queued_events = 0
        self.peak_queued_bytes = 0
        self._empty = asyncio.Event()
        self._empty.set()
        #: The idle timer of each connection that follows nothing (one at most).
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        #: Connections whose idle time ran out while a subscribe was being set up: idle
        #: at once if it is refused, not if it is followed.
        self._idle_lapsed: set[str] = set()
        #: One callable for every connection (a lambda each would cost a closure each).
        self._on_slow = self._count_slow
        metrics.watch(self.live_values)

    def connections_get(self, connection_id: str) -> Connection | None:
        return self.connections.get(connection_id)

    # -- who may connect ------------------------------------------------------------------

    async def admit(
        self,
        *,
        token: str | None,
        command_id: str,
        since: str | int | None,
        transport: Transport,
    ) -> tuple[Connection, int]:
        """The one admission ladder of every transport: shutting down, token, position,
        visibility, connection limit. Returns the open connection and its position, or
        raises a ``Refusal`` (audited when it is about credentials or visibility)."""
        if self.closing:
            raise Refusal.going_away()
        if not token:
            raise Refusal.missing_token()
        position = parse_position(since)
        seen = self.revocations.seen
        try:
            user, claims, command = await self._authenticate_for(token, command_id)
            visible = command is not None and can_view_command(user.role, user.user_id, command)
            if not visible:
                await self._audit_not_visible(user, command_id)
                raise Refusal.command_not_found()
        except Exception as exc:
            raise _refusal(exc, "admission_unavailable") from None
        return self._register(user, claims, seen, transport, command_id), position

    async def admit_presence(
        self, *, token: str | None, vehicle_id: str | None, transport: Transport
    ) -> Connection:
        """The admission ladder of a presence stream (every vehicle, or ``vehicle_id``):
        shutting down, token, the vehicle exists, connection limit. Every role may see
        the fleet's presence, as it may list the fleet over REST."""
        if self.closing:
            raise Refusal.going_away()
        if not token:
            raise Refusal.missing_token()
        seen = self.revocations.seen
        try:
            user, claims = await self.authenticate(token)
            if vehicle_id is not None and not (
                valid_vehicle_id(vehicle_id) and await self.presence.vehicle_exists(vehicle_id)
            ):
                raise Refusal.vehicle_not_found()
        except Exception as exc:
            raise _refusal(exc) from None
        return self._register(user, claims, seen, transport, "")

    def _register(
        self, user: User, claims: TokenClaims, seen: int, transport: Transport, command_id: str
    ) -> Connection:
        """The last rungs of both ladders, once the checks passed: still not shutting
        down (it began during the checks, it would miss this one), the connection limit;
        then the connection is open and meets the auth events since ``seen``."""
        if self.closing:
            raise Refusal.going_away()
        if not self.per_user.acquire(user.user_id):
            raise Refusal.too_many_connections()
        connection = self._open(user, claims, transport=transport, command_id=command_id)
        self.revocations.catch_up(connection, seen)
        return connection

    async def admit_subscription(
        self, connection: Connection, command_id: str, since: str | int | None
    ) -> int:
        """The ladder of a ``subscribe`` action on an open connection: the subscription
        limit, position, visibility. Returns the position, or raises a ``Refusal``
        (audited when it is about visibility)."""
        limit = self.settings.ws_max_subscriptions
        if len(connection.subscriptions) >= limit:
            raise Refusal.too_many_subscriptions(limit)
        position = parse_position(since)
        try:
            if not (
                valid_command_id(command_id) and await self.can_view(connection.user, command_id)
            ):
                raise Refusal.command_not_found()
        except Exception as exc:
            raise _refusal(exc, "subscription_unavailable") from None
        return position

    async def _authenticate_for(
        self, token: str, command_id: str
    ) -> tuple[User, TokenClaims, CommandRecord | None]:
        """``authenticate`` and the command's record, in two Redis round trips
        (``realtime.admission``); raises ``AuthError`` (audited) or a Redis error."""
        try:
            claims = decode_token(self.settings, token, "access")
            reads = await read_admission(
                self.client, self.keys, claims, command_id if valid_command_id(command_id) else None
            )
            if reads.revoked:
                raise AuthError("Token revoked")
            if reads.user is None or not reads.user.active:
                raise AuthError("User inactive or unknown")
        except AuthError as exc:
            await self._audit_refusal(details={"reason": exc.message})
            raise
        return reads.user, claims, reads.command

    async def authenticate(self, token: str) -> tuple[User, TokenClaims]:
        """The active user behind ``token``; raises ``AuthError`` (or a Redis error)."""
        try:
            return await authenticate_access_token(self.settings, self.client, self.keys, token)
        except AuthError as exc:
            await self._audit_refusal(details={"reason": exc.message})
            raise

    async def can_view(self, user: User, command_id: str) -> bool:
        """The command exists and ``user`` may see it (a refusal goes to the audit trail)."""
        command = await self.commands.get(command_id)
        visible = command is not None and can_view_command(user.role, user.user_id, command)
        if not visible:
            await self._audit_not_visible(user, command_id)
        return visible

    async def _audit_not_visible(self, user: User, command_id: str) -> None:
        await self._audit_refusal(
            user_id=user.user_id,
            username=user.username,
            command_id=command_id[:64],
            details={"reason": "command not found or not visible"},
        )

    async def _audit_refusal(self, **entry: Any) -> None:
        """A refused admission in the audit trail, within ``AUDIT_REFUSALS_PER_S``: the
        trail is bounded, and refusals cost a caller nothing (a forged token will do),
        so past that rate they are only counted (``sovd_realtime_refusals_not_audited``)
        rather than push out the entries an admin relies on."""
        if not self._audit_budget.allow(time.monotonic()):
            self.metrics.refusals_not_audited.inc()
            return
        await self.audit.record(AuditAction.SUBSCRIPTION_REFUSED, outcome="denied", **entry)

    def _open(
        self, user: User, claims: TokenClaims, *, transport: Transport, command_id: str
    ) -> Connection:
        settings = self.settings
        connection = Connection(
            user,
            TokenLifetime(
                user.user_id,
                claims.expires_at.timestamp(),
                grace_s=settings.ws_token_grace_s,
                token_id=claims.jti,
            ),
            Outbox(max_events=settings.ws_queue_max_events, max_bytes=settings.ws_queue_max_bytes),
            transport=transport,
            primary_command_id=command_id,
            on_slow=self._on_slow,
        )
        self.connections[connection.connection_id] = connection
        self.revocations.add(connection)
        self._empty.clear()
        self.metrics.connections_opened.labels(transport).inc()
        connection.push(
            WelcomeEvent(
                connection_id=connection.connection_id, expires_at=isoformat(claims.expires_at)
            ).model_dump_json()
        )
        return connection

    def _count_slow(self, _connection: Connection) -> None:
        self.metrics.slow_consumer_closes.inc()

    def close_connection(self, connection: Connection) -> None:
        """Forget the connection: unsubscribe everything, release its place."""
        # Whatever still waits on it (a resync or a snapshot waiting for room in its
        # queue) stops now: nobody will drain that queue any more.
        connection.request_close(CloseCode.NORMAL, "")
        if self.connections.pop(connection.connection_id, None) is None:
            return
        self.revocations.remove(connection)
        self.per_user.release(connection.user.user_id)
        self.peak_queued_events = max(self.peak_queued_events, connection.outbox.peak_events)
        self.peak_queued_bytes = max(self.peak_queued_bytes, connection.outbox.peak_bytes)
        if not self.connections:
            self._empty.set()
        timer = self._idle_timers.pop(connection.connection_id, None)
        if timer is not None:
            timer.cancel()
        self._idle_lapsed.discard(connection.connection_id)
        self.streams.unsubscribe_all(connection)
        self.presence.unfollow(connection)

    def record_close(self, code: int) -> None:
        self.metrics.count_close(code)

    async def refresh(self, connection: Connection, token: str) -> str:
        """Adopt a new token for the connection; returns the answer event's JSON. A
        Redis that cannot answer raises ``Refusal.unavailable`` (the client reconnects)."""
        seen = self.revocations.seen
        try:
            async with asyncio.timeout(revocation.CHECK_TIMEOUT_S):
                user, claims = await self.authenticate(token)
        except AuthError as exc:
            return protocol_error("invalid_token", f"Refresh refused: {exc.message}")
        except Exception as exc:
            raise _refusal(exc, "refresh_unavailable") from None
        verdict = connection.lifetime.refresh(
            user.user_id, claims.expires_at.timestamp(), claims.jti
        )
        if verdict is Refresh.OTHER_USER:
            return protocol_error("invalid_token", "Refresh refused: the token is for another user")
        connection.lifetime_moved()
        self.revocations.catch_up(connection, seen)
        return TokenRefreshedEvent(expires_at=isoformat(claims.expires_at)).model_dump_json()

    # -- revocation -------------------------------------------------------------------

    def on_auth_event(self, event: AuthEvent) -> None:
        """A token was revoked or a user deactivated: end the connections living on it."""
        self.revocations.on_event(event)

    def on_relay_reconnected(self) -> None:
        """Pushes sent while the relay was away are lost: check every connection again,
        and send presence followers a fresh snapshot."""
        self.revocations.on_reconnect()
        self.presence.resnapshot_all()

    # -- idle connections -------------------------------------------------------------

    def _idle_watch(self, connection: Connection, restart: bool = True) -> None:
        """The connection follows nothing any more: close it unless it subscribes again
        within ``ws_idle_timeout_s``. ``restart`` False: what it lost was a subscribe
        refused while set up, which leaves the time counting as it was."""
        connection_id = connection.connection_id
        if connection_id not in self.connections:
            return  # closing: nothing to watch
        if not restart:
            if connection_id in self._idle_lapsed:  # its time ran out meanwhile
                self._idle_lapsed.discard(connection_id)
                self._close_if_idle(connection)
                return
            if connection_id in self._idle_timers:
                return
        self._idle_lapsed.discard(connection_id)
        # The timer counts from the last time it went empty: an earlier one (it
        # subscribed and went empty again since) is replaced, not left to fire early.
        earlier = self._idle_timers.pop(connection_id, None)
        if earlier is not None:
            earlier.cancel()

        def check() -> None:
            self._idle_timers.pop(connection_id, None)
            if connection.subscriptions and not any(
                s.followed for s in connection.subscriptions.values()
            ):
                # Only subscribes still being set up: idle after all if they are refused.
                self._idle_lapsed.add(connection_id)
                return
            self._close_if_idle(connection)

        self._idle_timers[connection_id] = asyncio.get_running_loop().call_later(
            self.settings.ws_idle_timeout_s, check
        )

    def _not_idle(self, connection: Connection) -> None:
        self._idle_lapsed.discard(connection.connection_id)

    def _close_if_idle(self, connection: Connection) -> None:
        connection_id = connection.connection_id
        if (
            not connection.subscriptions
            and connection_id in self.connections
            and connection_id not in self.presence.feed
        ):
            refusal = Refusal.idle()
            connection.request_close(refusal.close_code, refusal.message)

    # -- shutdown and metrics -------------------------------------------------------------

    async def go_away(self, *, drain_s: float, timeout_s: float) -> None:
        """Close every connection with 1001 after sending what it has queued.

        New connections are refused from now on; returns once all have closed or after
        ``timeout_s``.
        """
        self.closing = True
        refusal = Refusal.going_away()
        for connection in list(self.connections.values()):
            connection.request_close(refusal.close_code, refusal.message, drain=True)
        log.info("realtime_going_away", connections=len(self.connections), drain_s=drain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), timeout_s)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


def _refusal(exc: Exception, unavailable: str | None = None) -> Refusal:
    """The refusal a failed check means for the client; a fault (no refusal) is raised
    again. A Redis that is away or slow is logged as the warning ``unavailable``."""
    refusal = as_refusal(exc)
    if refusal is None:
        raise exc
    if unavailable is not None and not isinstance(exc, Refusal | AuthError):
        log.warning(unavailable, error=repr(exc))
    return refusal
