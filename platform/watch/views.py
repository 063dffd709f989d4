"""Viewer pages: the directory of channels and a channel's page."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from delivery.segment_store import segment_storage
from streams.models import Channel, LiveSession


def directory(request: HttpRequest) -> HttpResponse:
    live = LiveSession.objects.filter(channel=OuterRef("pk"), ended_at__isnull=True)
    channels = (
        Channel.objects.filter(is_banned=False)
        .select_related("owner")
        .annotate(is_live_now=Exists(live))
        .order_by("-is_live_now", "slug")[:200]
    )
    return render(request, "watch/directory.html", {"channels": channels})


def channel_page(request: HttpRequest, slug: str) -> HttpResponse:
    channel = get_object_or_404(Channel.objects.select_related("owner"), slug=slug)
    session = channel.sessions.filter(ended_at__isnull=True).first()
    storage = segment_storage()
    past = [
        {
            "started_at": broadcast.started_at,
            "duration": _duration(broadcast.media_duration_ms),
            "vod_src": storage.url(broadcast.vod_path),
        }
        for broadcast in channel.sessions.filter(ended_at__isnull=False).exclude(vod_path="")[:20]
    ]
    context = {
        "channel": channel,
        "session": session,
        "live_src": f"/live/{channel.slug}/master.m3u8",
        "past": past,
    }
    return render(request, "watch/channel.html", context)


def _duration(milliseconds: int) -> str:
    seconds = milliseconds // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")
