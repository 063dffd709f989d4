"""Deals need two admins (one writes terms or computes, another signs or approves): ada, and
grace here.

`make_deal` writes a deal through the write path as ``actor`` and has it signed by the
other admin (grace, or ada when grace wrote it); each test passes the terms it is about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest


@pytest.fixture
def grace(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("grace", password="grace-pw-1234")


def second_admin(actor: Any) -> Any:
    """Another superuser than ``actor``: grace, or ada when grace is the actor."""
    from django.contrib.auth import get_user_model

    name = "ada" if actor.get_username() == "grace" else "grace"
    users = get_user_model().objects
    found = users.filter(username=name).first()
    return found or users.create_superuser(name, password=f"{name}-pw-1234")


def terms(**values: Any) -> Any:
    from deals.actions import DealTerms

    defaults: dict[str, Any] = {
        "kind": "flat",
        "amount_cents": 500_000,
        "ends_on": date(2025, 12, 31),
        "min_hours": Decimal(40),
        "min_streams": 8,
        "shortfall": "pro_rata",
    }
    return DealTerms(**(defaults | values))


def draft_deal(streamer: Any, actor: Any, starts_on: date = date(2025, 1, 1), **values: Any) -> Any:
    """A deal saved as a draft (its terms confirmed, never signed)."""
    from deals.actions import save_deal
    from deals.models import Deal

    return save_deal(
        Deal(streamer=streamer, starts_on=starts_on), terms(**values), actor=actor,
        confirmed=True,
    ).deal


def make_deal(
    streamer: Any, actor: Any, *, signer: Any = None, starts_on: date = date(2025, 1, 1),
    **values: Any,
) -> Any:
    from deals.actions import sign_deal

    deal = draft_deal(streamer, actor, starts_on=starts_on, **values)
    return sign_deal(deal, actor=signer or second_admin(actor))


def stream(channel: Any, start: datetime, end: datetime | None, peak: int = 0) -> Any:
    return channel.sessions.create(started_at=start, ended_at=end, peak_viewers=peak)


def at(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)
