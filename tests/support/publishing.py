"""Publishing in the ingest tests: a raw RTMP publish's answer, and a clip through a media
sink as the ingest feeds one."""

from __future__ import annotations

from ingest.gatekeeper import EndReason
from ingest.sink import MediaSink
from tests.ingest.clients import RawPublisher
from tests.transcoder.cmaf.media import Clip
from transcoder.metadata import read_metadata


def publish_start(client: RawPublisher, key: str) -> dict[str, object]:
    """Publishes with ``key``; the onStatus the server answered with."""
    client.connect_and_publish(key)
    assert client.read_until(lambda commands: any(c.name == "onStatus" for c in commands))
    status = next(c for c in client.commands() if c.name == "onStatus").args[0]
    assert isinstance(status, dict)
    return status


def publish(
    sink: MediaSink, clip: Clip, reason: EndReason = EndReason.PUBLISHER_STOPPED
) -> None:
    """A clip through ``sink`` as the ingest would feed it, ending with ``reason``."""
    sink.metadata(read_metadata({"width": 1280.0, "height": 720.0, "encoder": "obs-output"}))
    for header in clip.headers():
        sink.media(header)
    for frame in clip.frames:
        sink.media(frame.packet(memoryview(frame.data)))
    sink.end(reason)
