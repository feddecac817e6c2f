"""What a logout or a deactivation ends, under any interleaving of token checks, pushes,
relay reconnects and closes.

A stateful property test drives ``Revocations`` (no Redis: the recheck it asks for is
recorded, not run) against a model that applies every auth event to every connection
it could concern, and checks the invariant after every step: a registered connection
has met every auth event after its token's check. It is closed with 4403 exactly when
an event since that check ends it, unless a recheck that covers it was asked for (a
relay reconnect in between, or more events than the log keeps), and no event closes a
connection it does not concern.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from common.auth_events import AuthEvent
from common.keys import Keys
from common.protocol import CloseCode
from common.users import Role, User
from realtime.connection import Connection
from realtime.lifetime import Refresh, TokenLifetime
from realtime.outbox import Outbox
from realtime.revocation import Revocations

USERS = [
    User(user_id=f"u{n}", username=f"user{n}", role=Role.VIEWER, password_hash="x")
    for n in range(3)
]
#: Each user's tokens: a revocation names one of them.
TOKENS = {user.user_id: [f"{user.user_id}-t{k}" for k in range(3)] for user in USERS}
#: Small, so catch-ups reach past what was kept.
LOG_SIZE = 4


@dataclass
class Check:
    """A token check in flight: an admission (``connection`` None) or a refresh."""

    user: User
    token: str
    seen: int
    connection: Connection | None = None


@dataclass
class Model:
    connection: Connection
    #: The model's verdict: an auth event after its check ends it.
    ended: bool = False
    #: A recheck that covers it was asked for: Redis decides, the model does not.
    rechecked: bool = False


class RevocationsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.connections: dict[str, Connection] = {}
        self.rechecks: list[list[Connection] | None] = []
        self.revocations = Revocations(
            None,  # type: ignore[arg-type] # the recheck, the only Redis reader, is not run
            Keys("test"),
            self.connections,
            self._spawn,
            log_size=LOG_SIZE,
        )
        #: Every auth event since start; None is a relay reconnect.
        self.events: list[AuthEvent | None] = []
        self.checks: list[Check] = []
        self.models: dict[str, Model] = {}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        frame = coro.cr_frame
        assert frame is not None
        assert coro.__qualname__ == "Revocations.recheck"
        self.rechecks.append(frame.f_locals["only"])
        coro.close()

    def _met(self, user: User, token: str, seen: int) -> tuple[bool, bool]:
        """(an event since ``seen`` ends ``user`` on ``token``, a recheck is due)."""
        since = self.events[seen:]
        overflow = len(since) > LOG_SIZE
        ends = any(e is not None and _concerns(e, user.user_id, token) for e in since)
        return ends, overflow or None in since

    # -- rules ----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), k=st.integers(0, 2))
    def begin_admission(self, user: User, k: int) -> None:
        self.checks.append(Check(user, TOKENS[user.user_id][k], self.revocations.seen))

    @rule(data=st.data())
    def begin_refresh(self, data: st.DataObject) -> None:
        open_ = [m.connection for m in self.models.values()]
        if not open_:
            return
        connection = data.draw(st.sampled_from(open_))
        token = data.draw(st.sampled_from(TOKENS[connection.user.user_id]))
        self.checks.append(Check(connection.user, token, self.revocations.seen, connection))

    @precondition(lambda self: self.checks)
    @rule(data=st.data())
    def finish_check(self, data: st.DataObject) -> None:
        check = self.checks.pop(data.draw(st.integers(0, len(self.checks) - 1)))
        connection = check.connection
        if connection is None:  # an admission: register, then catch up
            connection = Connection(
                check.user,
                TokenLifetime(check.user.user_id, 2e9, grace_s=0, token_id=check.token),
                Outbox(max_events=10, max_bytes=10_000),
                transport="websocket",
                primary_command_id="c",
            )
            self.connections[connection.connection_id] = connection
            self.revocations.add(connection)
            model = self.models[connection.connection_id] = Model(connection)
        elif connection.connection_id not in self.models:
            return  # closed while its refresh was checked
        else:
            model = self.models[connection.connection_id]
            verdict = connection.lifetime.refresh(check.user.user_id, 2e9, check.token)
            assert verdict is Refresh.ACCEPTED
        rechecks = len(self.rechecks)
        self.revocations.catch_up(connection, check.seen)
        ends, recheck_due = self._met(check.user, check.token, check.seen)
        if ends and not recheck_due:
            model.ended = True
        if recheck_due:
            # Asked for now, unless an event the log still holds ended it.
            asked = len(self.rechecks) > rechecks
            assert asked or connection.close_requested.is_set()
            if asked:
                assert self.rechecks[-1] == [connection]
            model.rechecked = True

    @rule(
        user=st.sampled_from(USERS),
        kind=st.sampled_from(["token_revoked", "user_deactivated"]),
        k=st.integers(0, 2),
    )
    def auth_event(self, user: User, kind: str, k: int) -> None:
        jti = TOKENS[user.user_id][k] if kind == "token_revoked" else None
        event = AuthEvent(kind=kind, user_id=user.user_id, jti=jti)  # type: ignore[arg-type]
        self.events.append(event)
        for model in self.models.values():
            c = model.connection
            if _concerns(event, c.user.user_id, c.lifetime.token_id):
                model.ended = True
        self.revocations.on_event(event)

    @rule()
    def relay_reconnected(self) -> None:
        self.events.append(None)
        self.revocations.on_reconnect()
        assert self.rechecks[-1] is None  # every open connection
        for model in self.models.values():
            model.rechecked = True

    @precondition(lambda self: self.models)
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        connection_id = data.draw(st.sampled_from(sorted(self.models)))
        del self.models[connection_id]
        connection = self.connections.pop(connection_id)
        self.revocations.remove(connection)

    # -- the invariant --------------------------------------------------------------------

    @invariant()
    def each_connection_met_every_event_after_its_check(self) -> None:
        for model in self.models.values():
            connection = model.connection
            closed = connection.close_requested.is_set()
            if closed:
                assert connection.close_code == CloseCode.SESSION_REVOKED
            if model.ended:
                assert closed or model.rechecked
            elif not model.rechecked:
                assert not closed, "closed by an event that does not concern it"

    @invariant()
    def the_index_holds_the_users_of_open_connections(self) -> None:
        users = {m.connection.user.user_id for m in self.models.values()}
        assert self.revocations.users == len(users)
        assert self.revocations.seen == len(self.events)


def _concerns(event: AuthEvent, user_id: str, token: str) -> bool:
    return event.user_id == user_id and (event.kind != "token_revoked" or event.jti == token)


TestRevocations = RevocationsMachine.TestCase
TestRevocations.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
