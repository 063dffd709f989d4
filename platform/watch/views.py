"""Viewer pages: the directory of channels, category pages and a channel's page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.models import Follow
from chat.models import RoomSettings
from delivery.segment_store import segment_storage
from streams.models import Channel
from viewers.counter import viewer_counts

from .directory import listing


def directory(request: HttpRequest) -> HttpResponse:
    result = listing(
        request.user, query=request.GET.get("q", ""), page=request.GET.get("page", 1)
    )
    return render(request, "watch/directory.html", {"listing": result})


def category_page(request: HttpRequest, category: str) -> HttpResponse:
    result = listing(
        request.user, query=request.GET.get("q", ""), category=category[:64],
        page=request.GET.get("page", 1),
    )
    return render(request, "watch/directory.html", {"listing": result})


def channel_page(request: HttpRequest, slug: str) -> HttpResponse:
    channel = get_object_or_404(Channel.objects.select_related("owner"), slug=slug)
    session = channel.sessions.filter(ended_at__isnull=True).first()
    storage = segment_storage()
    past = [
        {
            "started_at": broadcast.started_at,
            "title": channel.title,
            "duration": format_duration(broadcast.media_duration_ms),
            "vod_src": storage.url(broadcast.vod_path),
        }
        for broadcast in channel.sessions.filter(ended_at__isnull=False)
        .exclude(vod_path="").filter(recording_deleted_at__isnull=True)[:20]
    ]
    user = request.user
    following = bool(
        user.is_authenticated and Follow.objects.filter(user_id=user.pk, channel=channel).exists()
    )
    modes = RoomSettings.objects.filter(channel=channel).first()
    context = {
        "channel": channel,
        "session": session,
        "live_src": f"/live/{channel.slug}/master.m3u8",
        "past": past,
        "viewers": viewer_counts().counts([channel.slug])[channel.slug] if session else 0,
        "followers": channel.followers.count(),
        "following": following,
        "is_owner": user.is_authenticated and channel.owner.user_id == user.pk,
        "links_allowed": bool(modes and modes.links_allowed),
        "telemetry": True,
        "max_bitrate": settings.GOLIVE_MAX_BITRATE_KBPS,
    }
    return render(request, "watch/channel.html", context)


def format_duration(milliseconds: int) -> str:
    seconds = milliseconds // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")
