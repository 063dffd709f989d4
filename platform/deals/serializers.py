from __future__ import annotations

import math
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Deal, DealVersion, Payout, PayoutLine
from .money import format_money
from .progress import progress


class ProgressSerializer(serializers.Serializer[dict[str, Any]]):
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


class TermsSerializer(serializers.ModelSerializer[DealVersion]):
    """One signed version of a deal's terms."""

    amount = serializers.SerializerMethodField()

    class Meta:
        model = DealVersion
        fields = [
            "number", "effective_from", "kind", "amount_cents", "currency", "amount",
            "revenue_share_bps", "min_hours", "min_streams", "exclusive", "shortfall",
            "signed_at",
        ]

    def get_amount(self, version: DealVersion) -> str:
        return format_money(version.amount_cents, version.currency)


TODAY: dict[str, Any] = {"read_only": True, "allow_null": True}


class DealSerializer(serializers.ModelSerializer[Deal]):
    """A deal with the terms in force today at the top level (as before terms had
    versions), and every signed version under ``versions``."""

    streamer = serializers.CharField(source="streamer.display_name")
    # Null for a cancelled draft, whose only terms were withdrawn.
    version = serializers.IntegerField(source="terms_today.number", **TODAY)
    kind = serializers.CharField(source="terms_today.kind", **TODAY)
    amount_cents = serializers.IntegerField(source="terms_today.amount_cents", **TODAY)
    currency = serializers.CharField(source="terms_today.currency", **TODAY)
    amount = serializers.SerializerMethodField()
    revenue_share_bps = serializers.IntegerField(source="terms_today.revenue_share_bps", **TODAY)
    min_hours = serializers.DecimalField(
        source="terms_today.min_hours", max_digits=6, decimal_places=2, **TODAY
    )
    min_streams = serializers.IntegerField(source="terms_today.min_streams", **TODAY)
    exclusive = serializers.BooleanField(source="terms_today.exclusive", **TODAY)
    shortfall = serializers.CharField(source="terms_today.shortfall", **TODAY)
    versions = serializers.SerializerMethodField()
    this_period = serializers.SerializerMethodField()

    class Meta:
        model = Deal
        fields = [
            "id", "streamer", "version", "kind", "amount_cents", "currency", "amount",
            "revenue_share_bps", "starts_on", "ends_on", "min_hours", "min_streams",
            "exclusive", "shortfall", "status", "versions", "this_period",
        ]

    def get_amount(self, deal: Deal) -> str:
        version = deal.terms_today
        return format_money(version.amount_cents, version.currency) if version else ""

    @extend_schema_field(TermsSerializer(many=True))
    def get_versions(self, deal: Deal) -> list[dict[str, Any]]:
        return list(TermsSerializer(deal.signed_versions(), many=True).data)

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


class PayoutLineSerializer(serializers.ModelSerializer[PayoutLine]):
    class Meta:
        model = PayoutLine
        fields = ["position", "label", "detail", "amount_cents"]


class PayoutSerializer(serializers.ModelSerializer[Payout]):
    deal = serializers.IntegerField(source="deal_id")
    streamer = serializers.CharField(source="deal.streamer.display_name")
    period = serializers.CharField(source="period.label", help_text="YYYY-MM")
    amount = serializers.CharField(
        source="amount_display", help_text="Formatted; a correction carries its sign"
    )
    net_cents = serializers.IntegerField(
        help_text="What the payout moves to the streamer: negative for a clawback"
    )
    corrects = serializers.IntegerField(source="corrects_id", allow_null=True)

    class Meta:
        model = Payout
        fields = [
            "id", "deal", "streamer", "period", "kind", "corrects", "reason", "status",
            "amount_cents", "net_cents", "currency", "amount", "streamed_seconds", "streams",
            "peak_viewers", "requirements_met", "computed_at", "approved_at", "paid_at",
            "payment_reference",
        ]


class PayoutDetailSerializer(PayoutSerializer):
    lines = PayoutLineSerializer(many=True)

    class Meta(PayoutSerializer.Meta):
        fields = [*PayoutSerializer.Meta.fields, "lines"]
