from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from quotas import metrics as quota_metrics
from quotas import views as quota_views
from watch import views as watch_views

admin.site.site_header = "golive admin"
admin.site.site_title = "golive"

urlpatterns = [
    path("", watch_views.directory, name="directory"),
    path("c/<slug:slug>", watch_views.channel_page, name="channel"),
    path("category/<str:category>", watch_views.category_page, name="category"),
    path("healthz", watch_views.healthz, name="healthz"),
    path("metrics", quota_metrics.metrics, name="metrics"),
    # Before admin.site.urls, whose catch-all would answer 404; admin_view sends anyone
    # but logged-in staff to the admin login.
    path("admin/capacity/", admin.site.admin_view(quota_views.capacity), name="capacity"),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("", include("accounts.urls")),
    path("", include("dashboard.urls")),
    path("favicon.ico", RedirectView.as_view(url="/static/favicon.svg", permanent=True)),
    path("", include("deals.urls")),
    path("", include("delivery.urls")),
]
