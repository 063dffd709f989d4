"""The publisher's onMetaData, read once, by one set of rules.

Encoders send `@setDataFrame("onMetaData", {...})` with what they mean to send: size,
frame rate, data rates. The ingest fills in the stream description with it where the
sequence headers are silent, and the packager takes its size hint and bandwidth estimate
from it; both read it here, so a value one believes the other never contradicts.
Metadata may lie or be malformed: a field that is not a plausible number is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# Beyond these an onMetaData figure is nonsense, not a stream: 16-bit picture sizes (as
# in every codec configuration), frame rates a camera makes, rates a link carries.
MAX_DIMENSION = 65535
MAX_FRAME_RATE = 1000.0
MAX_DATA_RATE_KBPS = 1_000_000.0


@dataclass(frozen=True, slots=True)
class StreamMetadata:
    """What onMetaData says, each field None when absent or implausible. ``width`` and
    ``height`` are pixels, ``frame_rate`` frames a second, data rates kbit/s (as
    onMetaData gives them)."""

    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    video_data_rate: float | None = None
    audio_data_rate: float | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) when both are known."""
        if self.width is None or self.height is None:
            return None
        return self.width, self.height

    @property
    def bandwidth_estimate(self) -> int | None:
        """Bits a second: the data rates added up, None when neither is known."""
        known = [r for r in (self.video_data_rate, self.audio_data_rate) if r is not None]
        return round(sum(known) * 1000) if known else None

    def updated(self, newer: StreamMetadata) -> StreamMetadata:
        """This metadata with what ``newer`` knows on top (a later onMetaData)."""
        return StreamMetadata(
            width=newer.width if newer.width is not None else self.width,
            height=newer.height if newer.height is not None else self.height,
            frame_rate=newer.frame_rate if newer.frame_rate is not None else self.frame_rate,
            video_data_rate=_either(newer.video_data_rate, self.video_data_rate),
            audio_data_rate=_either(newer.audio_data_rate, self.audio_data_rate),
        )


def read_metadata(values: Mapping[str, object]) -> StreamMetadata:
    """The figures of an onMetaData object (its AMF properties). Never raises."""
    rate = _number(values.get("framerate"), MAX_FRAME_RATE)
    if rate is None:
        rate = _number(values.get("videoframerate"), MAX_FRAME_RATE)
    return StreamMetadata(
        width=_dimension(values.get("width")),
        height=_dimension(values.get("height")),
        frame_rate=rate,
        video_data_rate=_number(values.get("videodatarate"), MAX_DATA_RATE_KBPS),
        audio_data_rate=_number(values.get("audiodatarate"), MAX_DATA_RATE_KBPS),
    )


def _number(value: object, ceiling: float) -> float | None:
    """A positive finite number up to ``ceiling`` (AMF numbers are floats), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) and 0 < number <= ceiling else None


def _dimension(value: object) -> int | None:
    number = _number(value, MAX_DIMENSION)
    return round(number) if number is not None and number >= 1 else None


def _either(first: float | None, second: float | None) -> float | None:
    return first if first is not None else second
