"""The write path for a broadcast's recording: its VOD playlist, its deletion.

Delivery (the pipeline that writes the VOD, the finaliser of broadcasts whose ingest died,
retention) calls these; nothing else writes these columns.
"""

from __future__ import annotations

from django.utils import timezone

from .models import LiveSession


def record_vod(session_id: int, path: str) -> bool:
    """Names the recording's VOD playlist (a segment-store path). Idempotent; False when
    the session does not exist or its recording was deleted meanwhile."""
    return bool(
        LiveSession.objects.filter(pk=session_id, recording_deleted_at__isnull=True).update(
            vod_path=path
        )
    )


def mark_recording_deleted(session_id: int) -> None:
    """Retention deleted the recording's files: no VOD any more. Idempotent."""
    LiveSession.objects.filter(pk=session_id).update(
        vod_path="", recording_deleted_at=timezone.now()
    )


def sessions_without_vod(session_ids: list[int]) -> dict[int, float]:
    """Which of these ended sessions still have no VOD playlist (nor a deleted one), with
    when each started (Unix seconds)."""
    rows = LiveSession.objects.filter(
        pk__in=session_ids, ended_at__isnull=False, vod_path="",
        recording_deleted_at__isnull=True,
    ).values_list("pk", "started_at")
    return {pk: started_at.timestamp() for pk, started_at in rows}
