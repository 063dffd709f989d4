"""Every live playlist read three ways: the project's LL-HLS checker, the PyPI `m3u8`
parser, and hls-parser in strict mode (run through Node: the strictest public reader of
LL-HLS playlists, which enforces the draft's MUSTs and several of its SHOULDs).

`assert_conformant` takes a batch so that Node starts once for many playlists."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import m3u8
import pytest

from tests.support.services import REQUIRE_SERVICES
from tests.transcoder.hls.checker import check_media_playlist

ROOT = Path(__file__).resolve().parents[3]
STRICT_PARSE = Path(__file__).with_name("strict_parse.js")


def hls_parser_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs)"
    if not (ROOT / "node_modules" / "hls-parser").is_dir():
        return "hls-parser is not installed (./golive test runs npm ci)"
    return None


def strict_verdicts(texts: Sequence[str]) -> list[str | None]:
    """hls-parser's strict verdict per playlist: None, or the error it raised."""
    if missing := hls_parser_missing():
        if REQUIRE_SERVICES:
            pytest.fail(missing)
        pytest.skip(missing)
    done = subprocess.run(
        ["node", str(STRICT_PARSE)], input=json.dumps(list(texts)), capture_output=True,
        text=True, cwd=ROOT, timeout=60, check=True,
    )
    verdicts: list[str | None] = json.loads(done.stdout)
    assert len(verdicts) == len(texts)
    return verdicts


def m3u8_reading(text: str) -> m3u8.M3U8:
    """The PyPI parser in strict mode (it raises on a line it cannot parse)."""
    m3u8.parser.parse(text, strict=True)
    return m3u8.loads(text)


def assert_conformant(texts: Sequence[str]) -> None:
    failures = []
    for text, verdict in zip(texts, strict_verdicts(texts), strict=True):
        check_media_playlist(text, low_latency="#EXT-X-PART-INF" in text)
        reading = m3u8_reading(text)
        assert reading.segments or reading.segments == [], text
        if verdict is not None:
            failures.append(f"hls-parser: {verdict}\n{text}")
    assert not failures, failures[0]
