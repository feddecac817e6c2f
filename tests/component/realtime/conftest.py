"""Fixtures of the realtime component tests: the server, a world of users and commands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from common.eventlog import EventLog
from common.keys import Keys
from common.settings import Settings
from tests.component.realtime_support import World, realtime_server
from tests.support import ServerThread


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    with realtime_server(settings) as thread:
        yield thread


@pytest.fixture
def events(sync_redis: redis.Redis, keys: Keys, settings: Settings) -> EventLog:
    return EventLog(sync_redis, keys, maxlen=settings.event_log_maxlen, ttl_s=60)


@pytest.fixture
def world(settings: Settings) -> World:
    return World(settings)
