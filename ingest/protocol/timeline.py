"""32-bit RTMP millisecond timestamps extended onto a 64-bit timeline."""

from __future__ import annotations

WRAP = 1 << 32
_MASK = WRAP - 1
_HALF = 1 << 31


class Timeline:
    """Extends wrapping 32-bit millisecond timestamps into non-negative integers.

    Each value is read as the nearest point to the previous one: a step of less than
    2^31 ms either way is taken at face value, so a backward jump of more than 2^31 is
    a forward wrap (the 49.7-day rollover). The first value starts the timeline as is.
    Pure: no clock, no I/O.
    """

    __slots__ = ("_last", "_last32")

    def __init__(self) -> None:
        self._last32 = -1
        self._last = 0

    @property
    def last(self) -> int | None:
        """The last extended value, in milliseconds; None before the first."""
        return None if self._last32 < 0 else self._last

    def extend(self, timestamp32: int) -> int:
        """Place a 32-bit millisecond timestamp on the timeline; returns milliseconds."""
        timestamp32 &= _MASK
        if self._last32 < 0:
            extended = timestamp32
        else:
            extended = extend_after(self._last32, self._last, timestamp32)
        self._last32 = timestamp32
        self._last = extended
        return extended


def extend_after(last32: int, last: int, timestamp32: int) -> int:
    """Where ``timestamp32`` falls on a timeline whose last value was ``last32``, extended
    to ``last`` (the rule of `Timeline`, for a reader that keeps those two itself). A step
    forward of less than 2^31 is simply ``last + step``."""
    step = (timestamp32 - last32) & _MASK
    if step >= _HALF:
        step -= WRAP
    extended = last + step
    if extended < 0:
        # A small step back from the first epoch has nowhere to go: the value is simply
        # a late timestamp of epoch 0.
        extended = timestamp32 & _MASK
    return extended
