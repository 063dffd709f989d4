"""Reading the packager's fMP4 back into MediaPackets: an init segment's sequence headers,
and a part's (or segment's) samples with their timestamps and key frame flags.

A transcode session in a cluster worker follows the source rendition in the live index,
where it finds parts, not the publisher's packets: this turns them back into what the
ingest had handed the packager (`MediaPacket`s), so the same `TranscodeSession` runs on
them. It reads what `transcoder.cmaf.fmp4` writes (and CMAF fragments in general: moof +
mdat pairs, ``default-base-is-moof``, tfdt, trun with or without tfhd defaults).

Round trip: video timestamps come back in the packager's corrected milliseconds (its
90 kHz ticks / 90), composition offsets likewise, audio at the nearest millisecond of its
sample clock (the packager lays AAC frames back to back again from those). The wall clock
at which the ingest received each frame is not in the file: the caller gives an anchor
(a media time and its wall clock, e.g. a segment's start and its program-date-time) and
the rest is placed by media time.

Pure functions over bytes. The input comes from our own packager through the live index,
but every size is still checked against its box, and sample counts are capped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from transcoder.cmaf.boxes import Box, BoxError, Buffer, children, find_box, iter_boxes
from transcoder.cmaf.fmp4 import VIDEO_TIMESCALE
from transcoder.packets import MediaPacket, TrackKind

# Sample entry → the FLV codec name MediaPacket speaks, and the box holding its record.
_VIDEO_ENTRIES = {"avc1": ("avc", "avcC"), "avc3": ("avc", "avcC"), "hvc1": ("hevc", "hvcC"),
                  "hev1": ("hevc", "hvcC"), "av01": ("av1", "av1C"), "vp09": ("vp9", "vpcC")}
_AUDIO_ENTRIES = {"mp4a": "aac", "Opus": "opus"}
# VisualSampleEntry / AudioSampleEntry fields before their child boxes (ISO/IEC 14496-12
# 8.5.2, 12.1.3, 12.2.3).
_VISUAL_ENTRY_FIELDS = 78
_AUDIO_ENTRY_FIELDS = 28
# A part holds a third of a second; a segment at most the target duration. Far above
# either, and bounded, whatever a corrupt trun claims.
MAX_SAMPLES = 20_000
_NON_SYNC = 0x0001_0000  # sample_is_non_sync_sample (8.8.3.1)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I32 = struct.Struct(">i")


class ReadError(ValueError):
    """Bytes that are not a readable init segment or fragment (truncated or inconsistent
    boxes, a codec this reader does not know, a track the init does not describe)."""


@dataclass(frozen=True, slots=True)
class Track:
    """One track of an init segment: its id, kind, FLV codec name, clock (ticks per
    second) and sequence header (avcC/hvcC/av1C/vpcC payload, AudioSpecificConfig, or
    OpusHead), exactly what the ingest's sequence header packet carried."""

    track_id: int
    kind: TrackKind
    codec: str
    timescale: int
    record: bytes

    def header(self, timestamp: int = 0) -> MediaPacket:
        """The sequence header packet for this track (``timestamp`` in ms)."""
        return MediaPacket(self.kind, self.codec, timestamp, self.record, sequence_header=True)


@dataclass(frozen=True, slots=True)
class Init:
    """What an init segment describes: its tracks, video first."""

    tracks: tuple[Track, ...]

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks if t.kind is TrackKind.VIDEO), None)

    @property
    def audio(self) -> Track | None:
        return next((t for t in self.tracks if t.kind is TrackKind.AUDIO), None)

    def headers(self, timestamp: int = 0) -> list[MediaPacket]:
        return [track.header(timestamp) for track in self.tracks]

    def track(self, track_id: int) -> Track:
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        raise ReadError(f"a fragment names track {track_id}, which the init does not have")


@dataclass(frozen=True, slots=True)
class Media:
    """The samples of a part or segment as packets, in decode-time order (audio and video
    interleaved as a publisher sends them). ``start`` and ``end`` are the driving track's
    (video, else audio) span in 90 kHz ticks, as the packager's `Cut` gives them:
    ``start`` its first sample's decode time, ``end`` the last one's plus its duration.
    ``independent`` says the driving track starts with a sync sample."""

    packets: tuple[MediaPacket, ...]
    start: int
    end: int
    independent: bool


def read_init(data: Buffer) -> Init:
    """The tracks of an init segment (ftyp + moov). Raises ReadError."""
    try:
        moov = find_box(data, "moov")
        if moov is None:
            raise ReadError("no moov box: not an init segment")
        tracks = [_read_trak(data, trak) for trak in children(data, moov) if trak.kind == "trak"]
    except (BoxError, struct.error, IndexError) as error:
        raise ReadError(f"unreadable init segment: {error}") from error
    found = [t for t in tracks if t is not None]
    if not found:
        raise ReadError("the init segment has no audio or video track")
    found.sort(key=lambda t: (t.kind is not TrackKind.VIDEO, t.track_id))
    return Init(tuple(found))


def read_media(
    init: Init,
    data: Buffer,
    *,
    anchor: tuple[int, float] | None = None,
    starts_at: float | None = None,
) -> Media:
    """The packets of one or more moof + mdat pairs (a part, or a whole segment).

    ``anchor`` is (a time in 90 kHz ticks, its wall clock in Unix seconds): each packet's
    ``received_at`` is placed from it by media time. ``starts_at`` is the wall clock at
    this media's own start instead (a segment's first part and its program-date-time).
    Without either, ``received_at`` is 0. Raises ReadError."""
    try:
        return _read_media(init, data, anchor, starts_at)
    except (BoxError, struct.error, IndexError) as error:
        raise ReadError(f"unreadable fragment: {error}") from error


# ---------------------------------------------------------------------------------------
# Init segments


def _read_trak(data: Buffer, trak: Box) -> Track | None:
    tkhd = _child(data, trak, "tkhd")
    version = data[tkhd.payload]
    (track_id,) = _U32.unpack_from(data, tkhd.payload + (20 if version == 1 else 12))
    mdia = _child(data, trak, "mdia")
    mdhd = _child(data, mdia, "mdhd")
    version = data[mdhd.payload]
    (timescale,) = _U32.unpack_from(data, mdhd.payload + (20 if version == 1 else 12))
    if timescale <= 0:
        raise ReadError(f"track {track_id} has a timescale of 0")
    handler = bytes(data[_child(data, mdia, "hdlr").payload + 8 :][:4])
    stbl = find_box(data, "minf/stbl", mdia.payload, mdia.end)
    if stbl is None:
        raise ReadError(f"track {track_id} has no sample table")
    stsd = _child(data, stbl, "stsd")
    entry = next(iter_boxes(data, stsd.payload + 8, stsd.end), None)  # the first entry
    if entry is None:
        raise ReadError(f"track {track_id} has no sample entry")
    if handler == b"vide":
        codec_box = _VIDEO_ENTRIES.get(entry.kind)
        if codec_box is None:
            raise ReadError(f"video sample entry {entry.kind!r} is not supported")
        codec, config_kind = codec_box
        config = _child(data, entry, config_kind, skip=_VISUAL_ENTRY_FIELDS)
        record = bytes(data[config.payload : config.end])
        return Track(track_id, TrackKind.VIDEO, codec, timescale, record)
    if handler == b"soun":
        codec = _AUDIO_ENTRIES.get(entry.kind, "")
        if codec == "aac":
            esds = _child(data, entry, "esds", skip=_AUDIO_ENTRY_FIELDS)
            record = _audio_specific_config(bytes(data[esds.payload + 4 : esds.end]))
        elif codec == "opus":
            dops = _child(data, entry, "dOps", skip=_AUDIO_ENTRY_FIELDS)
            record = _opus_head(bytes(data[dops.payload : dops.end]))
        else:
            raise ReadError(f"audio sample entry {entry.kind!r} is not supported")
        return Track(track_id, TrackKind.AUDIO, codec, timescale, record)
    return None  # a track of another kind (text, metadata): not media we carry


def _child(data: Buffer, parent: Box, kind: str, skip: int = 0) -> Box:
    for found in children(data, parent, skip):
        if found.kind == kind:
            return found
    raise ReadError(f"no {kind} box in {parent.kind}")


def _descriptors(body: bytes) -> dict[int, bytes]:
    """MPEG-4 descriptors (ISO/IEC 14496-1 8.3.3) laid end to end: tag → payload."""
    found: dict[int, bytes] = {}
    position = 0
    while position < len(body):
        tag = body[position]
        position += 1
        size = 0
        for _ in range(4):
            byte = body[position]
            position += 1
            size = size << 7 | byte & 0x7F
            if not byte & 0x80:
                break
        if position + size > len(body):
            raise ReadError(f"descriptor {tag:#x} runs past its box")
        found[tag] = body[position : position + size]
        position += size
    return found


def _audio_specific_config(esds: bytes) -> bytes:
    es = _descriptors(esds).get(0x03)
    if es is None or len(es) < 3:
        raise ReadError("esds has no ES descriptor")
    flags = es[2]
    position = 3
    if flags & 0x80:  # streamDependenceFlag
        position += 2
    if flags & 0x40:  # URL_Flag
        position += 1 + es[position]
    if flags & 0x20:  # OCRstreamFlag
        position += 2
    decoder_config = _descriptors(es[position:]).get(0x04)
    if decoder_config is None or len(decoder_config) < 13:
        raise ReadError("esds has no decoder configuration")
    specific = _descriptors(decoder_config[13:]).get(0x05)
    if not specific:
        raise ReadError("esds has no AudioSpecificConfig")
    return specific


def _opus_head(dops: bytes) -> bytes:
    """OpusHead (RFC 7845 5.1, little-endian) from an OpusSpecificBox (big-endian)."""
    if len(dops) < 11:
        raise ReadError("dOps is truncated")
    channels = dops[1]
    pre_skip, input_rate, gain, family = struct.unpack_from(">HIhB", dops, 2)
    head = b"OpusHead" + bytes([1, channels]) + struct.pack("<HIhB", pre_skip, input_rate,
                                                            gain, family)
    if family != 0:
        mapping = dops[11 : 13 + channels]
        if len(mapping) < 2 + channels:
            raise ReadError("dOps channel mapping is truncated")
        head += mapping
    return head


# ---------------------------------------------------------------------------------------
# Fragments


@dataclass(slots=True)
class _Run:
    track: Track
    base: int  # decode time of the first sample, in the track's ticks
    durations: list[int]
    flags: list[int]
    offsets: list[int]  # composition offsets, ticks
    samples: list[bytes]


def _read_media(
    init: Init, data: Buffer, anchor: tuple[int, float] | None, starts_at: float | None
) -> Media:
    runs: list[_Run] = []
    boxes = [b for b in iter_boxes(data) if b.kind in ("moof", "mdat")]
    if not boxes:
        raise ReadError("no moof box: not a fragment")
    count = 0
    for moof, mdat in zip(boxes[::2], boxes[1::2], strict=False):
        if moof.kind != "moof" or mdat.kind != "mdat":
            raise ReadError("moof and mdat boxes do not alternate")
        for traf in children(data, moof):
            if traf.kind == "traf":
                run = _read_traf(init, data, traf, moof, mdat)
                count += len(run.samples)
                if count > MAX_SAMPLES:
                    raise ReadError(f"more than {MAX_SAMPLES} samples")
                runs.append(run)
    if len(boxes) % 2:
        raise ReadError("a moof without its mdat")
    driver = init.video or init.audio
    assert driver is not None  # read_init refuses an init without media
    driving = [r for r in runs if r.track is driver] or runs
    if not driving or not driving[0].samples:
        raise ReadError("the fragment holds no samples")
    first, last = driving[0], driving[-1]
    timescale = first.track.timescale
    start = first.base * VIDEO_TIMESCALE // timescale
    end = (last.base + sum(last.durations)) * VIDEO_TIMESCALE // timescale
    independent = first.track.kind is not TrackKind.VIDEO or not first.flags[0] & _NON_SYNC
    if starts_at is not None:
        anchor = (start, starts_at)

    timed: list[tuple[int, int, MediaPacket]] = []
    for order, run in enumerate(runs):
        track = run.track
        video = track.kind is TrackKind.VIDEO
        dts = run.base
        for index, sample in enumerate(run.samples):
            if video:
                ms = dts * 1000 // track.timescale
                offset = run.offsets[index] * 1000 // track.timescale
                keyframe = not run.flags[index] & _NON_SYNC
            else:
                ms = (dts * 1000 + track.timescale // 2) // track.timescale
                offset = 0
                keyframe = False
            received = 0.0
            if anchor is not None:
                received = anchor[1] + (dts * VIDEO_TIMESCALE // track.timescale - anchor[0]) / (
                    VIDEO_TIMESCALE
                )
            packet = MediaPacket(track.kind, track.codec, ms, sample, keyframe, False, offset,
                                 received)
            timed.append((dts * VIDEO_TIMESCALE // track.timescale, order, packet))
            dts += run.durations[index]
    timed.sort(key=lambda item: item[:2])
    return Media(tuple(p for _, _, p in timed), start, end, independent)


def _read_traf(init: Init, data: Buffer, traf: Box, moof: Box, mdat: Box) -> _Run:
    tfhd = _child(data, traf, "tfhd")
    tf_flags = int.from_bytes(data[tfhd.payload + 1 : tfhd.payload + 4], "big")
    (track_id,) = _U32.unpack_from(data, tfhd.payload + 4)
    track = init.track(track_id)
    position = tfhd.payload + 8
    if tf_flags & 0x01:  # base-data-offset: only moof-relative fragments are read
        raise ReadError("explicit base data offsets are not supported")
    if not tf_flags & 0x02_0000:
        raise ReadError("the fragment is not default-base-is-moof")
    defaults = {}
    for bit, name in ((0x02, "index"), (0x08, "duration"), (0x10, "size"), (0x20, "flags")):
        if tf_flags & bit:
            (defaults[name],) = _U32.unpack_from(data, position)
            position += 4
    tfdt = _child(data, traf, "tfdt")
    if data[tfdt.payload] == 1:
        (base,) = _U64.unpack_from(data, tfdt.payload + 4)
    else:
        (base,) = _U32.unpack_from(data, tfdt.payload + 4)
    run = _Run(track, base, [], [], [], [])
    offset = moof.start
    for trun in children(data, traf):
        if trun.kind != "trun":
            continue
        version = data[trun.payload]
        flags = int.from_bytes(data[trun.payload + 1 : trun.payload + 4], "big")
        (count,) = _U32.unpack_from(data, trun.payload + 4)
        if count > MAX_SAMPLES:
            raise ReadError(f"a trun of {count} samples")
        position = trun.payload + 8
        if flags & 0x001:
            (relative,) = _I32.unpack_from(data, position)
            offset = moof.start + relative
            position += 4
        first_flags = None
        if flags & 0x004:
            (first_flags,) = _U32.unpack_from(data, position)
            position += 4
        per_sample = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
        if position + per_sample * count > trun.end:
            raise ReadError("trun entries run past the box")
        for index in range(count):
            duration = _field(data, flags, 0x100, position, defaults.get("duration"))
            position += 4 if flags & 0x100 else 0
            size = _field(data, flags, 0x200, position, defaults.get("size"))
            position += 4 if flags & 0x200 else 0
            sample_flags = _field(data, flags, 0x400, position, defaults.get("flags", 0))
            position += 4 if flags & 0x400 else 0
            if index == 0 and first_flags is not None:
                sample_flags = first_flags
            composition = 0
            if flags & 0x800:
                unpack = _I32 if version else _U32
                (composition,) = unpack.unpack_from(data, position)
                position += 4
            if offset < mdat.payload or offset + size > mdat.end:
                raise ReadError("a sample lies outside its mdat")
            run.samples.append(bytes(data[offset : offset + size]))
            run.durations.append(duration)
            run.flags.append(sample_flags)
            run.offsets.append(composition)
            offset += size
    return run


def _field(data: Buffer, flags: int, bit: int, position: int, default: int | None) -> int:
    if flags & bit:
        return int(_U32.unpack_from(data, position)[0])
    if default is None:
        raise ReadError(f"trun lacks a field ({bit:#x}) and tfhd gives no default")
    return default


__all__ = ["MAX_SAMPLES", "Init", "Media", "ReadError", "Track", "read_init", "read_media"]
