"""The 720p30 H.264/AAC source every packager test shares, and its packaged output."""

from __future__ import annotations

import pytest

from ingest.cmaf import Packager
from tests.ingest.cmaf.media import Clip, Collector, demux_flv, encode_flv_cli, feed

# Two and a half GOPs: two whole 2 s segments and a 1 s one cut by the end of the publish.
SECONDS = 5


@pytest.fixture(scope="session")
def source_flv() -> bytes:
    return encode_flv_cli(SECONDS)


@pytest.fixture(scope="session")
def clip(source_flv: bytes) -> Clip:
    return demux_flv(source_flv)


@pytest.fixture(scope="session")
def packaged(clip: Clip) -> Collector:
    """The clip through a packager with default settings (do not modify)."""
    output = Collector()
    feed(Packager(output), clip)
    return output
