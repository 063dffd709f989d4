"""A streamer's earnings: their deals, this period's progress, their payouts and the
corrections of paid ones."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from .models import Deal, Payout
from .money import format_money
from .progress import progress, with_period_sessions


@login_required
def earnings(request: HttpRequest) -> HttpResponse:
    """The logged-in streamer's own deals and payouts only, whoever is asking."""
    now = timezone.now()
    today = now.date()
    deals = with_period_sessions(
        Deal.objects.of_streamer(request.user).select_related("streamer"), now
    )
    payouts = Payout.objects.of_streamer(request.user).select_related("corrects")
    owed: dict[str, int] = defaultdict(int)
    paid: dict[str, int] = defaultdict(int)
    owed_back: dict[str, int] = defaultdict(int)
    for payout in payouts:
        settled = payout.status == Payout.Status.PAID
        if payout.kind == Payout.Kind.CLAWBACK:
            # Recovered: it comes off what was paid. Approved: the streamer owes it back.
            (paid if settled else owed_back)[payout.currency] += (
                -payout.amount_cents if settled else payout.amount_cents
            )
        else:
            (paid if settled else owed)[payout.currency] += payout.amount_cents
    rows = []
    for deal in deals:
        version = deal.shown_version(today)
        upcoming = [v for v in deal.signed_versions() if v.effective_from > today
                    and v.number > (version.number if version else 0)]
        rows.append((deal, version, upcoming, progress(deal, now)))
    context = {
        "deals": rows,
        "payouts": payouts,
        "owed": [format_money(cents, currency) for currency, cents in owed.items()],
        "paid": [format_money(cents, currency) for currency, cents in paid.items()],
        "owed_back": [format_money(cents, currency) for currency, cents in owed_back.items()],
    }
    return render(request, "deals/earnings.html", context)


@login_required
def payout_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One payout and its calculation. Someone else's payout is a 404, not a 403."""
    payout = get_object_or_404(
        Payout.objects.visible_to(request.user).select_related("deal__streamer", "corrects"),
        pk=pk,
    )
    corrections = Payout.objects.visible_to(request.user).filter(corrects=payout)
    return render(request, "deals/payout.html", {
        "payout": payout, "lines": payout.lines.all(), "corrections": corrections,
    })
