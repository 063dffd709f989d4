"""CMAF packaging for LL-HLS: a publish's packets in, fMP4 init segment, parts and
segments out. Passthrough (no decode, no encode), pure (no I/O, no clocks)."""

from __future__ import annotations

from ingest.cmaf.fmp4 import UnsupportedCodec
from ingest.cmaf.packager import (
    InitInfo,
    Packager,
    PackagerError,
    PackagerOutput,
    PackagerSettings,
    PartInfo,
    SegmentInfo,
)
from ingest.cmaf.sink import PackagerSink, packager_sink_factory

__all__ = [
    "InitInfo",
    "Packager",
    "PackagerError",
    "PackagerOutput",
    "PackagerSettings",
    "PackagerSink",
    "PartInfo",
    "SegmentInfo",
    "UnsupportedCodec",
    "packager_sink_factory",
]
