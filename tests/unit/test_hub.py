"""The relay's pure core: subscriptions and the routing and ordering of events."""

from __future__ import annotations

from realtime.hub import Hub, Subscription


class Recorder:
    """A sink that records what it was sent; ``accept`` lets it refuse from then on."""

    def __init__(self, accept: bool = True) -> None:
        self.received: list[str] = []
        self.accept = accept

    def __call__(self, data: str) -> bool:
        self.received.append(data)
        return self.accept


def _event(seq: int) -> tuple[int, str]:
    return seq, f'{{"seq":{seq}}}'


def _live(hub: Hub, command_id: str = "cmd-1") -> tuple[Subscription, Recorder]:
    """A subscription that has finished an empty replay and receives live events."""
    sink = Recorder()
    sub = Subscription(command_id, sink)
    hub.add(sub)
    hub.finish_replay(sub, [])
    return sub, sink


def test_the_first_subscription_of_a_command_is_reported_as_first() -> None:
    hub = Hub()

    assert hub.add(Subscription("cmd-1", Recorder())) is True
    assert hub.add(Subscription("cmd-1", Recorder())) is False
    assert hub.add(Subscription("cmd-2", Recorder())) is True
    assert len(hub) == 3
    assert sorted(hub.commands()) == ["cmd-1", "cmd-2"]


def test_only_the_last_removal_of_a_command_is_reported_as_last() -> None:
    hub = Hub()
    first = Subscription("cmd-1", Recorder())
    second = Subscription("cmd-1", Recorder())
    hub.add(first)
    hub.add(second)

    assert hub.remove(first) is False
    assert hub.commands() == ["cmd-1"]
    assert hub.remove(second) is True
    assert hub.commands() == []
    assert len(hub) == 0


def test_removing_an_unknown_subscription_is_not_reported_as_last() -> None:
    hub = Hub()
    hub.add(Subscription("cmd-1", Recorder()))

    assert hub.remove(Subscription("cmd-1", Recorder())) is False
    assert hub.remove(Subscription("cmd-9", Recorder())) is False
    assert len(hub) == 1


def test_a_live_event_reaches_only_the_subscriptions_of_its_command() -> None:
    hub = Hub()
    _, first = _live(hub, "cmd-1")
    _, second = _live(hub, "cmd-1")
    _, other = _live(hub, "cmd-2")

    gaps = hub.publish("cmd-1", *_event(1))

    assert gaps == []
    assert first.received == ['{"seq":1}']
    assert second.received == ['{"seq":1}']
    assert other.received == []
    assert hub.stats.delivered == 2


def test_an_event_for_a_command_without_subscriptions_goes_nowhere() -> None:
    hub = Hub()
    _, sink = _live(hub, "cmd-1")

    assert hub.publish("cmd-2", *_event(1)) == []
    assert sink.received == []
    assert hub.stats.delivered == 0


def test_live_events_during_replay_are_buffered_until_the_replay_finishes() -> None:
    hub = Hub()
    sink = Recorder()
    sub = Subscription("cmd-1", sink)
    hub.add(sub)

    hub.publish("cmd-1", *_event(1))

    assert sink.received == []
    assert sub.pending == [_event(1)]


def test_backlog_and_overlapping_live_events_reach_the_client_once_and_in_order() -> None:
    hub = Hub()
    sink = Recorder()
    sub = Subscription("cmd-1", sink)
    hub.add(sub)
    for seq in (3, 4, 5):
        assert hub.publish("cmd-1", *_event(seq)) == []

    hub.finish_replay(sub, [_event(1), _event(2), _event(3)])

    assert sink.received == [f'{{"seq":{n}}}' for n in (1, 2, 3, 4, 5)]
    assert (sub.last_seq, sub.replaying, sub.pending) == (5, False, [])
    assert (hub.stats.replayed, hub.stats.delivered, hub.stats.duplicates) == (3, 2, 1)


def test_live_events_buffered_out_of_order_are_delivered_in_seq_order() -> None:
    hub = Hub()
    sink = Recorder()
    sub = Subscription("cmd-1", sink)
    hub.add(sub)
    for seq in (5, 3, 4):
        hub.publish("cmd-1", *_event(seq))

    hub.finish_replay(sub, [_event(1), _event(2)])

    assert sink.received == [f'{{"seq":{n}}}' for n in (1, 2, 3, 4, 5)]


def test_a_replay_after_a_resume_position_skips_what_the_client_already_has() -> None:
    hub = Hub()
    sink = Recorder()
    sub = Subscription("cmd-1", sink, last_seq=2)
    hub.add(sub)

    hub.finish_replay(sub, [_event(1), _event(2), _event(3)])

    assert sink.received == ['{"seq":3}']
    assert hub.stats.duplicates == 2


def test_a_duplicate_live_event_is_dropped_and_counted() -> None:
    hub = Hub()
    _, sink = _live(hub)
    hub.publish("cmd-1", *_event(1))
    hub.publish("cmd-1", *_event(2))

    gaps = hub.publish("cmd-1", *_event(2))

    assert gaps == []
    assert sink.received == ['{"seq":1}', '{"seq":2}']
    assert (hub.stats.delivered, hub.stats.duplicates) == (2, 1)


def test_a_gap_returns_the_subscription_and_buffers_the_event() -> None:
    hub = Hub()
    sub, sink = _live(hub)
    for seq in (1, 2, 3):
        hub.publish("cmd-1", *_event(seq))

    gaps = hub.publish("cmd-1", *_event(5))

    assert gaps == [sub]
    assert sink.received == [f'{{"seq":{n}}}' for n in (1, 2, 3)]
    assert (sub.last_seq, sub.replaying, sub.pending) == (3, True, [_event(5)])


def test_a_gap_is_closed_by_replaying_the_log_after_the_last_position() -> None:
    hub = Hub()
    sub, sink = _live(hub)
    for seq in (1, 2, 3):
        hub.publish("cmd-1", *_event(seq))
    hub.publish("cmd-1", *_event(5))
    assert hub.publish("cmd-1", *_event(6)) == []  # already replaying: buffered, not a new gap

    hub.finish_replay(sub, [_event(4), _event(5)])

    assert sink.received == [f'{{"seq":{n}}}' for n in (1, 2, 3, 4, 5, 6)]
    assert (sub.last_seq, sub.replaying, sub.pending) == (6, False, [])


def test_begin_replay_buffers_live_events_again() -> None:
    hub = Hub()
    sub, sink = _live(hub)
    hub.publish("cmd-1", *_event(1))

    hub.begin_replay(sub)
    hub.publish("cmd-1", *_event(2))

    assert sink.received == ['{"seq":1}']
    hub.finish_replay(sub, [_event(1), _event(2)])
    assert sink.received == ['{"seq":1}', '{"seq":2}']


def test_a_stale_live_subscription_is_resynced_a_replaying_one_reads_the_log_once_more() -> None:
    """After a lost Pub/Sub connection: never two replays of one subscription at once."""
    hub = Hub()
    live, _ = _live(hub)
    assert hub.mark_stale(live) is True  # the caller reads the log after its position
    assert live.replaying

    replaying = Subscription("cmd-1", Recorder())  # its first replay has not finished
    hub.add(replaying)
    hub.publish("cmd-1", *_event(1))
    assert hub.mark_stale(replaying) is False  # its own replay covers it...
    assert replaying.truncated  # ...by reading the log once more before going live
    assert (replaying.replaying, replaying.pending) == (True, [_event(1)])


def test_a_sink_that_cannot_keep_up_marks_the_subscription_overflowed() -> None:
    hub = Hub()
    sub, sink = _live(hub)
    sink.accept = False

    hub.publish("cmd-1", *_event(1))
    hub.publish("cmd-1", *_event(2))
    hub.publish("cmd-1", *_event(3))

    assert sub.overflowed is True
    assert sink.received == ['{"seq":1}']


def test_an_overflowed_subscription_gets_no_more_replayed_events() -> None:
    hub = Hub()
    sink = Recorder(accept=False)
    sub = Subscription("cmd-1", sink)
    hub.add(sub)

    hub.finish_replay(sub, [_event(1), _event(2), _event(3)])

    assert sub.overflowed is True
    assert sink.received == ['{"seq":1}']


def test_an_overflowed_subscription_does_not_hold_back_the_others() -> None:
    hub = Hub()
    slow_sub, slow = _live(hub)
    _, fast = _live(hub)
    slow.accept = False

    hub.publish("cmd-1", *_event(1))
    hub.publish("cmd-1", *_event(2))

    assert slow_sub.overflowed is True
    assert slow.received == ['{"seq":1}']
    assert fast.received == ['{"seq":1}', '{"seq":2}']


def test_a_replay_can_be_delivered_in_steps_before_going_live() -> None:
    hub = Hub()
    sink = Recorder()
    sub = Subscription("cmd-1", sink)
    hub.add(sub)
    hub.publish("cmd-1", *_event(3))

    hub.replay(sub, [_event(1)])
    hub.replay(sub, [_event(2), _event(3)])
    assert hub.go_live(sub) is False  # event 3 is still buffered
    hub.replay(sub, hub.take_pending(sub), live=True)

    assert hub.go_live(sub) is True
    assert sink.received == [f'{{"seq":{n}}}' for n in (1, 2, 3)]
    assert (hub.stats.replayed, hub.stats.delivered, hub.stats.duplicates) == (3, 0, 1)
    hub.publish("cmd-1", *_event(4))
    assert sink.received[-1] == '{"seq":4}'


def test_an_overflowing_live_buffer_is_emptied_and_marked_truncated() -> None:
    hub = Hub(max_pending=3)
    sub = Subscription("cmd-1", Recorder())
    hub.add(sub)

    for seq in (1, 2, 3, 4):
        hub.publish("cmd-1", *_event(seq))

    assert sub.truncated is True
    assert sub.pending == [_event(4)]
