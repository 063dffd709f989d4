from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("earnings", views.earnings, name="earnings"),
    path("earnings/payouts/<int:pk>", views.payout_detail, name="earnings-payout"),
]
