"""The streamer dashboard at /dashboard: OBS setup, key rotation, live preview and health,
viewer count and chat moderation, title and category, past broadcasts, earnings.

The stream key is never stored in clear (only its digest), so it cannot be shown again:
rotating gives a new one, returned once in a page that is not cached and shows the key
only when asked (a streamer on camera or sharing a screen must not leak it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.requests import SignedInRequest
from chat import actions as chat_actions
from chat.models import Moderator, RoomSettings
from delivery.segment_store import segment_storage
from streams import actions
from streams.links import rtmp_url
from streams.models import Channel, LiveSession, StreamKey
from viewers.counter import viewer_counts
from watch.views import format_duration

from .health import warnings


def _channel(request: SignedInRequest) -> Channel | None:
    return (
        Channel.objects.select_related("owner")
        .filter(owner__user_id=request.user.pk).first()
    )


def obs_settings(channel: Channel) -> list[tuple[str, str]]:
    target = int(settings.GOLIVE_HLS_TARGET_DURATION)
    return [
        ("Service", "Custom…"),
        ("Server", rtmp_url()),
        ("Output mode", "Advanced"),
        ("Rate control", "CBR"),
        ("Bitrate", f"{channel.bitrate_cap_kbps} Kbps (or less)"),
        ("Keyframe interval", f"{target} s"),
        ("Encoder", "x264 or a hardware H.264 encoder; profile main or high, no B-frame"
                    " pyramid"),
        ("Audio", "AAC, 160 Kbps, 48 kHz"),
    ]


@never_cache
@login_required
def dashboard(request: SignedInRequest, new_key: str = "") -> HttpResponse:
    channel = _channel(request)
    if channel is None:
        return render(request, "dashboard/start.html", {"error": ""})
    session = channel.sessions.filter(ended_at__isnull=True).first()
    key = StreamKey.objects.filter(channel=channel, revoked_at__isnull=True).first()
    storage = segment_storage()
    past = [
        {
            "session": broadcast,
            "duration": format_duration(broadcast.media_duration_ms),
            "vod": storage.url(broadcast.vod_path)
            if broadcast.vod_path and broadcast.recording_deleted_at is None else "",
        }
        for broadcast in channel.sessions.filter(ended_at__isnull=False)[:20]
    ]
    modes = RoomSettings.objects.filter(channel=channel).first() or RoomSettings()
    context: dict[str, Any] = {
        "channel": channel,
        "session": session,
        "key": key,
        "new_key": new_key,
        "rtmp_url": rtmp_url(),
        "obs": obs_settings(channel),
        "past": past,
        "modes": modes,
        "moderators": Moderator.objects.filter(channel=channel).select_related("user"),
        "live_src": f"/live/{channel.slug}/master.m3u8",
        "categories": _categories(),
    }
    response = render(request, "dashboard/dashboard.html", context)
    if new_key:
        response["Cache-Control"] = "no-store"
    return response


def _categories() -> list[str]:
    return list(
        Channel.objects.exclude(category="").order_by().values_list("category", flat=True)
        .distinct()[:50]
    )


@login_required
@require_POST
def start_channel(request: SignedInRequest) -> HttpResponse:
    try:
        _, key = actions.become_streamer(request.user, slug=request.POST.get("slug", ""))
    except actions.StreamerError as error:
        return render(request, "dashboard/start.html", {"error": str(error)}, status=400)
    return dashboard(request, new_key=key)


@never_cache
@login_required
def rotate_key(request: SignedInRequest) -> HttpResponse:
    """GET asks for confirmation; POST with confirm=yes rotates and shows the new key."""
    channel = _channel(request)
    if channel is None:
        return HttpResponseRedirect("/dashboard")
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        live = channel.sessions.filter(ended_at__isnull=True).exists()
        return render(request, "dashboard/rotate.html", {"channel": channel, "live": live})
    key = actions.rotate_stream_key(channel)
    return dashboard(request, new_key=key)


@login_required
@require_POST
def update_channel(request: SignedInRequest) -> HttpResponse:
    channel = _channel(request)
    if channel is not None:
        actions.update_channel(
            channel, title=request.POST.get("title", ""),
            category=request.POST.get("category", ""),
        )
    return HttpResponseRedirect("/dashboard#channel")


@login_required
@require_POST
def moderators(request: SignedInRequest) -> HttpResponse:
    channel = _channel(request)
    if channel is None:
        return HttpResponseRedirect("/dashboard")
    room = chat_actions.Room(channel.pk, channel.slug, channel.owner.user_id)
    username = request.POST.get("username", "").strip()[:150]
    if request.POST.get("remove"):
        refusal = chat_actions.remove_moderator(room, request.user, username)
    else:
        refusal = chat_actions.add_moderator(room, request.user, username)
    if refusal is not None:
        return HttpResponse(refusal.reason, status=400, content_type="text/plain")
    return HttpResponseRedirect("/dashboard#chat")


@never_cache
@login_required
@require_GET
def health(request: SignedInRequest) -> JsonResponse:
    """The live session's figures and warnings, polled by the dashboard every 2 s."""
    channel = _channel(request)
    if channel is None:
        return JsonResponse({"error": "no channel"}, status=404)
    session = (
        LiveSession.objects.filter(channel=channel, ended_at__isnull=True)
        .only("pk", "started_at", "health", "width", "height", "video_codec", "audio_codec",
              "frame_rate", "last_heartbeat_at", "peak_viewers", "disconnected_at", "transcoded")
        .first()
    )
    if session is None:
        return JsonResponse({"live": False})
    figures = session.health or {}
    return JsonResponse({
        "live": True,
        "session": session.pk,
        "started_at": session.started_at.isoformat(),
        "reconnecting": session.disconnected_at is not None,
        "resolution": session.resolution,
        "video_codec": session.video_codec,
        "audio_codec": session.audio_codec,
        "transcoded": session.transcoded,
        "last_heartbeat_at": session.last_heartbeat_at.isoformat()
        if session.last_heartbeat_at else None,
        "health": figures,
        "warnings": [
            {"code": w.code, "text": w.text}
            for w in warnings(
                figures,
                target_keyframe_s=int(settings.GOLIVE_HLS_TARGET_DURATION),
                max_kbps=channel.bitrate_cap_kbps,
            )
        ],
        "bitrate_cap_kbps": channel.bitrate_cap_kbps,
        "viewers": viewer_counts().counts([channel.slug])[channel.slug],
        "peak_viewers": session.peak_viewers,
    })
