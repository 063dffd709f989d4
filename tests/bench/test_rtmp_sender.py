"""The ingest benchmark's sender: what it writes is the file's tags, chunked as ffmpeg does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.protocol import ChunkReader, ChunkWriter, SetChunkSize, decode_data, encode_control
from tests.bench.rtmp_sender import CHUNK_SIZE, build_schedule, read_flv
from tests.support.encoders import encode_flv


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sender") / "clip.flv"
    path.write_bytes(encode_flv("libx264", {"preset": "ultrafast", "tune": "zerolatency"}))
    return path


@pytest.mark.parametrize("writes", ["chunk", "message"])
def test_the_schedule_reads_back_as_the_files_tags_looped(flv: Path, writes: str) -> None:
    tags = read_flv(flv)
    schedule = build_schedule(tags, writes)
    reader = ChunkReader()
    reader.feed(ChunkWriter().encode(encode_control(SetChunkSize(CHUNK_SIZE))))
    loops = 3
    stream = b"".join(piece for _, pieces in schedule.start for piece in pieces)
    stream += b"".join(piece for _, pieces in schedule.loop for piece in pieces) * (loops - 1)

    messages = reader.feed(stream)

    media = [t for t in tags if t.type_id in (8, 9) and not t.sequence_header and not t.end]
    headers = [t for t in tags if t.type_id in (8, 9) and t.sequence_header]
    metadata, *rest = messages
    assert decode_data(metadata.payload)[0][:2] == ["@setDataFrame", "onMetaData"]
    assert [(m.type_id, m.payload) for m in rest[: len(headers)]] == [
        (t.type_id, t.data) for t in headers
    ]
    looped = rest[len(headers) :]
    assert len(looped) == len(media) * loops
    start = media[0].timestamp
    for index, message in enumerate(looped):
        tag = media[index % len(media)]
        assert (message.type_id, message.payload) == (tag.type_id, tag.data)
        expected = tag.timestamp - start + (index // len(media)) * schedule.loop_ms
        assert message.timestamp == expected
    if writes == "chunk":
        assert all(len(p) <= CHUNK_SIZE + 12 for _, pieces in schedule.loop for p in pieces)
