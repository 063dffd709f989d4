"""The directory: live first with thumbnails and counts, followed first, search,
categories, offline below and paginated, in a bounded number of queries."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.actions import follow
from streams.models import Channel, LiveSession, Streamer
from viewers import counter
from viewers.counter import MemoryViewerCounts
from watch.models import Thumbnail

pytestmark = pytest.mark.django_db


@pytest.fixture
def memory_counts(monkeypatch):
    memory = MemoryViewerCounts()
    monkeypatch.setattr(counter, "_counts", [memory])
    return memory


def make_channels(total: int, live: int) -> list[Channel]:
    User = get_user_model()
    User.objects.bulk_create(User(username=f"s{n:05d}") for n in range(total))
    users = list(User.objects.filter(username__startswith="s").order_by("username"))
    Streamer.objects.bulk_create(
        Streamer(user=u, display_name=f"Streamer {u.username}") for u in users
    )
    streamers = list(Streamer.objects.order_by("display_name"))
    Channel.objects.bulk_create(
        Channel(owner=s, slug=f"ch{n:05d}", title=f"Stream number {n}",
                category="Chess" if n % 2 else "Just Chatting")
        for n, s in enumerate(streamers)
    )
    channels = list(Channel.objects.order_by("slug"))
    LiveSession.objects.bulk_create(LiveSession(channel=c) for c in channels[:live])
    sessions = LiveSession.objects.filter(ended_at__isnull=True)
    Thumbnail.objects.bulk_create(
        Thumbnail(session=s, path=f"live/{s.pk}/thumb-3.jpg") for s in sessions
    )
    return channels


def test_ten_thousand_channels_render_in_a_bounded_number_of_queries(
    client, charlie, memory_counts
) -> None:
    channels = make_channels(10_000, 200)
    for n in range(7):
        asyncio.run(memory_counts.beat("ch00150", f"tab{n:06d}"))
    follow(charlie, channels[199])
    client.force_login(charlie)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    page = response.content.decode()
    # session, user, live list with thumbnails, follows among them, offline count and page
    assert len(queries) <= 8, [q["sql"][:120] for q in queries.captured_queries]
    assert page.count('class="tile"') == 200
    assert page.count("thumb-3.jpg") == 200
    # Followed first, then by viewers.
    first, second = [page.index(f'data-slug="{slug}"') for slug in ("ch00199", "ch00150")]
    assert first < second < page.index('data-slug="ch00000"')
    assert 'data-viewers="ch00150">7<' in page
    assert "Page 1 of" in page
    # Another page costs the same.
    with CaptureQueriesContext(connection) as later:
        client.get("/?page=100")
    assert len(later) <= 8


def test_search_matches_title_channel_streamer_and_category(client, alice, bob) -> None:
    from streams.actions import update_channel

    update_channel(alice.channel, title="Speedrun practice", category="Celeste")
    update_channel(bob.channel, title="Cooking", category="Food")
    for query, found, missing in [
        ("speedrun", "/c/alice", "/c/bob"), ("celeste", "/c/alice", "/c/bob"),
        ("bob", "/c/bob", "/c/alice"), ("food", "/c/bob", "/c/alice"),
    ]:
        page = client.get("/", {"q": query}).content.decode()
        assert found in page
        assert missing not in page


def test_category_pages_list_only_their_category(client, alice, bob, memory_counts) -> None:
    from streams.actions import update_channel

    update_channel(alice.channel, category="Chess")
    update_channel(bob.channel, category="Music")
    LiveSession.objects.create(channel=alice.channel)
    home = client.get("/").content.decode()
    assert "/category/Chess" in home
    page = client.get("/category/Chess").content.decode()
    assert "/c/alice" in page
    assert "/c/bob" not in page


def test_banned_channels_are_not_listed(client, alice) -> None:
    from streams.actions import set_banned

    set_banned(alice.channel, True)
    assert "/c/alice" not in client.get("/").content.decode()
