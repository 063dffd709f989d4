"""System check for the deals settings: ``deals.E001`` an unreadable single-approver limit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from .money import AmountError, parse_thresholds


@register("deals")
def check_single_approver_limit(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        parse_thresholds(settings.GOLIVE_SINGLE_APPROVER_BELOW)
    except AmountError as error:
        return [
            Error(
                f"GOLIVE_SINGLE_APPROVER_BELOW cannot be read: {error}.",
                hint='Write currency and amount pairs, e.g. "USD 250.00, EUR 200.00" (no '
                "thousands separators), or leave it empty so that every payout needs two "
                "admins.",
                id="deals.E001",
            )
        ]
    return []
