from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from quotas import metrics as quota_metrics
from quotas import views as quota_views
from watch import views as watch_views

admin.site.site_header = "golive admin"
admin.site.site_title = "golive"

urlpatterns = [
    path("", watch_views.directory, name="directory"),
    path("c/<slug:slug>", watch_views.channel_page, name="channel"),
    path("healthz", watch_views.healthz, name="healthz"),
    path("metrics", quota_metrics.metrics, name="metrics"),
    # Before admin.site.urls, whose catch-all would answer 404; admin_view sends anyone
    # but logged-in staff to the admin login.
    path("admin/capacity/", admin.site.admin_view(quota_views.capacity), name="capacity"),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("deals.urls")),
    path("", include("delivery.urls")),
]
