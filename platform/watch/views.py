"""Viewer pages: the directory of channels and a channel's page."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

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
    return render(request, "watch/channel.html", {"channel": channel, "session": session})


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")
