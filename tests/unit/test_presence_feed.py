"""The presence feed's routing and its snapshot buffering (no I/O)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from realtime.presence_feed import PresenceFeed


def event(vehicle_id: str, status: str = "connected", n: int = 0) -> str:
    return json.dumps({"event": "presence", "vehicle_id": vehicle_id, "status": status, "n": n})


class Client:
    def __init__(self) -> None:
        self.got: list[str] = []

    def __call__(self, data: str) -> bool:
        self.got.append(data)
        return True


def test_events_reach_followers_of_everything_and_of_that_vehicle_only() -> None:
    feed = PresenceFeed(max_buffer=10)
    everything, mine, other = Client(), Client(), Client()
    for name, sink, scope in (("a", everything, None), ("b", mine, "v1"), ("c", other, "v2")):
        feed.go_live(feed.add(name, sink, scope))
    assert feed.publish(event("v1")) == 2
    assert (everything.got, mine.got, other.got) == ([event("v1")], [event("v1")], [])
    assert feed.publish("not json") == 0
    assert feed.publish(json.dumps({"no": "vehicle"})) == 0


def test_events_during_a_snapshot_are_held_then_handed_back_in_order() -> None:
    feed = PresenceFeed(max_buffer=10)
    client = Client()
    follower = feed.add("a", client, None)
    feed.publish(event("v1", "connected"))
    feed.publish(event("v1", "disconnected"))
    assert client.got == []
    assert feed.go_live(follower) == [event("v1", "connected"), event("v1", "disconnected")]
    feed.publish(event("v2"))
    assert client.got == [event("v2")]


def test_an_overflowing_buffer_marks_the_follower_stale_for_a_new_snapshot() -> None:
    feed = PresenceFeed(max_buffer=2)
    follower = feed.add("a", Client(), None)
    for n in range(3):
        feed.publish(event("v1", n=n))
    assert (follower.stale, follower.buffer) == (True, [])
    feed.begin_snapshot(follower)
    assert (follower.stale, follower.buffer) == (False, [])
    feed.publish(event("v1", n=9))
    assert feed.go_live(follower) == [event("v1", n=9)]


def test_removing_a_follower_stops_its_events_and_forgets_it() -> None:
    feed = PresenceFeed(max_buffer=10)
    client = Client()
    feed.go_live(feed.add("a", client, "v1"))
    feed.remove("a")
    feed.remove("a")
    assert feed.publish(event("v1")) == 0
    assert "a" not in feed
    assert len(feed) == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["v1", "v2", "v3"]), st.sampled_from(["up", "down"])),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=30),
)
def test_snapshot_then_held_then_live_ends_at_each_vehicles_last_state(
    changes: list[tuple[str, str]], cut: int
) -> None:
    """Whenever the snapshot is read, applying it, then the held events, then the live
    ones leaves every vehicle at its last reported state."""
    feed = PresenceFeed(max_buffer=100)
    client = Client()
    state: dict[str, str] = {}
    follower = feed.add("a", client, None)
    cut = min(cut, len(changes))
    for vehicle_id, status in changes[:cut]:
        state[vehicle_id] = status
        feed.publish(event(vehicle_id, status))
    view = dict(state)  # the snapshot, read now
    for data in feed.go_live(follower):
        message = json.loads(data)
        view[message["vehicle_id"]] = message["status"]
    for vehicle_id, status in changes[cut:]:
        state[vehicle_id] = status
        feed.publish(event(vehicle_id, status))
    for data in client.got:
        message = json.loads(data)
        view[message["vehicle_id"]] = message["status"]
    assert view == state


def test_each_snapshot_begun_has_a_newer_generation() -> None:
    """A snapshot still being read can tell that a newer one superseded it."""
    feed = PresenceFeed(max_buffer=10)
    follower = feed.add("a", Client(), None)
    first = follower.generation
    second = feed.begin_snapshot(follower)
    third = feed.begin_snapshot(follower)
    assert first < second < third == follower.generation
