from __future__ import annotations

from django.urls import path, re_path

from . import origin
from .media import not_found, serve_segment_file

LIVE = "live/<slug:slug>/<int:session>/<str:rendition>/"

urlpatterns = [
    path("live/<slug:slug>/master.m3u8", origin.multivariant, name="live-master"),
    path(LIVE + "index.m3u8", origin.media_playlist, name="live-playlist"),
    path(LIVE + "init-<int:version>.mp4", origin.init_segment, name="live-init"),
    path(LIVE + "part-<int:msn>.<int:index>.m4s", origin.part, name="live-part"),
    path(LIVE + "seg-<int:msn>.m4s", origin.segment, name="live-segment"),
    path("media/hls/<path:name>", serve_segment_file, name="segment-file"),
    # Last: whatever else is asked under these two gets the origin's short 404.
    re_path(r"^(?:live|media)/(?P<path>.*)$", not_found, name="delivery-not-found"),
]
