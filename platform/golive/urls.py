from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from watch import views as watch_views

admin.site.site_header = "golive admin"
admin.site.site_title = "golive"

urlpatterns = [
    path("", watch_views.directory, name="directory"),
    path("c/<slug:slug>", watch_views.channel_page, name="channel"),
    path("healthz", watch_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("", include("delivery.urls")),
]
