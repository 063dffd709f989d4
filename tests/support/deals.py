"""Deals for the tests, written through the write path, and the admin pages read back.

`make_deal` writes a deal as ``actor`` and has it signed by the other admin (grace, or ada
when grace wrote it); each test passes the terms it is about. Periods are 2025's unless
a test says otherwise (`at`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

from tests.support.personas import second_admin


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


# --- The admin pages ------------------------------------------------------------------


def act(client, action: str, objects, follow: bool = False, **data):
    """Runs a changelist action on ``objects`` as the admin's form posts it."""
    return client.post(
        f"/admin/deals/{objects[0]._meta.model_name}/",
        {"action": action, "_selected_action": [o.pk for o in objects], **data},
        follow=follow,
    )


class ResultTable(HTMLParser):
    """The text of the changelist's header and cells, without the checkbox column."""

    def __init__(self) -> None:
        super().__init__()
        self.in_table = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.skip = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table" and values.get("id") == "result_list":
            self.in_table = True
        elif self.in_table and tag == "tr":
            self.rows.append([])
        elif self.in_table and tag in ("td", "th"):
            self.skip = "action-checkbox" in (values.get("class") or "")
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_table = False
        elif self.in_table and tag in ("td", "th") and self.cell is not None:
            if not self.skip:
                self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def deal_form(streamer, **changes) -> dict:
    """The admin's add form as a browser posts it: money in units, two decimals."""
    return {
        "streamer": streamer.pk, "currency": "USD", "kind": "flat", "amount": "5000.00",
        "revenue_share": "0", "starts_on": "2025-01-01", "ends_on": "2025-12-31",
        "min_hours": "40", "min_streams": "8", "shortfall": "pro_rata", "notes": "",
        "versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 0,
        "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0,
    } | changes
