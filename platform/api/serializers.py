from __future__ import annotations

from typing import Any

from rest_framework import serializers

from quotas.actions import MAX_LIMIT
from streams.models import Channel, LiveSession
from watch.directory import LiveEntry


class ChannelSerializer(serializers.ModelSerializer[Channel]):
    streamer = serializers.CharField(source="owner.display_name", read_only=True)
    is_live = serializers.SerializerMethodField()
    viewers = serializers.SerializerMethodField(help_text="Viewers now (0 when offline).")
    watch_url = serializers.SerializerMethodField()

    class Meta:
        model = Channel
        fields = [
            "slug", "title", "category", "streamer", "is_partner", "is_live", "viewers",
            "watch_url",
        ]
        read_only_fields = ["slug", "is_partner"]

    def get_is_live(self, channel: Channel) -> bool:
        return channel.sessions.filter(ended_at__isnull=True).exists()

    def get_viewers(self, channel: Channel) -> int:
        if not self.get_is_live(channel):
            return 0
        from viewers.counter import viewer_counts

        return viewer_counts().counts([channel.slug])[channel.slug]

    def get_watch_url(self, channel: Channel) -> str:
        from streams.links import watch_url

        return watch_url(channel)


class LiveChannelSerializer(serializers.Serializer[LiveEntry]):
    slug = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    streamer = serializers.CharField()
    viewers = serializers.IntegerField()
    thumbnail = serializers.CharField(help_text="URL of the latest still, or empty.")
    started_at = serializers.DateTimeField()


class StreamKeySerializer(serializers.Serializer[dict[str, str]]):
    stream_key = serializers.CharField(help_text="Shown once. The previous key no longer works.")
    rtmp_url = serializers.CharField()


class LiveSessionSerializer(serializers.ModelSerializer[LiveSession]):
    class Meta:
        model = LiveSession
        fields = [
            "id", "started_at", "ended_at", "end_reason", "ingest_node", "bytes_in",
            "video_codec", "audio_codec", "width", "height", "frame_rate", "peak_viewers",
        ]


class QuotaSerializer(serializers.Serializer[dict[str, Any]]):
    max_streams = serializers.IntegerField(min_value=0, max_value=MAX_LIMIT, required=False)
    max_transcodes = serializers.IntegerField(min_value=0, max_value=MAX_LIMIT, required=False)
    partner_reserve = serializers.IntegerField(min_value=0, max_value=MAX_LIMIT, required=False)
    reason = serializers.CharField(write_only=True, max_length=2000)
    live_streams = serializers.IntegerField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
