"""`/api/v1/earnings/…`: a streamer reads their own deals and payouts; staff read all.

Read-only: the workflow (compute, approve, pay, void) is done in admin. Another streamer's
deal or payout is a 404, so ids reveal nothing.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError

from .calculation import CalculationError, Period
from .models import Deal, Payout
from .progress import with_period_sessions
from .serializers import DealSerializer, PayoutDetailSerializer, PayoutSerializer


class DealList(generics.ListAPIView[Deal]):
    """Deals with their terms and this period's progress against the requirements."""

    serializer_class = DealSerializer

    @cached_property
    def now(self) -> datetime:
        """One clock per request, for the prefetch and every deal's figures."""
        return timezone.now()

    def get_queryset(self) -> QuerySet[Deal]:
        deals = Deal.objects.visible_to(self.request.user).select_related("streamer")
        return with_period_sessions(deals, self.now)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": self.now}


class DealDetail(generics.RetrieveAPIView[Deal]):
    serializer_class = DealSerializer

    def get_queryset(self) -> QuerySet[Deal]:
        return (
            Deal.objects.visible_to(self.request.user)
            .select_related("streamer")
            .prefetch_related("versions")
        )


@extend_schema(
    parameters=[
        OpenApiParameter("period", OpenApiTypes.STR, description="YYYY-MM"),
        OpenApiParameter("deal", OpenApiTypes.INT),
    ]
)
class PayoutList(generics.ListAPIView[Payout]):
    """Payouts, newest period first. A streamer sees their approved and paid ones."""

    serializer_class = PayoutSerializer

    def get_queryset(self) -> QuerySet[Payout]:
        payouts = Payout.objects.visible_to(self.request.user).select_related("deal__streamer")
        period = self.request.query_params.get("period")
        if period:
            try:
                payouts = payouts.filter(period_start=Period.parse(period).first_day)
            except CalculationError as error:
                raise ValidationError({"period": str(error)}) from None
        deal = self.request.query_params.get("deal")
        if deal:
            if not deal.isdigit():
                raise ValidationError({"deal": "a deal id is a number"})
            payouts = payouts.filter(deal_id=int(deal))
        return payouts


class PayoutDetail(generics.RetrieveAPIView[Payout]):
    """One payout with its calculation, line by line."""

    serializer_class = PayoutDetailSerializer

    def get_queryset(self) -> QuerySet[Payout]:
        return (
            Payout.objects.visible_to(self.request.user)
            .select_related("deal__streamer")
            .prefetch_related("lines")
        )


urlpatterns = [
    path("deals/", DealList.as_view(), name="earnings-deals"),
    path("deals/<int:pk>/", DealDetail.as_view(), name="earnings-deal"),
    path("payouts/", PayoutList.as_view(), name="earnings-payouts"),
    path("payouts/<int:pk>/", PayoutDetail.as_view(), name="earnings-payout"),
]
