"""Ramp shapes: when each virtual viewer joins and leaves, in seconds from the start.

- ``surge``: viewers arrive at ``rate`` a second (default the 50,000 a minute of a launch
  that went viral) until there are ``viewers`` of them, and stay;
- ``relaunch``: everyone arrives over ``ramp`` seconds; halfway through the run the stream
  is relaunched: everyone drops, half come back at once, half are lost;
- ``plateau``: everyone arrives over ``ramp`` seconds and stays.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("surge", "relaunch", "plateau")
LAUNCH_RATE = 50_000 / 60  # viewers a second


@dataclass(frozen=True, slots=True)
class Slot:
    join: float
    leave: float | None  # None: stays to the end


def schedule(
    shape: str, viewers: int, seconds: float, *, ramp: float = 5.0, rate: float = LAUNCH_RATE
) -> list[Slot]:
    if shape not in SHAPES:
        raise ValueError(f"shape is one of {', '.join(SHAPES)}, not {shape!r}")
    if viewers < 1 or seconds <= 0:
        raise ValueError("at least one viewer and a positive duration")
    spread = max(ramp, 0.0)
    if shape == "surge":
        spread = viewers / rate if rate > 0 else 0.0
    joins = [spread * i / viewers for i in range(viewers)]
    if shape != "relaunch":
        return [Slot(at, None) for at in joins]
    relaunch = max(seconds / 2, spread)
    slots = []
    for i, at in enumerate(joins):
        slots.append(Slot(at, relaunch))
        if i % 2 == 0:  # half the audience comes back at once; the other half is lost
            slots.append(Slot(relaunch, None))
    return slots
