from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from transcoder.ladder import SOURCE_ONLY

from . import actions, broadcasts
from .ladders import ladder_help
from .models import Channel, LiveSession, Streamer, StreamKey


class LiveFilter(admin.SimpleListFilter):
    title = "live now"
    parameter_name = "live"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Live"), ("no", "Offline")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(is_live_now=True)
        if self.value() == "no":
            return queryset.filter(is_live_now=False)
        return queryset


@admin.register(Streamer)
class StreamerAdmin(admin.ModelAdmin[Streamer]):
    list_display = ["display_name", "user", "channel", "created_at"]
    search_fields = ["display_name", "user__username", "user__email", "channel__slug"]
    list_select_related = ["user", "channel"]
    raw_id_fields = ["user"]


class ChannelForm(forms.ModelForm[Channel]):
    """The channel's change form: its quality ladder is checked by `parse_ladder` (the
    field's validator), with help that says the syntax and the platform's ladder now.
    The admin makes its Meta (`ModelAdmin.get_form`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ladder = self.fields["transcode_ladder"]
        ladder.widget = forms.Textarea(attrs={"rows": 3, "cols": 80})
        ladder.help_text = ladder_help()

    def clean_transcode_ladder(self) -> str:
        text = str(self.cleaned_data["transcode_ladder"]).strip()
        # One spelling of "source only", which `rebalance_transcodes` looks for.
        return SOURCE_ONLY if text.lower() == SOURCE_ONLY else text


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin[Channel]):
    form = ChannelForm
    list_display = ["slug", "title", "owner", "category", "is_partner", "is_banned", "live_now"]
    list_filter = ["is_partner", "is_banned", LiveFilter, "category"]
    search_fields = ["slug", "title", "owner__display_name", "owner__user__username"]
    list_select_related = ["owner"]
    readonly_fields = ["created_at"]
    actions = ["rotate_key", "ban", "unban"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        live = LiveSession.objects.filter(channel=OuterRef("pk"), ended_at__isnull=True)
        return super().get_queryset(request).annotate(is_live_now=Exists(live))

    @admin.display(boolean=True, description="live", ordering="is_live_now")
    def live_now(self, channel: Channel) -> bool:
        return bool(getattr(channel, "is_live_now", False))

    @admin.action(description="Rotate the stream key (shows the new key once)")
    def rotate_key(self, request: HttpRequest, queryset: QuerySet[Channel]) -> HttpResponse:
        # The new keys are rendered into this one response, never put in messages (which
        # may live in a cookie) or anywhere else that outlives the page.
        issued = [(channel, actions.rotate_stream_key(channel)) for channel in queryset]
        response = TemplateResponse(
            request,
            "admin/streams/rotated_keys.html",
            {**self.admin_site.each_context(request), "title": "New stream keys", "issued": issued},
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Ban (refuses their next publish)")
    def ban(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            actions.set_banned(channel, True, reason=f"banned by {request.user}")
        messages.success(request, f"Banned {queryset.count()} channel(s).")

    @admin.action(description="Unban")
    def unban(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            actions.set_banned(channel, False)
        messages.success(request, f"Unbanned {queryset.count()} channel(s).")


@admin.register(StreamKey)
class StreamKeyAdmin(admin.ModelAdmin[StreamKey]):
    list_display = ["__str__", "channel", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "channel__slug"]
    list_select_related = ["channel"]
    # The digest is useless to an admin and the secret is gone: nothing here is editable.
    fields = readonly_fields = ("channel", "prefix", "created_at", "last_used_at", "revoked_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StreamKey | None = None) -> bool:
        return False


@admin.register(LiveSession)
class LiveSessionAdmin(admin.ModelAdmin[LiveSession]):
    list_display = [
        "channel", "started_at", "ended_at", "end_reason", "ingest_node",
        "video_codec", "resolution", "frame_rate", "bitrate", "video_frames", "peak_viewers",
    ]
    list_filter = [("ended_at", admin.EmptyFieldListFilter), "end_reason", "ingest_node"]
    search_fields = ["channel__slug", "ingest_node"]
    list_select_related = ["channel"]
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in LiveSession._meta.fields]
    actions = ["force_stop"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Force stop the selected live sessions")
    def force_stop(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        minutes = settings.GOLIVE_FORCE_STOP_COOLDOWN // 60
        stopped = 0
        for session in queryset.filter(ended_at__isnull=True):
            if broadcasts.force_stop(session.pk, by=request.user.get_username()):
                self.log_change(request, session, "Force stopped")
                stopped += 1
        if stopped:
            self.message_user(
                request,
                f"Stopped {stopped} live session(s); their channels cannot go live again"
                f" for {minutes} minutes.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, "None of the selected sessions was live.", messages.WARNING)

    @admin.display(description="bitrate")
    def bitrate(self, session: LiveSession) -> str:
        kbps = (session.health or {}).get("bitrate_kbps")
        return f"{kbps:.0f} kb/s" if isinstance(kbps, int | float) else "—"
