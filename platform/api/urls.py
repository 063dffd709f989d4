from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from . import views

app_name = "api"

urlpatterns = [
    path("v1/token/", obtain_auth_token, name="token"),
    path("v1/live/", views.LiveChannels.as_view(), name="live"),
    path("v1/channels/<slug:slug>/", views.ChannelDetail.as_view(), name="channel"),
    path("v1/channels/<slug:slug>/key/", views.RotateStreamKey.as_view(), name="rotate-key"),
    path("v1/channels/<slug:slug>/sessions/", views.ChannelSessions.as_view(), name="sessions"),
    path("v1/quota/", views.QuotaView.as_view(), name="quota"),
    path("v1/earnings/", include("deals.api")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
