"""Where admitted media goes: one explicit interface, so the packager plugs in here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ingest.gatekeeper import EndReason, Grant
from transcoder.metadata import StreamMetadata
from transcoder.packets import MediaPacket, TrackKind

__all__ = ["MediaPacket", "MediaSink", "NullSink", "RecordingSink", "SinkFactory", "TrackKind"]


class MediaSink(Protocol):
    """Receives one publish. Methods are called from the ingest's event loop and must
    not block: hand heavy work to a thread or another process. ``regrant`` brings the
    platform's new terms for the publish (the same session: e.g. now transcoded)."""

    def metadata(self, metadata: StreamMetadata) -> None:
        """The publisher's onMetaData, as `transcoder.metadata.read_metadata` reads it."""
        ...

    def media(self, packet: MediaPacket) -> None: ...

    def regrant(self, grant: Grant) -> None: ...

    def end(self, reason: EndReason) -> None: ...


class SinkFactory(Protocol):
    def __call__(self, grant: Grant) -> MediaSink: ...


class NullSink:
    """Drops everything: the ingest runs with it until a packager is configured."""

    def metadata(self, metadata: StreamMetadata) -> None:
        pass

    def media(self, packet: MediaPacket) -> None:
        pass

    def regrant(self, grant: Grant) -> None:
        pass

    def end(self, reason: EndReason) -> None:
        pass


@dataclass
class RecordingSink:
    """Keeps a summary of what it was given (tests, and the ingest benchmark)."""

    grant: Grant
    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    sequence_headers: list[MediaPacket] = field(default_factory=list)
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    metadata_values: list[StreamMetadata] = field(default_factory=list)
    ended: EndReason | None = None
    keep_packets: bool = False
    packets: list[MediaPacket] = field(default_factory=list)
    regrants: list[Grant] = field(default_factory=list)

    def metadata(self, metadata: StreamMetadata) -> None:
        self.metadata_values.append(metadata)

    def media(self, packet: MediaPacket) -> None:
        if packet.sequence_header:
            self.sequence_headers.append(
                MediaPacket(
                    packet.kind,
                    packet.codec,
                    packet.timestamp,
                    bytes(packet.data),
                    sequence_header=True,
                )
            )
            return
        if packet.kind is TrackKind.VIDEO:
            self.video_frames += 1
            self.keyframes += packet.keyframe
            if self.first_timestamp is None:
                self.first_timestamp = packet.timestamp
            self.last_timestamp = packet.timestamp
        else:
            self.audio_frames += 1
        if self.keep_packets:
            self.packets.append(packet)

    def regrant(self, grant: Grant) -> None:
        self.grant = grant
        self.regrants.append(grant)

    def end(self, reason: EndReason) -> None:
        self.ended = reason
