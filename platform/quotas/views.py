"""The admin capacity page (mounted at /admin/capacity/ through `admin.site.admin_view`,
which sends anyone who is not active staff to the login page)."""

from __future__ import annotations

import logging

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from delivery.load import read_origin_load
from golive.roles import is_ops

from . import capacity as figures
from .actions import get_quota

log = logging.getLogger(__name__)


def _viewers(slugs: list[str]) -> dict[str, int]:
    """Viewers per live channel from player heartbeats (one round trip); empty when the
    counter cannot be read (the page still shows everything else)."""
    from viewers.counter import viewer_counts

    try:
        return viewer_counts().counts(slugs)
    except Exception as error:  # Redis away: a page for ops must still render
        log.warning("viewer counts unavailable on the capacity page: %s", error)
        return {}


def capacity(request: HttpRequest) -> HttpResponse:
    """Ops and superusers only: other staff get 403."""
    if not is_ops(request.user):
        raise PermissionDenied("Only ops staff may see the capacity page.")
    now = timezone.now()
    quota = get_quota()
    series = figures.load_series(now, quota)
    rows = figures.load_live_rows(now)
    viewers = _viewers([row.channel for row in rows])
    context = {
        **admin.site.each_context(request),
        "title": "Capacity",
        "now": now,
        "quota": quota,
        "live_now": series.live[-1],
        "transcoded_now": sum(row.transcoded for row in rows),
        "series": series,
        "chart": figures.draw(series),
        "admissions": figures.load_admissions(now),
        "rows": [(row, viewers.get(row.channel)) for row in rows],
        "viewers_now": sum(viewers.values()) if viewers or not rows else None,
        "stale_after": figures.format_duration(figures.stale_after()),
        "origins": (origins := read_origin_load()),
        "origins_held": sum(o.held for o in origins),
        "origins_rps": sum(o.requests_per_second for o in origins),
        "origins_shed": sum(o.shed_per_second for o in origins),
    }
    return TemplateResponse(request, "admin/quotas/capacity.html", context)
