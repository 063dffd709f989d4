"""The seam between the ingest and the platform: who may publish, and what happened.

Declared here, by the side that needs it; `platform/streams/gatekeeper.py` implements it
with the database, tests pass a fake. Every call is awaited from the ingest's event loop
and may take a database round trip, never a per-packet one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ingest.health import StreamHealth
from transcoder.ladder import Rung


class EndReason(StrEnum):
    """Why a publish ended. The values are the platform's live-session end reasons."""

    PUBLISHER_STOPPED = "publisher_stopped"
    CONNECTION_LOST = "connection_lost"
    NO_MEDIA = "no_media"
    PROTOCOL_ERROR = "protocol_error"
    SERVER_SHUTDOWN = "server_shutdown"
    FORCE_STOPPED = "force_stopped"

    @property
    def resumable(self) -> bool:
        """Whether the streamer may reconnect into the same session for a grace period:
        yes when the publisher left or was cut off, no when we ended it."""
        return self not in (EndReason.SERVER_SHUTDOWN, EndReason.FORCE_STOPPED)


class RefusalCode(StrEnum):
    """The onStatus code a refusal is sent with: OBS reacts the same way to both."""

    BAD_NAME = "NetStream.Publish.BadName"
    REJECTED = "NetStream.Publish.Rejected"


@dataclass(frozen=True, slots=True)
class PublishRequest:
    app: str
    # The stream key exactly as the client sent it: a secret, kept out of repr and logs.
    key: str = field(repr=False)
    peer_ip: str
    node: str


@dataclass(frozen=True, slots=True)
class Grant:
    """An admitted publish. ``session_id`` names the platform's live session row;
    ``resumed`` says it continues a session whose publisher reconnected within the grace
    period (the media sink carries on where the last connection stopped).

    ``transcode`` says the publish holds a transcode slot; ``ladder`` is the broadcast's
    own ladder, read with its channel at admission, for whatever transcodes it: None for
    the platform's default (GOLIVE_TRANSCODE_LADDER), no rungs for source only."""

    session_id: int
    channel: str
    partner: bool = False
    transcode: bool = True
    resumed: bool = False
    ladder: tuple[Rung, ...] | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused publish: the sentence the streamer's encoder will show, and why.

    ``reason`` is a stable machine word (``unknown_key``, ``banned``, ``already_live``,
    ``capacity`` …) for metrics; ``retry_after`` is seconds, when retrying can help.
    ``counts_as_failed_key`` makes the ingest slow down and cap this peer's attempts.
    ``takeover`` (with "already live", for the channel's current key) names the live
    session on this ingest node that the publish may replace if its publisher has gone
    silent: an encoder reconnecting before the server noticed its old connection drop.
    """

    code: RefusalCode
    reason: str
    description: str
    retry_after: int | None = None
    counts_as_failed_key: bool = False
    takeover: int | None = None


@dataclass(frozen=True, slots=True)
class StreamDescription:
    """What the publisher is sending, as far as its sequence headers and metadata say."""

    video_codec: str = ""
    audio_codec: str = ""
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None


class Gatekeeper(Protocol):
    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        """Checks the key and capacity and, on success, opens the live session."""
        ...

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool | Grant:
        """Reports a live stream's figures. False means: stop this publish now; True: go
        on. A `Grant` (of the same session) means: go on under these terms, which the
        platform changed (a source-only publish given a transcode slot that freed)."""
        ...

    async def release(
        self,
        grant: Grant,
        reason: EndReason,
        description: StreamDescription,
        health: StreamHealth,
    ) -> None:
        """Closes the live session. Called exactly once per grant, whatever ended it."""
        ...
