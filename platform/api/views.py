"""The REST API: streamers manage their channel and key; ops read and set the quota."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from quotas.actions import QuotaError, get_quota, set_quota
from quotas.models import QuotaChange
from streams import actions
from streams.links import rtmp_url
from streams.models import Channel, LiveSession

from .permissions import IsChannelOwnerOrReadOnly, IsChannelOwnerOrStaff, IsOps
from .serializers import (
    ChannelSerializer,
    LiveChannelSerializer,
    LiveSessionSerializer,
    QuotaSerializer,
    StreamKeySerializer,
)


class ChannelDetail(generics.RetrieveUpdateAPIView[Channel]):
    """A channel's public details; its streamer may change the title and category."""

    queryset = Channel.objects.select_related("owner")
    serializer_class = ChannelSerializer
    lookup_field = "slug"
    http_method_names = ["get", "patch", "head", "options"]

    def get_permissions(self) -> list[Any]:
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [AllowAny()]
        return [IsAuthenticated(), IsChannelOwnerOrReadOnly()]

    def perform_update(self, serializer: BaseSerializer[Channel]) -> None:
        assert serializer.instance is not None  # an update's serializer holds the channel
        data = serializer.validated_data
        actions.update_channel(
            serializer.instance, title=data.get("title"), category=data.get("category")
        )


class LiveChannels(APIView):
    """Live channels now, followed ones first, then by viewers (the directory's order)."""

    permission_classes = [AllowAny]

    @extend_schema(responses=LiveChannelSerializer(many=True))
    def get(self, request: Request) -> Response:
        from watch.directory import live_entries

        entries = live_entries(request.user, request.query_params.get("q", "")[:100])
        # DRF's stubs give a plain Serializer one instance, many=True or not.
        response = Response(LiveChannelSerializer(entries, many=True).data)  # type: ignore[arg-type]
        response["Cache-Control"] = "no-cache" if request.user.is_authenticated else "max-age=2"
        return response


class RotateStreamKey(APIView):
    """Revokes the channel's key and returns a new one, once."""

    permission_classes = [IsAuthenticated, IsChannelOwnerOrReadOnly]

    @extend_schema(request=None, responses={201: StreamKeySerializer})
    def post(self, request: Request, slug: str) -> Response:
        channel = get_object_or_404(Channel.objects.select_related("owner"), slug=slug)
        self.check_object_permissions(request, channel)
        key = actions.rotate_stream_key(channel)
        response = Response(
            StreamKeySerializer({"stream_key": key, "rtmp_url": rtmp_url()}).data,
            status=status.HTTP_201_CREATED,
        )
        response["Cache-Control"] = "no-store"
        return response


class ChannelSessions(generics.ListAPIView[LiveSession]):
    """The channel's broadcasts, newest first. Its streamer and staff only."""

    serializer_class = LiveSessionSerializer
    permission_classes = [IsAuthenticated, IsChannelOwnerOrStaff]

    def get_queryset(self) -> QuerySet[LiveSession]:
        channel = get_object_or_404(
            Channel.objects.select_related("owner"), slug=self.kwargs["slug"]
        )
        self.check_object_permissions(self.request, channel)
        return LiveSession.objects.filter(channel=channel)


class QuotaView(APIView):
    """The platform's capacity: read it, or change it (audited, applies to the next publish)."""

    permission_classes = [IsOps]

    def figures(self) -> dict[str, Any]:
        quota = get_quota()
        return {
            **quota.as_dict(),
            "live_streams": LiveSession.objects.filter(ended_at__isnull=True).count(),
            "updated_at": quota.updated_at,
        }

    @extend_schema(responses=QuotaSerializer)
    def get(self, request: Request) -> Response:
        return Response(QuotaSerializer(self.figures()).data)

    @extend_schema(request=QuotaSerializer, responses=QuotaSerializer)
    def patch(self, request: Request) -> Response:
        serializer = QuotaSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            set_quota(
                actor=request.user,
                source=QuotaChange.Source.API,
                reason=data["reason"],
                max_streams=data.get("max_streams"),
                max_transcodes=data.get("max_transcodes"),
                partner_reserve=data.get("partner_reserve"),
            )
        except QuotaError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(QuotaSerializer(self.figures()).data)
