"""Builds the RTMP ingest with the platform's gatekeeper, for `ingest` and `up`."""

from __future__ import annotations

import os

from django.conf import settings

from ingest.server import IngestConfig, IngestServer
from ingest.sink import SinkFactory

from .gatekeeper import PlatformGatekeeper


def ingest_config() -> IngestConfig:
    return IngestConfig(
        node=settings.GOLIVE_NODE_NAME,
        max_connections=int(os.environ.get("GOLIVE_RTMP_MAX_CONNECTIONS", "2000")),
        max_connections_per_ip=int(os.environ.get("GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP", "20")),
    )


def build_ingest_server(sink_factory: SinkFactory | None = None) -> IngestServer:
    """The ingest with the platform's gatekeeper; by default every admitted publish is
    packaged (CMAF) and delivered (live index, segment store, VOD)."""
    if sink_factory is None:
        from delivery.live import PART_TARGET
        from delivery.pipeline import make_delivery_output
        from ingest.cmaf.packager import PackagerSettings
        from ingest.cmaf.sink import packager_sink_factory

        sink_factory = packager_sink_factory(
            make_delivery_output, PackagerSettings(part_target=PART_TARGET)
        )
    return IngestServer(PlatformGatekeeper(), sink_factory, config=ingest_config())
