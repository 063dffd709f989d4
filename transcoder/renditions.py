"""Renditions as values: what a multivariant playlist says about each media playlist.

A `Rendition` is written into the live index beside its init segment (`LiveIndex.describe`)
by whoever packages it, so every origin process, embedded or cluster, renders the same
multivariant playlist and rendition reports from the index alone. The source (the
publisher's own encoding, passed through) is one rendition among others; a transcoded rung
is another instance of the same value.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

from transcoder.cmaf.packager import InitInfo

# The name of the publisher's own encoding: the one default every other name is compared to.
SOURCE = "source"

# Each description is stored as text in the index; a cap keeps a bad writer from filling it.
MAX_DESCRIPTION_BYTES = 1024
# RFC 6381 prefixes of the audio codecs a CMAF rendition may carry.
_AUDIO_CODECS = ("mp4a", "Opus", "ac-3", "ec-3", "fLaC")


@dataclass(frozen=True, slots=True)
class Rendition:
    """One media playlist of a broadcast, as EXT-X-STREAM-INF describes it.

    ``name`` is its path segment in URLs and its key in the live index (1-128 of
    ``[A-Za-z0-9_.-]``). ``bandwidth`` is the peak segment bit rate in bits/s (HLS
    BANDWIDTH), ``average_bandwidth`` the mean one (None until measured). ``codecs`` is the
    RFC 6381 list (HLS CODECS), audio included when ``audio`` (the audio is muxed into this
    rendition's segments). ``width``/``height`` in pixels and ``frame_rate`` in frames/s
    are None when unknown (or for an audio-only rendition).
    """

    name: str
    bandwidth: int
    codecs: str
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    audio: bool = True
    average_bandwidth: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bandwidth, int) or self.bandwidth <= 0:
            raise ValueError(f"rendition {self.name!r}: bandwidth {self.bandwidth!r} must be > 0")
        if not self.codecs or '"' in self.codecs or "\n" in self.codecs:
            raise ValueError(f"rendition {self.name!r}: bad CODECS {self.codecs!r}")
        if (self.width is None) != (self.height is None):
            raise ValueError(f"rendition {self.name!r}: width and height go together")
        if self.width is not None and (self.width <= 0 or (self.height or 0) <= 0):
            raise ValueError(f"rendition {self.name!r}: bad size {self.width}x{self.height}")
        rate = self.frame_rate
        if rate is not None and not (math.isfinite(rate) and 0 < rate <= 1000):
            raise ValueError(f"rendition {self.name!r}: bad frame rate {rate!r}")

    def with_bandwidth(self, peak: int, average: int | None = None) -> Rendition:
        return replace(self, bandwidth=peak, average_bandwidth=average)

    def to_text(self) -> str:
        """The form kept in the live index (`from_text` reads it back)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str | bytes) -> Rendition:
        """Raises ValueError for anything `to_text` did not write."""
        if len(text) > MAX_DESCRIPTION_BYTES:
            raise ValueError("rendition description too long")
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a rendition description: {error}") from None


def from_init(
    info: InitInfo,
    *,
    name: str = SOURCE,
    peak_bps: int | None = None,
    average_bps: int | None = None,
    first_part_bps: int | None = None,
) -> Rendition | None:
    """A packaged rendition's description from its init segment (the packager's
    `InitInfo`) and its bit rate: the peak measured over complete segments, else the
    publisher's own figure (onMetaData), else the first part's rate. None while none is
    known: a playlist must not advertise a BANDWIDTH nobody measured or was told."""
    bandwidth = peak_bps or info.bandwidth_estimate or first_part_bps
    if not bandwidth or bandwidth <= 0:
        return None
    audio = any(codec.strip().startswith(_AUDIO_CODECS) for codec in info.codecs.split(","))
    return Rendition(
        name=name,
        bandwidth=int(bandwidth),
        codecs=info.codecs,
        width=info.width,
        height=info.height,
        frame_rate=info.frame_rate,
        audio=audio,
        average_bandwidth=average_bps if peak_bps else None,
    )
