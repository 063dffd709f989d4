"""Codec records as FFmpeg writes them: a few frames encoded with PyAV in memory, muxed
and demuxed again, and the record (extradata) FFmpeg exports; HLS and DASH renditions
written by FFmpeg's own muxers, for the codec strings they name."""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from tests.scheduling import drop_realtime


def _require(encoder: str) -> None:
    if encoder not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {encoder}")


def _video_frame(width: int, height: int, pix_fmt: str, index: int) -> Any:
    frame = av.VideoFrame(width, height, pix_fmt)
    # 10-bit formats hold little-endian 16-bit samples; keep them inside 10 bits.
    if pix_fmt.endswith("le"):
        sample = (256 + 8 * index).to_bytes(2, "little")
    else:
        sample = bytes([64 + 8 * index])
    for plane in frame.planes:
        plane.update(sample * (plane.buffer_size // len(sample)))
    frame.pts = index
    return frame


@functools.cache
def encode_video(
    encoder: str,
    width: int,
    height: int,
    pix_fmt: str = "yuv420p",
    options: tuple[tuple[str, str], ...] = (),
    container: str = "mp4",
    rate: Fraction = Fraction(30),
) -> bytes:
    """Encode three frames, mux them, demux, and return the codec record FFmpeg exports."""
    _require(encoder)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(encoder, rate=rate, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index in range(3):
            for packet in stream.encode(_video_frame(width, height, pix_fmt, index)):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    drop_realtime()  # SVT-AV1 leaves the process SCHED_FIFO
    buffer.seek(0)
    with av.open(buffer, format=container) as demuxed:
        return bytes(demuxed.streams.video[0].codec_context.extradata or b"")


def _encode_audio_frames(stream: Any, output: Any, layout: str, count: int) -> None:
    context = stream.codec_context
    samples = context.frame_size or 1024
    for index in range(count):
        frame = av.AudioFrame(format=context.format.name, layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = context.sample_rate
        frame.pts = index * samples
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)


@functools.cache
def encode_audio(encoder: str, sample_rate: int, layout: str, container: str = "mp4") -> bytes:
    _require(encoder)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(encoder, rate=sample_rate, layout=layout)
        _encode_audio_frames(stream, output, layout, 5)
    buffer.seek(0)
    with av.open(buffer, format=container) as demuxed:
        return bytes(demuxed.streams.audio[0].codec_context.extradata or b"")


def encode_hls(
    directory: Path, encoder: str, options: dict[str, str], codec_tag: str | None = None
) -> tuple[str, bytes, bytes]:
    """Write an fMP4 HLS rendition with AAC; return FFmpeg's CODECS and both init records."""
    _require(encoder)
    muxer_options = {"master_pl_name": "master.m3u8", "hls_segment_type": "fmp4"}
    with av.open(str(directory / "v.m3u8"), "w", format="hls", options=muxer_options) as out:
        video = out.add_stream(encoder, rate=30, options=options)
        video.width, video.height, video.pix_fmt = 642, 362, "yuv420p"
        video.bit_rate = 500_000  # hlsenc writes no variant without a bandwidth
        if codec_tag:
            video.codec_tag = codec_tag
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        audio.bit_rate = 128_000
        # Shorter renditions give hlsenc no bandwidth and so no variant line.
        for index in range(30):
            frame = _video_frame(642, 362, "yuv420p", index % 8)
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        _encode_audio_frames(audio, out, "stereo", 3)
    match = re.search(r'CODECS="([^"]+)"', (directory / "master.m3u8").read_text())
    assert match, "hlsenc wrote no CODECS attribute"
    with av.open(str(directory / "init.mp4")) as init:
        video_record = bytes(init.streams.video[0].codec_context.extradata)
        audio_record = bytes(init.streams.audio[0].codec_context.extradata)
    return match.group(1), video_record, audio_record


def encode_dash(directory: Path, encoder: str, pix_fmt: str, hdr: bool) -> tuple[str, bytes]:
    """Write a DASH rendition; return FFmpeg's codecs attribute and the init segment."""
    _require(encoder)
    # MP4 segments even for VP9, for which the muxer would pick WebM.
    options = {"dash_segment_type": "mp4"}
    with av.open(str(directory / "m.mpd"), "w", format="dash", options=options) as out:
        video = out.add_stream(encoder, rate=30)
        video.width, video.height, video.pix_fmt = 642, 362, pix_fmt
        if hdr:  # BT.2020 primaries and matrix, PQ transfer, full range
            context = video.codec_context
            context.color_primaries, context.color_trc, context.colorspace = 9, 16, 9
            context.color_range = 2
        for index in range(10):
            for packet in video.encode(_video_frame(642, 362, pix_fmt, index)):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    drop_realtime()  # SVT-AV1 leaves the process SCHED_FIFO
    match = re.search(r'codecs="([^"]+)"', (directory / "m.mpd").read_text())
    assert match, "the DASH muxer wrote no codecs attribute"
    (init,) = directory.glob("init*")
    return match.group(1), init.read_bytes()


def find_box(mp4: bytes, box_type: bytes) -> bytes:
    """The payload of the first box of that type, found by its name (enough for an init)."""
    start = mp4.index(box_type)
    size = int.from_bytes(mp4[start - 4 : start], "big")
    return mp4[start + 4 : start - 4 + size]


X265_FAST = (("preset", "ultrafast"),)


# -- a short FLV as FFmpeg's muxer writes it (what `ffmpeg -f flv rtmp://...` publishes) --

WIDTH, HEIGHT = 320, 240  # of encode_flv's video


@dataclass(frozen=True)
class FlvTag:
    type_id: int
    timestamp: int
    body: bytes


def walk_flv(data: bytes) -> Iterator[FlvTag]:
    assert data[:3] == b"FLV"
    offset = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    while offset + 11 <= len(data):
        type_id = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        timestamp = int.from_bytes(data[offset + 4 : offset + 7], "big") | data[offset + 7] << 24
        yield FlvTag(type_id, timestamp, data[offset + 11 : offset + 11 + size])
        offset += 11 + size + 4


def encode_flv(video_codec: str, options: dict[str, str] | None = None) -> bytes:
    """Ten WIDTH x HEIGHT frames at 25/s and four AAC frames, muxed to FLV by FFmpeg
    (PyAV): legacy tags for H.264, Enhanced RTMP for HEVC and AV1."""
    try:
        av.Codec(video_codec, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        pytest.skip(f"this PyAV build has no {video_codec} encoder")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as container:
        video = container.add_stream(video_codec, rate=25, options=options or {})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for index in range(10):
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(index * 25 + 16) % 256]) * plane.buffer_size)
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        drop_realtime()  # SVT-AV1 leaves the process SCHED_FIFO
        for index in range(4):
            samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            samples.planes[0].update(bytes(samples.planes[0].buffer_size))
            samples.sample_rate = 44100
            samples.pts = index * 1024
            container.mux(audio.encode(samples))
        container.mux(audio.encode(None))
    return buffer.getvalue()
