"""The ingest's MediaSink in front of a Packager: a broken packager never breaks a publish."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ingest.cmaf.packager import Packager, PackagerOutput, PackagerSettings
from ingest.gatekeeper import EndReason, Grant
from ingest.sink import MediaPacket, SinkFactory

log = logging.getLogger(__name__)


class PackagerSink:
    """Feeds one publish to a Packager.

    Any exception from the packager or its output is logged once, and packaging of this
    publish stops there: the ingest connection (and the publisher's stream) carry on
    untouched, the sink drops what follows. ``failed`` tells whether that happened. The
    packager's work per packet is a few microseconds of pure Python; the output must not
    block either (the ingest calls this from its event loop).
    """

    def __init__(self, packager: Packager, label: str = "") -> None:
        self._packager: Packager | None = packager
        self._label = label
        self.failed = False

    def metadata(self, values: dict[str, object]) -> None:
        if self._packager is not None:
            try:
                self._packager.metadata(values)
            except Exception:
                self._fail("metadata")

    def media(self, packet: MediaPacket) -> None:
        if self._packager is not None:
            try:
                self._packager.push(packet)
            except Exception:
                self._fail("media")

    def end(self, reason: EndReason) -> None:
        if self._packager is not None:
            try:
                self._packager.end()
            except Exception:
                self._fail(f"end ({reason.value})")
            self._packager = None

    def _fail(self, stage: str) -> None:
        log.exception("%s: packaging stopped at %s", self._label or "publish", stage)
        self._packager = None
        self.failed = True


def packager_sink_factory(
    make_output: Callable[[Grant], PackagerOutput], settings: PackagerSettings | None = None
) -> SinkFactory:
    """A SinkFactory for the ingest: one Packager per admitted publish, writing to the
    output ``make_output(grant)`` returns."""

    def factory(grant: Grant) -> PackagerSink:
        return PackagerSink(
            Packager(make_output(grant), settings),
            label=f"{grant.channel} (session {grant.session_id})",
        )

    return factory
