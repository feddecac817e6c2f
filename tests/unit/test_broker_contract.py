"""The pieces of Dramatiq 2.2 that common/broker.py copies still match the library.

When one of these fails after a Dramatiq upgrade, re-read the changed library code and
bring ``WakingRedisBroker`` (its dispatch arguments, ``maintain``) and
``_WakingConsumer.__next__`` in line before updating the recorded digests.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer, _scripts

from common.broker import _DISPATCH_SOURCE, WakingRedisBroker, _WakingConsumer
from common.keys import Keys

#: sha256 of the library code the broker module mirrors (dramatiq 2.2.1).
CONSUMER_NEXT_SHA256 = "b8245bc4ab8044d67d72216baca5e5be0d07fccce15c443a5887b6397c9906e1"
DISPATCH_LUA_SHA256 = "ba4d872e4fb204ebc3f73ca4719265a9946d70e847856c125314f01a8c90540c"
BROKER_DISPATCH_SHA256 = "ee77793d07f17bbefbffb5da1da34b5bcce1d5d7eb78eb793a6863eb397fd3d5"


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def test_the_pinned_dramatiq_minor_version_is_installed() -> None:
    assert dramatiq.__version__.startswith("2.2.")


def test_the_consumer_loop_our_consumer_copies_is_unchanged() -> None:
    assert _sha(inspect.getsource(_RedisConsumer.__next__)) == CONSUMER_NEXT_SHA256


def test_the_dispatch_script_and_its_caller_are_unchanged() -> None:
    assert _sha(_scripts["dispatch"]) == DISPATCH_LUA_SHA256
    assert _sha(_DISPATCH_SOURCE) == DISPATCH_LUA_SHA256
    assert _sha(inspect.getsource(RedisBroker._dispatch)) == BROKER_DISPATCH_SHA256


def test_our_dispatch_arguments_are_the_ones_dramatiq_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Lua stack size is cached per class once read from a server: fix it for both.
    for cls in (RedisBroker, WakingRedisBroker):
        monkeypatch.setattr(cls, "_max_unpack_size_val", 4000)
    captured: list[list[Any]] = []

    def script(*, args: list[Any], keys: list[str]) -> None:
        captured.append([keys, args])

    stock = RedisBroker(url="redis://127.0.0.1:1/0", namespace="ns", maintenance_chance=0)
    stock.scripts = {"dispatch": script, "maxstack": lambda: 8000}
    stock.do_enqueue("q", "id-1", b"data")
    ours = WakingRedisBroker(url="redis://127.0.0.1:1/0", keys=Keys("p"), maintenance_chance=0)
    ours.scripts = {"dispatch": script, "maxstack": lambda: 8000}
    ours.broker_id = stock.broker_id
    mine = ours._dispatch_args("enqueue", "q", "id-1", b"data", maintain=0)
    ((keys, theirs),) = captured
    assert keys == ["ns"]
    # Everything but the timestamp (slot 2) is the same, in the same slots.
    assert [a for i, a in enumerate(mine) if i != 1] == [a for i, a in enumerate(theirs) if i != 1]
    assert abs(int(mine[1]) - int(theirs[1])) < 5_000
    stock.close()
    ours.close()


def test_the_consumer_state_our_consumer_relies_on_exists() -> None:
    broker = WakingRedisBroker(url="redis://127.0.0.1:1/0", keys=Keys("p"))
    consumer = broker.consume("q", prefetch=4, timeout=100)
    assert isinstance(consumer, _WakingConsumer)
    for name in ("message_cache", "queued_message_ids", "misses", "prefetch", "timeout"):
        assert hasattr(consumer, name), name
    assert consumer.outstanding_message_count == 0
    assert consumer.prefetch >= broker.min_prefetch
    broker.close()
