"""The directory's data: live channels (followed first, then by viewers) with their
thumbnail, title, category and viewer count; offline channels below, paginated.

A bounded number of queries whatever the number of channels: the live list (bounded by
the stream quota, and capped), the viewer's follows among them, the offline page and its
count; viewer counts come from one Redis round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.models import Follow
from delivery.segment_store import segment_storage
from streams.models import Channel, LiveSession
from viewers.counter import viewer_counts

OFFLINE_PAGE = 48
LIVE_CAP = 1000
MAX_QUERY = 100


@dataclass(frozen=True, slots=True)
class LiveEntry:
    slug: str
    title: str
    category: str
    streamer: str
    viewers: int
    thumbnail: str
    started_at: Any
    followed: bool


@dataclass(frozen=True, slots=True)
class Listing:
    live: list[LiveEntry]
    offline: Page[Channel]
    categories: list[tuple[str, int]]
    query: str
    category: str


def _matching(query: str, prefix: str = "") -> Q:
    if not query:
        return Q()
    return (
        Q(**{f"{prefix}title__icontains": query})
        | Q(**{f"{prefix}slug__icontains": query})
        | Q(**{f"{prefix}category__icontains": query})
        | Q(**{f"{prefix}owner__display_name__icontains": query})
    )


def live_entries(user: Any, query: str = "", category: str = "") -> list[LiveEntry]:
    sessions: QuerySet[LiveSession] = LiveSession.objects.filter(
        ended_at__isnull=True, channel__is_banned=False
    ).filter(_matching(query, "channel__"))
    if category:
        sessions = sessions.filter(channel__category__iexact=category)
    rows = list(
        sessions.select_related("channel__owner", "thumbnail").order_by("started_at")[:LIVE_CAP]
    )
    slugs = [row.channel.slug for row in rows]
    counts = viewer_counts().counts(slugs)
    followed: set[int] = set()
    if user is not None and user.is_authenticated and rows:
        followed = set(
            Follow.objects.filter(
                user_id=user.pk, channel_id__in=[row.channel_id for row in rows]
            ).values_list("channel_id", flat=True)
        )
    storage = segment_storage()
    entries = []
    for row in rows:
        thumbnail = getattr(row, "thumbnail", None)
        entries.append(LiveEntry(
            slug=row.channel.slug,
            title=row.channel.title,
            category=row.channel.category,
            streamer=row.channel.owner.display_name,
            viewers=counts.get(row.channel.slug, 0),
            thumbnail=storage.url(thumbnail.path) if thumbnail is not None else "",
            started_at=row.started_at,
            followed=row.channel_id in followed,
        ))
    entries.sort(key=lambda e: (not e.followed, -e.viewers, e.slug))
    return entries


def listing(user: Any, *, query: str = "", category: str = "", page: str | int = 1) -> Listing:
    query = " ".join(query.split())[:MAX_QUERY]
    live = live_entries(user, query, category)
    live_now = LiveSession.objects.filter(channel=OuterRef("pk"), ended_at__isnull=True)
    offline = (
        Channel.objects.filter(is_banned=False)
        .filter(~Exists(live_now))
        .filter(_matching(query))
        .select_related("owner")
        .order_by("slug")
    )
    if category:
        offline = offline.filter(category__iexact=category)
    categories: dict[str, int] = {}
    for entry in live:
        if entry.category:
            categories[entry.category] = categories.get(entry.category, 0) + entry.viewers
    return Listing(
        live=live,
        offline=Paginator(offline, OFFLINE_PAGE).get_page(page),
        categories=sorted(categories.items(), key=lambda item: (-item[1], item[0]))[:12],
        query=query,
        category=category,
    )
