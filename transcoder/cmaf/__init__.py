"""CMAF packaging for LL-HLS: a publish's packets in, fMP4 init segment, parts and
segments out. Passthrough (no decode, no encode), pure (no I/O, no clocks)."""

from __future__ import annotations

from transcoder.cmaf.fmp4 import UnsupportedCodec
from transcoder.cmaf.packager import (
    InitInfo,
    Packager,
    PackagerError,
    PackagerOutput,
    PackagerSettings,
    PartInfo,
    SegmentInfo,
)

__all__ = [
    "InitInfo",
    "Packager",
    "PackagerError",
    "PackagerOutput",
    "PackagerSettings",
    "PartInfo",
    "SegmentInfo",
    "UnsupportedCodec",
]
