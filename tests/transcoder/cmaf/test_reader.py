"""The part reader gives back what the packager was given: sequence headers from its init
segments, and from its parts the packets (data, timestamps, composition offsets, key
frames) and the part's cut. Packaged again, the packets read back make the same bytes."""

from __future__ import annotations

import pytest

from tests.transcoder.cmaf.media import (
    Clip,
    Collector,
    demux_flv,
    encode_flv_cli,
    encode_flv_pyav,
    feed,
)
from tests.transcoder.cmaf.test_codecs import X265, require
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.cmaf.reader import ReadError, read_init, read_media
from transcoder.packets import TrackKind

SETTINGS = PackagerSettings(part_target=0.334)


@pytest.fixture(scope="module")
def clip() -> Clip:
    # B-frames (composition offsets), a 2 s GOP, AAC at 48 kHz: what OBS sends.
    return demux_flv(encode_flv_cli(5, width=320, height=180, rate=30))


def package(clip: Clip) -> Collector:
    output = Collector()
    feed(Packager(output, SETTINGS), clip)
    return output


def test_the_init_segment_gives_back_the_sequence_headers(clip: Clip) -> None:
    output = package(clip)
    init = read_init(output.inits[0][1])
    assert init.video is not None
    assert init.audio is not None
    assert (init.video.codec, init.video.record) == ("avc", clip.video_config)
    assert (init.audio.codec, init.audio.record) == ("aac", clip.audio_config)
    assert init.video.timescale == 90_000
    assert init.audio.timescale == 48_000
    headers = init.headers(40)
    assert [(h.kind, h.sequence_header, h.timestamp) for h in headers] == [
        (TrackKind.VIDEO, True, 40), (TrackKind.AUDIO, True, 40)]


def test_each_part_gives_back_its_frames_and_its_cut(clip: Clip) -> None:
    output = package(clip)
    init = read_init(output.inits[0][1])
    video = iter(clip.video)
    audio = iter(clip.audio)
    read_video = read_audio = 0
    for info, data in output.parts:
        media = read_media(init, data, anchor=(0, 1000.0))
        assert info.cut is not None
        assert (media.start, media.end) == (info.cut.start, info.cut.end)
        assert media.independent == info.independent
        times = [p.timestamp for p in media.packets]
        assert times == sorted(times)  # interleaved by decode time, as a publisher sends
        for packet in media.packets:
            assert packet.received_at == pytest.approx(1000.0 + packet.timestamp / 1000,
                                                       abs=0.002)
            if packet.kind is TrackKind.VIDEO:
                frame = next(video)
                read_video += 1
                assert (packet.timestamp, packet.composition_offset, packet.keyframe) == (
                    frame.timestamp, frame.composition_offset, frame.keyframe)
                assert packet.data == frame.data
                assert packet.codec == "avc"
            else:
                frame = next(audio)
                read_audio += 1
                assert packet.data == frame.data
                # The packager lays AAC frames back to back on the sample clock; the
                # publisher's milliseconds jitter around it.
                assert abs(packet.timestamp - frame.timestamp) <= 1
    assert read_video == len(clip.video)
    assert read_audio >= len(clip.audio) - 2  # the packager may hold the last frames back


def test_packets_read_back_are_packaged_into_the_same_bytes(clip: Clip) -> None:
    first = package(clip)
    init = read_init(first.inits[0][1])
    again = Collector()
    packager = Packager(again, SETTINGS)
    for header in init.headers():
        packager.push(header)
    for _info, data in first.parts:
        for packet in read_media(init, data).packets:
            packager.push(packet)
    packager.end()
    assert [d for _, d in again.inits] == [d for _, d in first.inits]
    # The last part's end is an estimate in both (its next frame never came).
    assert [d for _, d in again.parts][:-1] == [d for _, d in first.parts][:-1]
    assert [(i.msn, i.index) for i, _ in again.parts] == [(i.msn, i.index) for i, _ in first.parts]


def test_a_whole_segment_reads_as_its_parts_do(clip: Clip) -> None:
    output = package(clip)
    init = read_init(output.inits[0][1])
    info, data = output.segments[0]
    media = read_media(init, data)
    parts = [read_media(init, d) for i, d in output.parts if i.msn == info.msn]
    assert media.packets == tuple(p for part in parts for p in part.packets)
    assert (media.start, media.end) == (parts[0].start, parts[-1].end)


@pytest.mark.parametrize(
    ("video_encoder", "audio_encoder", "options"),
    [("libx265", "libopus", {"x265-params": X265}),
     ("libvpx-vp9", "aac", {"deadline": "realtime", "cpu-used": "8"})],
    ids=["hevc+opus", "vp9+aac"],
)
def test_other_codecs_read_back_too(
    video_encoder: str, audio_encoder: str, options: dict[str, str]
) -> None:
    require(video_encoder, audio_encoder)
    clip = demux_flv(encode_flv_pyav(video_encoder, audio_encoder, frames=45, options=options))
    output = Collector()
    feed(Packager(output, PackagerSettings(min_segment_duration=0.5)), clip)
    init = read_init(output.inits[0][1])
    assert init.video is not None
    assert init.audio is not None
    assert (init.video.codec, init.audio.codec) == (clip.video_codec, clip.audio_codec)
    if clip.video_codec == "hevc":
        assert init.video.record == clip.video_config
    if clip.audio_codec == "opus":
        # The OpusHead's fields survive (dOps has no version byte of its own).
        assert init.audio.record[9:] == clip.audio_config[9:]
    packets = [p for _, d in output.parts for p in read_media(init, d).packets]
    assert [p.data for p in packets if p.kind is TrackKind.VIDEO] == [
        f.data for f in clip.video]


def test_bad_bytes_are_a_read_error_not_a_crash(clip: Clip) -> None:
    output = package(clip)
    init_bytes = output.inits[0][1]
    init = read_init(init_bytes)
    part = output.parts[1][1]
    with pytest.raises(ReadError):
        read_init(b"\x00\x00\x00\x08free")
    with pytest.raises(ReadError):
        read_init(init_bytes[: len(init_bytes) // 2])
    with pytest.raises(ReadError):
        read_media(init, part[: len(part) - 10])
    with pytest.raises(ReadError):
        read_media(init, init_bytes)
    # A sample count far beyond anything a part holds.
    huge = bytearray(part)
    trun = huge.find(b"trun")
    huge[trun + 8 : trun + 12] = (10**6).to_bytes(4, "big")
    with pytest.raises(ReadError):
        read_media(init, bytes(huge))
