"""The write path for live sessions: admit a publish, record its health, end it.

Called by the ingest through `streams.gatekeeper` (one call per publish, per heartbeat,
per end; never per packet). Admission takes the quota row lock, so concurrent publishes
on any number of ingest nodes are decided one at a time against the same counts.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from ingest.gatekeeper import (
    EndReason,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
    StreamDescription,
)
from ingest.health import StreamHealth
from quotas.actions import get_quota
from quotas.models import QUOTA_ROW_ID, ServerQuota

from .actions import find_channel_by_key
from .models import Channel, LiveSession

log = logging.getLogger(__name__)

CAPACITY_RETRY_SECONDS = 300


def unknown_key() -> Refusal:
    return Refusal(
        RefusalCode.BAD_NAME, "unknown_key",
        "Unknown or revoked stream key: copy the current key from your golive dashboard.",
        counts_as_failed_key=True,
    )


def start_broadcast(request: PublishRequest) -> Grant | Refusal:
    """Admits a publish and opens its live session, or says why not.

    Checks, in order: the key, the ban, one live session per channel, the concurrent
    stream quota (non-partners stop at quota minus the partner reserve). Over the
    transcode quota the stream is admitted source-only.
    """
    channel = find_channel_by_key(request.key)
    if channel is None:
        return unknown_key()
    if channel.is_banned:
        why = f": {channel.ban_reason}" if channel.ban_reason else "."
        return Refusal(RefusalCode.REJECTED, "banned", f"This channel is banned{why}")
    get_quota()  # the row exists before it is locked
    try:
        with transaction.atomic():
            quota = ServerQuota.objects.select_for_update().get(pk=QUOTA_ROW_ID)
            refusal = _check_capacity(channel, quota)
            if refusal is not None:
                return refusal
            transcoded = (
                LiveSession.objects.filter(ended_at__isnull=True, transcoded=True).count()
                < quota.max_transcodes
            )
            session = LiveSession.objects.create(
                channel=channel, ingest_node=request.node, transcoded=transcoded
            )
    except IntegrityError:
        return already_live()
    log.info("channel %s went live on %s (session %d)", channel.slug, request.node, session.pk)
    return Grant(session.pk, channel.slug, channel.is_partner, transcoded)


def already_live() -> Refusal:
    return Refusal(
        RefusalCode.REJECTED, "already_live",
        "This channel is already live from another encoder: stop that one first.",
    )


def _check_capacity(channel: Channel, quota: ServerQuota) -> Refusal | None:
    live = LiveSession.objects.filter(ended_at__isnull=True)
    if live.filter(channel=channel).exists():
        return already_live()
    limit = quota.max_streams if channel.is_partner else quota.max_streams - quota.partner_reserve
    if live.count() >= limit:
        minutes = CAPACITY_RETRY_SECONDS // 60
        return Refusal(
            RefusalCode.REJECTED, "capacity",
            f"golive is at capacity, try again in about {minutes} minutes.",
            retry_after=CAPACITY_RETRY_SECONDS,
        )
    return None


def _figures(description: StreamDescription, health: StreamHealth) -> dict[str, object]:
    return {
        "bytes_in": health.bytes_in,
        "video_frames": health.video_frames,
        "audio_frames": health.audio_frames,
        "media_duration_ms": health.media_duration_ms,
        "video_codec": description.video_codec[:64],
        "audio_codec": description.audio_codec[:64],
        "width": description.width,
        "height": description.height,
        "frame_rate": (
            Decimal(str(round(description.frame_rate, 3))) if description.frame_rate else None
        ),
        "health": health.as_dict(),
    }


def record_heartbeat(
    session_id: int, description: StreamDescription, health: StreamHealth
) -> bool:
    """Stores the latest figures. False when the session has been ended meanwhile."""
    updated = LiveSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        last_heartbeat_at=timezone.now(), **_figures(description, health)
    )
    return updated == 1


def end_broadcast(
    session_id: int, reason: EndReason, description: StreamDescription, health: StreamHealth
) -> None:
    """Closes the session with its final figures. Idempotent: an ended one stays as it was."""
    LiveSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason.value, **_figures(description, health)
    )
    log.info("session %d ended: %s", session_id, reason.value)


def end_orphaned_sessions(node: str) -> int:
    """Closes sessions a previous run of this ingest node left open (it died)."""
    count = LiveSession.objects.filter(ingest_node=node, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=LiveSession.EndReason.INGEST_LOST
    )
    if count:
        log.warning("closed %d session(s) left open by a previous run of %s", count, node)
    return count
