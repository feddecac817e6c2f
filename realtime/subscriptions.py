"""Following commands: subscribe, replay from the log, snapshot, resync, unsubscribe.

Order matters for a subscription: register it (live events are buffered), hold the
command's channel until Redis confirms, then read the log; the hub merges the two so
every event reaches the client once and in order. When the log no longer holds what
the client missed but the command record does, the client gets a snapshot of the
stored state instead (``SnapshotEvent``); only a command that is gone altogether is
a ``cannot_recover`` refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio
import structlog

from common.commands import TERMINAL_STATUSES, CommandRecord
from common.events import (
    ErrorEvent,
    ProtocolErrorEvent,
    Response,
    ResponseEvent,
    SnapshotEvent,
    StatusEvent,
)
from common.keys import Keys
from realtime.connection import Connection
from realtime.hub import Hub, Subscription
from realtime.recovery import Recovery, decide_recovery
from realtime.refusals import Refusal, as_refusal
from realtime.relay import Relay

__all__ = ["REPLAY_PAGE", "Subscriptions", "protocol_error"]

log = structlog.get_logger(__name__)

#: Events read from the log per round trip during a replay.
REPLAY_PAGE = 200
#: Log reads in flight at once. After the relay reconnects every held subscription
#: re-reads the log at the same moment (10,000 of them on a busy process); unbounded,
#: they would take every pooled Redis connection for seconds and starve admissions
#: and the revocation check. They wait here instead, without a time limit.
LOG_READS = 24
#: A resync that meets a Redis error tries again this often (doubling back-off from
#: the first delay) before the client is told to reconnect (1013).
RESYNC_TRIES, RESYNC_BACKOFF_S = 5, 0.2

Entries = list[tuple[int, str]]


class Subscriptions:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys, hub: Hub, relay: Relay) -> None:
        self._client = client
        self._keys = keys
        self.hub = hub
        self.relay = relay
        self._reads = asyncio.Semaphore(LOG_READS)
        #: Finds a subscription's connection (set by the service that owns connections).
        self.connection_of: Callable[[str], Connection | None] = lambda _id: None
        #: Called when an open connection is left with no subscription: ``restart`` is
        #: False when what left was never followed (a subscribe refused while set up).
        self.on_empty: Callable[[Connection, bool], None] = lambda _c, _restart: None
        #: Called when a subscribe finished and was kept.
        self.on_followed: Callable[[Connection], None] = lambda _c: None

    # -- subscribe and unsubscribe ----------------------------------------------------

    async def subscribe(
        self,
        connection: Connection,
        command_id: str,
        since: int,
        *,
        announce: Callable[[], None] | None = None,
    ) -> bool:
        """Deliver every event of ``command_id`` after ``since``, then live ones, exactly once.

        ``announce`` runs once the position is accepted, before the first replayed
        event. Returns whether the subscription is kept (False: the connection closed or
        dropped it meanwhile); raises a ``Refusal`` (nothing is held then), or a fault.
        """
        if command_id in connection.subscriptions:
            return True
        subscription = Subscription(
            command_id=command_id,
            sink=connection.push,
            last_seq=since,
            connection_id=connection.connection_id,
        )
        self.hub.add(subscription)
        connection.subscriptions[command_id] = subscription
        kept = False
        try:
            subscription.hold = await self.relay.acquire(command_id)
            await self._replay(subscription, connection, announce)
            kept = _following(connection, subscription)
            if kept:
                subscription.followed = True
                self.on_followed(connection)
        finally:
            # Whatever ended it (a refusal, a fault, a cancellation, the client leaving
            # while it waited), a subscription that is not kept gives its hold back now.
            if not kept:  # never followed: the idle time keeps counting as before
                self._drop(connection, subscription, emptied=False)
        return kept

    async def follow(
        self,
        connection: Connection,
        command_id: str,
        since: int,
        *,
        announce: Callable[[], None] | None = None,
    ) -> None:
        """``subscribe``, with a refusal rendered for the client: the URL's command closes
        the connection, a command subscribed by an action gets an ``error`` event."""
        try:
            if await self.subscribe(connection, command_id, since, announce=announce):
                log.info("subscribed", command_id=command_id, since=since)
        except Exception as exc:
            refusal = as_refusal(exc)
            if refusal is None:
                log.exception("subscribe_failed", command_id=command_id)
                refusal = Refusal.internal()
            elif not isinstance(exc, Refusal):  # Redis away or slow: say why we refused
                log.warning("subscribe_unavailable", command_id=command_id, error=repr(exc))
            self.refuse(connection, command_id, refusal)

    def refuse(self, connection: Connection, command_id: str, refusal: Refusal) -> None:
        """Render a refusal of one command on an open connection."""
        if refusal.code == "cannot_recover" or command_id != connection.primary_command_id:
            connection.push(protocol_error(refusal.code, refusal.message, command_id, refusal))
        if command_id == connection.primary_command_id:
            drain = refusal.code == "cannot_recover"  # the error event first, then 4410
            connection.request_close(refusal.close_code, refusal.message, drain=drain)
        else:
            self.unsubscribe(connection, command_id)

    def unsubscribe(self, connection: Connection, command_id: str) -> bool:
        """Forget one subscription and give its channel hold back (never waits, so it is
        safe in cleanup code of a cancelled task)."""
        subscription = connection.subscriptions.get(command_id)
        if subscription is None:
            return False
        self._drop(connection, subscription)
        return True

    def unsubscribe_all(self, connection: Connection) -> None:
        for command_id in list(connection.subscriptions):
            self.unsubscribe(connection, command_id)

    def _drop(
        self, connection: Connection, subscription: Subscription, *, emptied: bool = True
    ) -> None:
        """Forget ``subscription`` everywhere and give its hold back (idempotent). A
        connection left with nothing is reported (``on_empty``; ``emptied`` False: by a
        subscription that was never followed)."""
        if connection.subscriptions.get(subscription.command_id) is subscription:
            del connection.subscriptions[subscription.command_id]
            if not connection.subscriptions and not connection.close_requested.is_set():
                self.on_empty(connection, emptied)
        self.hub.remove(subscription)
        hold, subscription.hold = subscription.hold, None
        if hold is not None:
            self.relay.release(hold)

    # -- positions --------------------------------------------------------------------

    async def check_position(self, command_id: str, since: int) -> None:
        """Raise the refusal ``since`` would get, now (for a transport that must answer
        before it streams); ``subscribe`` decides again."""
        last_seq = await self._last_seq(command_id)
        if last_seq is None:
            raise Refusal.cannot_recover(since)
        first = await self._read_log(command_id, since, count=1)
        verdict = decide_recovery(
            since=since, last_seq=last_seq, first_available=first[0][0] if first else None
        )
        if verdict is Recovery.AHEAD:
            raise Refusal.position_ahead(last_seq)

    async def resync(self, subscription: Subscription) -> None:
        """Re-read the log after the subscription's position (after a gap or an outage)."""
        connection = self.connection_of(subscription.connection_id)
        if connection is None:
            return
        delay = RESYNC_BACKOFF_S
        for attempt in range(1, RESYNC_TRIES + 1):
            try:
                await self._replay(subscription, connection, None)
                return
            except Exception as exc:
                refusal = as_refusal(exc)
                transient = refusal is not None and not isinstance(exc, Refusal)
                if transient and attempt < RESYNC_TRIES and _following(connection, subscription):
                    # Redis away or slow: the subscription keeps buffering live events
                    # (or notes that it overflowed) and reads the log again shortly.
                    log.info("resync_retry", command_id=subscription.command_id, error=repr(exc))
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                if refusal is None:
                    log.exception("resync_failed", command_id=subscription.command_id)
                    refusal = Refusal.internal()
                log.info("resync_refused", command_id=subscription.command_id, code=refusal.code)
                self.refuse(connection, subscription.command_id, refusal)
                return

    # -- replay -----------------------------------------------------------------------

    async def _replay(
        self,
        subscription: Subscription,
        connection: Connection,
        announce: Callable[[], None] | None,
    ) -> None:
        """Bring the subscription up to date from the log (or a snapshot), then switch it
        to live events; raises a ``Refusal`` when it cannot.

        The log is read in pages, each delivered as the client makes room for it; then
        the live events buffered meanwhile. ``truncated`` set at any await (a live
        buffer that overflowed, or live events lost while the relay was away:
        ``Hub.mark_stale``) means one more read of the log, so it is cleared only just
        before a read, never after one.
        """
        command_id = subscription.command_id
        marker = ""
        # The position first, the log second (see recovery.py), in one round trip.
        subscription.truncated = False
        last_seq, read = await self._last_seq_and_page(command_id, subscription.last_seq)
        first_page: Entries | None = read
        if last_seq is None:
            raise Refusal.cannot_recover(subscription.last_seq)
        since = subscription.last_seq
        while _following(connection, subscription):
            if subscription.last_seq > since:  # delivered events are positions that exist
                last_seq = max(last_seq, subscription.last_seq)
            if first_page is not None:
                page, first_page = first_page, None
            else:
                subscription.truncated = False
                page = await self._read_log(command_id, subscription.last_seq)
            verdict = decide_recovery(
                since=subscription.last_seq,
                last_seq=last_seq,
                first_available=page[0][0] if page else None,
            )
            if verdict is Recovery.AHEAD:
                raise Refusal.position_ahead(last_seq)
            if verdict is Recovery.LOST:
                marker, page = await self._snapshot(command_id, last_seq)
            if announce is not None:
                announce()
                announce = None
            if verdict is Recovery.LOST:
                connection.push(marker)
                # The snapshot restates the whole command: every one of its events goes
                # out, whatever the client's position (its positions are not the
                # original events', so one the client lacks may sit at or below it).
                subscription.last_seq = min(subscription.last_seq, page[0][0] - 1)
            await self._paced(subscription, connection, page, live=False)
            if len(page) == REPLAY_PAGE or subscription.truncated:
                continue
            while not subscription.truncated:
                pending = self.hub.take_pending(subscription)
                if not pending and self.hub.go_live(subscription):
                    return
                await self._paced(subscription, connection, pending, live=True)

    async def _snapshot(self, command_id: str, last_seq: int) -> tuple[str, Entries]:
        """The command's stored state as events ending at its last position; raises
        ``cannot_recover`` when the command itself is gone."""
        async with self._reads, self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._keys.command(command_id))
            pipe.hvals(self._keys.command_responses(command_id))
            fields, raw_responses = cast(tuple[dict[str, str], list[str]], await pipe.execute())
        if not fields:
            raise Refusal.cannot_recover(last_seq)
        record = CommandRecord.from_redis(fields)
        last_seq = max(last_seq, int(fields.get("event_seq") or 0))
        responses = sorted(
            (Response.model_validate_json(r) for r in raw_responses),
            key=lambda r: r.sequence_number,
        )
        events: list[Any] = [
            ResponseEvent(
                command_id=command_id,
                response=r,
                sequence_number=r.sequence_number,
                snapshot=True,
            )
            for r in responses
        ]
        if record.error_message and record.status in TERMINAL_STATUSES:
            events.append(
                ErrorEvent(
                    command_id=command_id,
                    error_message=record.error_message,
                    error_code=record.error_code,
                    snapshot=True,
                )
            )
        events.append(
            StatusEvent(
                command_id=command_id,
                status=record.status,
                started_at=record.started_at,
                completed_at=record.completed_at,
                error_message=record.error_message,
                snapshot=True,
            )
        )
        first = max(1, last_seq - len(events) + 1)
        entries = [
            (min(first + i, last_seq), e.model_copy(update={"seq": min(first + i, last_seq)}))
            for i, e in enumerate(events)
        ]
        marker = SnapshotEvent(
            command_id=command_id,
            last_seq=last_seq,
            status=record.status,
            responses=len(responses),
        ).model_dump_json()
        return marker, [(seq, e.model_dump_json(exclude_none=True)) for seq, e in entries]

    async def _last_seq(self, command_id: str) -> int | None:
        """The command's latest position; None when the command itself is gone."""
        async with self._reads, self._client.pipeline(transaction=False) as pipe:
            pipe.exists(self._keys.command(command_id))
            pipe.hget(self._keys.command(command_id), "event_seq")
            exists, raw = await pipe.execute()
        if not exists:
            return None
        return int(cast(str, raw)) if raw else 0

    async def _last_seq_and_page(self, command_id: str, since: int) -> tuple[int | None, Entries]:
        """``_last_seq``, then the first ``_read_log`` page after ``since``: one pipeline,
        which Redis runs in that order."""
        key = self._keys.command(command_id)
        async with self._reads, self._client.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.hget(key, "event_seq")
            pipe.xrange(
                self._keys.command_events(command_id), min=f"{since + 1}-0", count=REPLAY_PAGE
            )
            exists, raw, entries = await pipe.execute()
        if not exists:
            return None, []
        return int(cast(str, raw)) if raw else 0, _entries(entries)

    async def _read_log(self, command_id: str, since: int, *, count: int = REPLAY_PAGE) -> Entries:
        """Up to ``count`` logged events with ``seq > since``, in order."""
        async with self._reads:
            raw = await self._client.xrange(
                self._keys.command_events(command_id), min=f"{since + 1}-0", count=count
            )
        return _entries(cast(list[tuple[str, dict[str, str]]], raw))

    async def _paced(
        self,
        subscription: Subscription,
        connection: Connection,
        entries: Entries,
        *,
        live: bool,
    ) -> None:
        """Deliver ``entries``, waiting for the client to make room whenever its queue
        is as full as a replay may fill it (``Outbox.paced_fits``)."""
        index = 0
        while index < len(entries) and _following(connection, subscription):
            if not connection.paced_fits(entries[index][1]):
                await connection.wait_for_room()
                continue
            self.hub.replay(subscription, entries[index : index + 1], live=live)
            index += 1


def _entries(raw: list[tuple[str, dict[str, str]]]) -> Entries:
    return [(int(entry_id.split("-", 1)[0]), fields["event"]) for entry_id, fields in raw]


def _following(connection: Connection, subscription: Subscription) -> bool:
    """The connection is open and still holds this subscription."""
    return (
        not connection.close_requested.is_set()
        and connection.subscriptions.get(subscription.command_id) is subscription
    )


def protocol_error(
    code: str, message: str, command_id: str | None = None, refusal: Refusal | None = None
) -> str:
    """An ``error`` event for something the client asked; the connection stays open."""
    last_seq = refusal.details.get("last_seq") if refusal is not None else None
    return ProtocolErrorEvent(
        command_id=command_id,
        error_code=code,
        error_message=message,
        last_seq=last_seq if isinstance(last_seq, int) else None,
    ).model_dump_json(exclude_none=True)
