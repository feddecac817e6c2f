"""When an open connection's token runs out, and which refresh is accepted."""

from __future__ import annotations

from realtime.lifetime import Refresh, TokenLifetime


def test_the_connection_closes_a_grace_after_the_token_expires() -> None:
    lifetime = TokenLifetime("alice", expires_at=1000.0, grace_s=5.0)

    assert lifetime.close_at == 1005.0
    assert lifetime.seconds_left(1000.0) == 5.0
    assert lifetime.seconds_left(1006.0) == -1.0


def test_a_refresh_by_the_same_user_moves_the_close() -> None:
    lifetime = TokenLifetime("alice", expires_at=1000.0, grace_s=5.0)

    assert lifetime.refresh("alice", 2000.0) is Refresh.ACCEPTED
    assert lifetime.close_at == 2005.0


def test_a_token_of_another_user_changes_nothing() -> None:
    lifetime = TokenLifetime("alice", expires_at=1000.0, grace_s=5.0)

    assert lifetime.refresh("mallory", 9000.0) is Refresh.OTHER_USER
    assert lifetime.close_at == 1005.0
