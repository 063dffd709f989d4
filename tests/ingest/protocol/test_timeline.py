from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.protocol.timeline import WRAP, Timeline


def test_first_timestamp_starts_the_timeline_as_is() -> None:
    assert Timeline().extend(123_456) == 123_456


def test_32_bit_millisecond_wrap_keeps_the_timeline_increasing() -> None:
    timeline = Timeline()

    values = [timeline.extend(t) for t in (WRAP - 20, WRAP - 1, 0, 15, 2_000)]

    assert values == [WRAP - 20, WRAP - 1, WRAP, WRAP + 15, WRAP + 2_000]


def test_small_backward_step_goes_back_instead_of_wrapping() -> None:
    timeline = Timeline()
    timeline.extend(10_000)

    assert timeline.extend(9_000) == 9_000


def test_backward_step_just_after_a_wrap_returns_to_the_previous_epoch() -> None:
    timeline = Timeline()
    timeline.extend(WRAP - 10)
    timeline.extend(5)

    assert timeline.extend(WRAP - 3) == WRAP - 3


def test_backward_step_below_zero_is_read_as_a_late_first_epoch_timestamp() -> None:
    timeline = Timeline()
    timeline.extend(5)

    assert timeline.extend(WRAP - 16) == WRAP - 16


def test_second_wrap_lands_in_the_third_epoch() -> None:
    timeline = Timeline()
    for t in range(0, 3 * WRAP, 1 << 30):
        timeline.extend(t % WRAP)

    assert timeline.last == 3 * WRAP - (1 << 30)


@given(
    start=st.integers(0, WRAP - 1),
    steps=st.lists(st.integers(0, (1 << 31) - 1), max_size=50),
)
def test_forward_steps_below_2_31_are_recovered_exactly(start: int, steps: list[int]) -> None:
    timeline = Timeline()
    expected = start
    assert timeline.extend(start) == start
    for step in steps:
        expected += step
        assert timeline.extend(expected % WRAP) == expected
