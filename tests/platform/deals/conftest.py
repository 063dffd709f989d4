"""Deals need two admins (one computes, another approves): ada, and grace here.

`make_deal` signs a deal through the write path; each test passes the terms it is about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest


@pytest.fixture
def grace(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("grace", password="grace-pw-1234")


def make_deal(streamer: Any, actor: Any, **terms: Any) -> Any:
    from deals.actions import save_deal, sign_deal
    from deals.models import Deal

    defaults: dict[str, Any] = {
        "kind": "flat",
        "amount_cents": 500_000,
        "starts_on": date(2025, 1, 1),
        "ends_on": date(2025, 12, 31),
        "min_hours": Decimal(40),
        "min_streams": 8,
        "shortfall": "pro_rata",
    }
    deal = Deal(streamer=streamer, **(defaults | terms))
    save_deal(deal, actor=actor)
    return sign_deal(deal, actor=actor)


def stream(channel: Any, start: datetime, end: datetime | None, peak: int = 0) -> Any:
    return channel.sessions.create(started_at=start, ended_at=end, peak_viewers=peak)


def at(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)
