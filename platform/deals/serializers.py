from __future__ import annotations

import math
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from .calculation import format_money
from .models import Deal, Payout, PayoutLine
from .progress import progress


class ProgressSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="YYYY-MM, a calendar month in UTC")
    streamed_seconds = serializers.IntegerField()
    required_seconds = serializers.IntegerField(
        help_text="The minimum hours in seconds, prorated for a partial month, rounded up"
    )
    streams = serializers.IntegerField()
    required_streams = serializers.IntegerField()
    peak_viewers = serializers.IntegerField(allow_null=True)
    hours_percent = serializers.IntegerField()
    met = serializers.BooleanField()


class DealSerializer(serializers.ModelSerializer):
    streamer = serializers.CharField(source="streamer.display_name")
    amount = serializers.SerializerMethodField()
    this_period = serializers.SerializerMethodField()

    class Meta:
        model = Deal
        fields = [
            "id", "streamer", "kind", "amount_cents", "currency", "amount", "revenue_share_bps",
            "starts_on", "ends_on", "min_hours", "min_streams", "exclusive", "shortfall",
            "status", "this_period",
        ]

    def get_amount(self, deal: Deal) -> str:
        return format_money(deal.amount_cents, deal.currency)

    def get_this_period(self, deal: Deal) -> dict[str, Any] | None:
        current = progress(deal, self.context.get("now") or timezone.now())
        if current is None:
            return None
        return ProgressSerializer(
            {
                "period": current.period.label,
                "streamed_seconds": current.activity.seconds,
                "required_seconds": math.ceil(current.required.seconds),
                "streams": current.activity.streams,
                "required_streams": current.required.streams,
                "peak_viewers": current.activity.peak_viewers,
                "hours_percent": current.hours_percent,
                "met": current.met,
            }
        ).data


class PayoutLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = PayoutLine
        fields = ["position", "label", "detail", "amount_cents"]


class PayoutSerializer(serializers.ModelSerializer):
    deal = serializers.IntegerField(source="deal_id")
    streamer = serializers.CharField(source="deal.streamer.display_name")
    period = serializers.CharField(source="period.label", help_text="YYYY-MM")
    amount = serializers.SerializerMethodField()

    class Meta:
        model = Payout
        fields = [
            "id", "deal", "streamer", "period", "status", "amount_cents", "currency", "amount",
            "streamed_seconds", "streams", "peak_viewers", "requirements_met", "computed_at",
            "approved_at", "paid_at", "payment_reference",
        ]

    def get_amount(self, payout: Payout) -> str:
        return format_money(payout.amount_cents, payout.currency)


class PayoutDetailSerializer(PayoutSerializer):
    lines = PayoutLineSerializer(many=True)

    class Meta(PayoutSerializer.Meta):
        fields = [*PayoutSerializer.Meta.fields, "lines"]
