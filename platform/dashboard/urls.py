from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("dashboard", views.dashboard, name="dashboard"),
    path("dashboard/start", views.start_channel, name="dashboard-start"),
    path("dashboard/key", views.rotate_key, name="dashboard-key"),
    path("dashboard/channel", views.update_channel, name="dashboard-channel"),
    path("dashboard/moderators", views.moderators, name="dashboard-moderators"),
    path("dashboard/health", views.health, name="dashboard-health"),
]
