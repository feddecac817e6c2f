"""PartSequencer: whatever the broker does (duplicates, reordering), parts come out once,
in order, and nothing after the final one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.mqtt import AnswerError, AnswerMessage
from workers.mqtt_parts import PartSequencer


def part(sequence: int, *, final: bool = False, error: bool = False) -> AnswerMessage:
    return AnswerMessage(
        command_id="c",
        sequence=sequence,
        is_final=final,
        error=AnswerError(code="ecu_not_responding", message="no") if error else None,
    )


@given(
    length=st.integers(min_value=1, max_value=20),
    data=st.data(),
)
def test_any_delivery_order_with_duplicates_yields_each_part_once_in_order(
    length: int, data: st.DataObject
) -> None:
    parts = [part(n, final=n == length - 1) for n in range(length)]
    # Every part at least once, some more often, in any order.
    deliveries = parts + data.draw(st.lists(st.sampled_from(parts), max_size=3 * length))
    order = data.draw(st.permutations(deliveries))
    sequencer = PartSequencer()
    out = [p.sequence for delivered in order for p in sequencer.accept(delivered)]
    assert out == list(range(length))
    assert sequencer.finished
    assert sequencer.next_sequence == length
    assert sequencer.duplicates == len(order) - length


def test_an_error_part_ends_the_answer_and_later_parts_are_dropped() -> None:
    sequencer = PartSequencer()
    assert [p.sequence for p in sequencer.accept(part(1))] == []
    assert [p.sequence for p in sequencer.accept(part(0, error=True))] == [0]
    assert sequencer.finished
    assert sequencer.accept(part(2)) == []
