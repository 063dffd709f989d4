"""Thumbnails: a keyframe of a real fMP4 segment decoded with PyAV into a JPEG."""

from __future__ import annotations

import io

import av
import pytest

from watch.thumbnails import keyframe_jpeg


def fragmented_mp4(seconds: float = 1.0) -> tuple[bytes, bytes]:
    """A 640x360 test pattern as an init segment and one media segment."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4",
                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.thread_count = 1
        for n in range(int(30 * seconds)):
            frame = av.VideoFrame(640, 360, "rgb24")
            frame.planes[0].update(bytes([(n * 7) % 256, 40, 200]) * (640 * 360))
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = buffer.getvalue()
    moof = data.index(b"moof") - 4
    return data[:moof], data[moof:]


def test_a_keyframe_becomes_a_small_jpeg() -> None:
    init, segment = fragmented_mp4()
    jpeg = keyframe_jpeg(init, segment)
    assert jpeg is not None
    assert jpeg[:2] == b"\xff\xd8"  # a JPEG
    with av.open(io.BytesIO(jpeg)) as picture:
        frame = next(picture.decode(video=0))
    assert (frame.width, frame.height) == (320, 180)


def test_garbage_is_an_error_not_a_crash() -> None:
    with pytest.raises(av.error.FFmpegError):
        keyframe_jpeg(b"\x00" * 100, b"\x00" * 100)
