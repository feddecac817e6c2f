"""PartSequencer: numbered parts released in order, each once, whatever the arrival."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.sequencing import PartSequencer, SequenceError


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """An answer of ``n`` parts delivered shuffled, with duplicates, every part at least once."""
    n = draw(st.integers(min_value=1, max_value=30))
    extra = draw(st.lists(st.integers(min_value=0, max_value=n - 1), max_size=10))
    order = draw(st.permutations([*range(n), *extra]))
    return n, order


@given(deliveries())
def test_every_part_is_released_once_in_order_and_the_answer_ends_at_the_final_one(
    case: tuple[int, list[int]],
) -> None:
    n, order = case
    sequencer: PartSequencer[str] = PartSequencer()
    released: list[str] = []
    for number in order:
        released += sequencer.accept(number, f"part {number}", is_final=number == n - 1)
        if sequencer.done:
            break
    assert released == [f"part {i}" for i in range(n)]
    assert sequencer.done is True
    assert sequencer.missing == []


@given(deliveries(), st.data())
def test_before_the_end_the_released_parts_are_a_prefix_and_missing_names_the_gap(
    case: tuple[int, list[int]], data: st.DataObject
) -> None:
    n, order = case
    cut = data.draw(st.integers(min_value=0, max_value=len(order)))
    sequencer: PartSequencer[int] = PartSequencer()
    released: list[int] = []
    for number in order[:cut]:
        released += sequencer.accept(number, number, is_final=number == n - 1)
    seen = set(order[:cut])
    prefix = 0
    while prefix in seen:
        prefix += 1
    assert released == list(range(prefix))
    later = [s for s in seen if s > prefix]
    if later and not sequencer.done:
        assert sequencer.missing == [i for i in range(prefix, max(later)) if i not in seen]


def test_a_duplicate_is_counted_and_dropped() -> None:
    sequencer: PartSequencer[str] = PartSequencer()
    assert sequencer.accept(0, "a", is_final=False) == ["a"]
    assert sequencer.accept(0, "a again", is_final=False) == []
    assert sequencer.accept(1, "b", is_final=True) == ["b"]
    assert sequencer.accept(1, "b again", is_final=True) == []
    assert sequencer.duplicates == 2


def test_a_negative_number_is_refused() -> None:
    with pytest.raises(SequenceError, match="negative"):
        PartSequencer[str]().accept(-1, "x", is_final=False)


def test_a_part_after_the_final_one_is_refused() -> None:
    sequencer: PartSequencer[str] = PartSequencer()
    sequencer.accept(2, "c", is_final=True)
    with pytest.raises(SequenceError, match="after the final part 2"):
        sequencer.accept(3, "d", is_final=False)


def test_a_final_part_before_one_already_held_is_refused() -> None:
    sequencer: PartSequencer[str] = PartSequencer()
    sequencer.accept(3, "d", is_final=False)
    with pytest.raises(SequenceError, match="final part 1 comes before part 3"):
        sequencer.accept(1, "b", is_final=True)


def test_a_gap_that_holds_too_many_parts_is_refused() -> None:
    sequencer: PartSequencer[int] = PartSequencer(max_held=3)
    for number in (1, 2, 3):
        sequencer.accept(number, number, is_final=False)
    with pytest.raises(SequenceError, match="more than 3 parts wait for part 0"):
        sequencer.accept(4, 4, is_final=False)
    assert sequencer.accept(0, 0, is_final=False) == [0, 1, 2, 3]
