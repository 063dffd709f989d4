"""A streamer's earnings: their deals, this period's progress, their payouts."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from .calculation import format_money
from .models import Deal, Payout
from .progress import progress, with_period_sessions


@login_required
def earnings(request: HttpRequest) -> HttpResponse:
    """The logged-in streamer's own deals and payouts only, whoever is asking."""
    now = timezone.now()
    deals = with_period_sessions(
        Deal.objects.of_streamer(request.user).select_related("streamer"), now
    )
    payouts = Payout.objects.of_streamer(request.user)
    owed: dict[str, int] = defaultdict(int)
    paid: dict[str, int] = defaultdict(int)
    for payout in payouts:
        (paid if payout.status == Payout.Status.PAID else owed)[payout.currency] += (
            payout.amount_cents
        )
    context = {
        "deals": [(deal, progress(deal, now)) for deal in deals],
        "payouts": payouts,
        "owed": [format_money(cents, currency) for currency, cents in owed.items()],
        "paid": [format_money(cents, currency) for currency, cents in paid.items()],
    }
    return render(request, "deals/earnings.html", context)


@login_required
def payout_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One payout and its calculation. Someone else's payout is a 404, not a 403."""
    payout = get_object_or_404(
        Payout.objects.visible_to(request.user).select_related("deal__streamer"), pk=pk
    )
    return render(request, "deals/payout.html", {"payout": payout, "lines": payout.lines.all()})
