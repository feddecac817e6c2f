"""Revocation on open connections: a logout or a deactivation ends what lives on it.

Revoking an access token and deactivating a user are pushed on the relay
(``common.auth_events``); each push closes the affected connections with 4403 at once.
Pub/Sub is at-most-once and a token's check takes a while, so two more paths keep the
one invariant: **a registered connection has met every auth event after its token's
check**.

- Every auth event (and every relay reconnect, a ``None``: pushes may have been lost)
  is numbered and the last ``AUTH_LOG_SIZE`` are kept. An admission or a refresh notes
  ``seen`` before its check and calls ``catch_up`` once the connection is registered.
- After a reconnect, or when a catch-up reaches further back than the log, the
  connections are checked against Redis again (``recheck``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

import redis.asyncio
import structlog

from common.auth_events import AuthEvent
from common.keys import Keys
from realtime.connection import Connection
from realtime.refusals import Refusal, as_refusal

__all__ = ["AUTH_LOG_SIZE", "CHECK_TIMEOUT_S", "RECHECK_BACKOFF_S", "RECHECK_TRIES", "Revocations"]

log = structlog.get_logger(__name__)

#: After the relay reconnects (revocation pushes may have been missed), tries to check
#: every open connection again, with back-off doubling from the first delay.
RECHECK_TRIES, RECHECK_BACKOFF_S = 6, 0.25
#: Seconds a token check on an open connection (a refresh, one recheck try) waits for
#: Redis, pooled connection included: the reader of a refresh answers nothing else
#: meanwhile, and a revocation missed during an outage must not wait on a long queue.
CHECK_TIMEOUT_S = 5.0
#: Auth events remembered for the admissions and refreshes in flight: a push that lands
#: between a token's check and the connection's registration must still reach it.
AUTH_LOG_SIZE = 1024


class Revocations:
    """The auth events a process has met, and the open connections they may end.

    ``connections`` is the service's own map of open connections (read, never
    changed here); ``add`` and ``remove`` keep the index by user beside it, so an event
    costs its user's connections, not a scan of every open one. ``spawn`` runs a
    recheck in the background; ``log_size`` auth events are kept for catch-ups.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        keys: Keys,
        connections: Mapping[str, Connection],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        *,
        log_size: int = AUTH_LOG_SIZE,
    ) -> None:
        self._client = client
        self._keys = keys
        self._connections = connections
        self._spawn = spawn
        self._by_user: dict[str, dict[str, Connection]] = {}
        self._seen = 0
        self._log: deque[AuthEvent | None] = deque(maxlen=log_size)

    @property
    def seen(self) -> int:
        """Auth events (and relay reconnects) met since start: note it before a check."""
        return self._seen

    @property
    def users(self) -> int:
        """Users with at least one registered connection."""
        return len(self._by_user)

    def add(self, connection: Connection) -> None:
        self._by_user.setdefault(connection.user.user_id, {})[connection.connection_id] = connection

    def remove(self, connection: Connection) -> None:
        user_id = connection.user.user_id
        mine = self._by_user.get(user_id)
        if mine is None or mine.pop(connection.connection_id, None) is None:
            return
        if not mine:
            del self._by_user[user_id]

    def on_event(self, event: AuthEvent) -> None:
        """A token was revoked or a user deactivated: end the connections living on it."""
        self._remember(event)
        ended = [c for c in self._by_user.get(event.user_id, {}).values() if _ends(event, c)]
        for connection in ended:
            _end_session(connection)
        if ended:  # one line per event; each connection's own ``ws_closed`` line follows
            log.info(
                "sessions_revoked", kind=event.kind, user_id=event.user_id, connections=len(ended)
            )

    def on_reconnect(self) -> None:
        """Pushes sent while the relay was away are lost: check every connection again."""
        self._remember(None)
        self._spawn(self.recheck(None))

    def catch_up(self, connection: Connection, seen: int) -> None:
        """Apply to ``connection`` the auth events that arrived since ``seen``, while its
        token was being checked (``on_event`` saw only registered connections)."""
        missed = self._seen - seen
        if missed == 0:
            return
        if missed > len(self._log):  # more than were kept: ask Redis
            self._spawn(self.recheck([connection]))
            return
        reconnected = False
        for event in itertools.islice(self._log, len(self._log) - missed, None):
            if event is None:
                reconnected = True
            elif _ends(event, connection):
                _end_session(connection)
                return
        if reconnected:  # a push may have been lost while the relay was away
            self._spawn(self.recheck([connection]))

    async def recheck(self, only: list[Connection] | None) -> None:
        """Every open connection's token and user (or those of ``only``), checked again
        in two pipelines. While Redis cannot answer, try again with back-off; a process
        that still cannot tell who was revoked asks them to reconnect (1013), and
        admission checks them."""
        delay = RECHECK_BACKOFF_S
        for attempt in range(1, RECHECK_TRIES + 1):
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await self._recheck_once(only)
                return
            except Exception as exc:
                if as_refusal(exc) is None:
                    raise
                log.warning("recheck_failed", error=str(exc), attempt=attempt)
                if attempt < RECHECK_TRIES:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        refusal = Refusal.unavailable()
        for connection in self._still_open(only):
            connection.request_close(refusal.close_code, refusal.message)

    def _remember(self, event: AuthEvent | None) -> None:
        self._seen += 1
        self._log.append(event)

    def _still_open(self, only: list[Connection] | None) -> list[Connection]:
        if only is None:
            return list(self._connections.values())
        return [c for c in only if c.connection_id in self._connections]

    async def _recheck_once(self, only: list[Connection] | None) -> None:
        connections = self._still_open(only)
        if not connections:
            return
        keys = self._keys
        async with self._client.pipeline(transaction=False) as pipe:
            for connection in connections:
                pipe.exists(keys.revoked_access_token(connection.lifetime.token_id))
                pipe.get(keys.user_by_id(connection.user.user_id))
            answers = await pipe.execute()
        names = {cast(str, answers[2 * i + 1]) for i in range(len(connections))}
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(keys.user(name), "active")
            active = dict(zip(names, await pipe.execute(), strict=True))
        ended = 0
        for i, connection in enumerate(connections):
            revoked, name = answers[2 * i], answers[2 * i + 1]
            if revoked or active.get(name) != "1":
                _end_session(connection)
                ended += 1
        if ended:
            log.info("sessions_revoked", kind="recheck", connections=ended)


def _ends(event: AuthEvent, connection: Connection) -> bool:
    """``event`` ends ``connection``'s session (its user, or its very token)."""
    if connection.lifetime.user_id != event.user_id:
        return False
    return event.kind != "token_revoked" or connection.lifetime.token_id == event.jti


def _end_session(connection: Connection) -> None:
    refusal = Refusal.session_revoked()
    connection.request_close(refusal.close_code, refusal.message)
