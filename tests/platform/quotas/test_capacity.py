"""The capacity page: live streams against the quota over a day, refusals, live health."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from quotas import capacity, tally
from quotas.actions import get_quota
from quotas.models import QuotaChange, ServerQuota, SlotLease
from tests.support.personas import make_streamer

H = timedelta(hours=1)
M = timedelta(minutes=1)
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


# --- The figures, from hand-built rows ---------------------------------------------------


def test_an_interval_holds_the_instants_from_its_start_until_before_its_end() -> None:
    intervals = [(T0, T0 + 2 * H), (T0 + H, None), (T0 + H, T0 + H)]  # the last: never live
    instants = [T0 - M, T0, T0 + H, T0 + 2 * H - M, T0 + 2 * H, T0 + 100 * H]
    assert capacity.live_counts(intervals, instants) == [0, 1, 2, 2, 1, 1]


def test_the_samples_are_five_minutes_apart_over_a_day_and_end_now() -> None:
    instants = capacity.sample_instants(T0)
    assert len(instants) == 288
    assert instants[-1] == T0
    assert instants[0] == T0 - 24 * H + 5 * M
    assert {b - a for a, b in itertools.pairwise(instants)} == {5 * M}


def test_the_peak_counts_a_burst_shorter_than_a_sample_step() -> None:
    intervals = [
        (T0 - 10 * H, None),
        (T0 + 2 * M, T0 + 3 * M),
        (T0 + 2 * M, T0 + 4 * M),
        (T0 + 3 * M, T0 + 5 * M),  # starts as the first burst ends: never three at once
        (T0 - 30 * H, T0 - 20 * H),  # before the window
    ]
    assert capacity.peak_live(intervals, T0 - 5 * H, T0 + 5 * H) == (3, T0 + 2 * M)
    assert capacity.peak_live([], T0, T0 + H) == (0, None)


def test_the_limits_are_the_audit_trails_old_values_until_each_change_then_the_rows() -> None:
    def limits(streams: int, reserve: int) -> dict[str, int]:
        return {"max_streams": streams, "partner_reserve": reserve}

    changes = [
        (T0 + H, limits(50, 0), limits(80, 10)),
        (T0 + 3 * H, limits(80, 10), limits(100, 20)),
    ]
    current = capacity.Limits(100, 20)
    at = capacity.limits_at(changes, current, [T0, T0 + H - M, T0 + H, T0 + 2 * H, T0 + 3 * H])
    assert [(limits.max_streams, limits.partner_reserve) for limits in at] == [
        (50, 0), (50, 0), (80, 10), (80, 10), (100, 20),
    ]
    assert at[2].open_to_all == 70
    assert capacity.limits_at([], current, [T0]) == [current]


def test_tallies_sum_by_result_and_refusals_by_reason_most_frequent_first() -> None:
    rows = [
        ("refused", "banned", 2), ("admitted", "", 7), ("refused", "capacity", 3),
        ("refused", "capacity", 1), ("lease_expired", "", 1), ("refused", "cooldown", 2),
    ]
    admissions = capacity.tally_admissions(T0, rows)
    assert admissions.totals == {
        "admitted": 7, "resumed": 0, "refused": 8, "lease_expired": 1, "force_stopped": 0,
    }
    assert [(r.reason, r.count) for r in admissions.refusals] == [
        ("capacity", 4), ("banned", 2), ("cooldown", 2),
    ]
    assert admissions.refusals[0].meaning == "platform at its stream quota"


def test_the_chart_draws_one_point_per_sample_and_steps_where_the_quota_changed() -> None:
    instants = capacity.sample_instants(T0)
    limits = [capacity.Limits(50 if i < 100 else 80, 10) for i in range(len(instants))]
    series = capacity.Series(tuple(instants), tuple([7] * 288), tuple(limits), 7, T0)
    chart = capacity.draw(series, width=960, height=320)
    live = chart.live_points.split()
    assert len(live) == 288
    assert len(chart.quota_points.split()) == 289  # one extra corner for the step
    assert chart.has_reserve
    # 80 * 1.05 = 84 streams rounds up to a 100-stream axis in steps of 20.
    assert [tick.label for tick in chart.y_ticks] == ["0", "20", "40", "60", "80", "100"]
    assert float(live[0].split(",")[0]) == chart.left
    assert float(live[-1].split(",")[0]) == chart.right
    # 7 of 100 on a 244-pixel plot whose bottom is at 284.
    assert float(live[0].split(",")[1]) == pytest.approx(284 - 0.07 * 244, abs=0.1)
    hour_labels = [tick.label for tick in chart.x_ticks if tick.label]
    assert hour_labels == ["15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00", "12:00"]


# --- The figures, from the database --------------------------------------------------------


def session(name: str, start: datetime, end: datetime | None, **fields: object):
    channel = make_streamer(name, partner=fields.pop("partner", False)).channel
    return channel.sessions.create(started_at=start, ended_at=end, **fields)


def test_the_series_counts_sessions_and_quota_in_force_at_each_sample(db) -> None:
    now = timezone.now()
    session("ended-long-ago", now - 30 * H, now - 24 * H - M)
    session("overnight", now - 26 * H, now - 20 * H)
    session("all-day", now - 23 * H, now - H)
    session("still-live", now - 5 * H, None)
    session("two-minutes", now - 5 * H, now - 5 * H + 2 * M)
    session("burst-1", now - 3 * H - 4 * M, now - 3 * H - M)
    session("burst-2", now - 3 * H - 3 * M, now - 3 * H - 2 * M)
    QuotaChange.objects.create(
        changed_at=now - 10 * H, source="command", reason="launch",
        old={"max_streams": 50, "max_transcodes": 4, "partner_reserve": 0},
        new={"max_streams": 80, "max_transcodes": 4, "partner_reserve": 10},
    )
    QuotaChange.objects.create(
        changed_at=now - 2 * H, source="admin", reason="evening",
        old={"max_streams": 80, "max_transcodes": 4, "partner_reserve": 10},
        new={"max_streams": 100, "max_transcodes": 4, "partner_reserve": 20},
    )
    ServerQuota.objects.filter(pk=get_quota().pk).update(max_streams=100, partner_reserve=20)

    series = capacity.load_series(now, get_quota())

    def at(ago: timedelta) -> tuple[int, int, int]:
        i = series.instants.index(now - ago)
        return series.live[i], series.limits[i].max_streams, series.limits[i].partner_reserve

    assert len(series.live) == 288
    assert at(23 * H + 55 * M) == (1, 50, 0)  # overnight
    assert at(23 * H) == (2, 50, 0)  # overnight, all-day
    assert at(20 * H) == (1, 50, 0)  # overnight ended at this instant
    assert at(10 * H) == (1, 80, 10)  # the change applies from its instant
    assert at(5 * H) == (3, 80, 10)  # all-day, still-live, two-minutes
    assert at(3 * H) == (2, 80, 10)  # the burst fell between two samples
    assert at(2 * H) == (2, 100, 20)
    assert at(H) == (1, 100, 20)
    assert at(timedelta(0)) == (1, 100, 20)
    # The peak is exact: all-day, still-live and both bursts at once.
    assert (series.peak, series.peak_at) == (4, now - 3 * H - 3 * M)


def test_admissions_are_the_last_24_hourly_tallies(db) -> None:
    now = datetime(2026, 11, 21, 14, 30, tzinfo=UTC)
    tally.count("refused", "capacity", n=3, at=now)
    tally.count("refused", "capacity", at=now - 23 * H)
    tally.count("refused", "banned", n=2, at=now - H)
    tally.count("refused", "unknown_key", n=5, at=now - 24 * H)  # 14:00 yesterday: out
    tally.count("admitted", n=7, at=now)
    tally.count("lease_expired", at=now - 2 * H)
    admissions = capacity.load_admissions(now)
    assert admissions.since == datetime(2026, 11, 20, 15, tzinfo=UTC)
    assert [(r.reason, r.count) for r in admissions.refusals] == [("capacity", 4), ("banned", 2)]
    assert admissions.totals == {
        "admitted": 7, "resumed": 0, "refused": 6, "lease_expired": 1, "force_stopped": 0,
    }


# --- The page ------------------------------------------------------------------------------

URL = "/admin/capacity/"


def test_the_page_is_for_ops_and_superusers_only(
    alice, olga, ada, client, django_user_model
) -> None:
    assert client.get(URL).status_code == 302  # anonymous: to the login page
    client.force_login(alice.user)
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    staff = django_user_model.objects.create_user("stan", password="stan-pw-1234", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    for user in (olga, ada):
        client.force_login(user)
        assert client.get(URL).status_code == 200


def test_the_admin_index_and_the_quota_form_link_to_the_page(ada, client) -> None:
    client.force_login(ada)
    assert f'href="{URL}"' in client.get("/admin/").content.decode()
    change = f"/admin/quotas/serverquota/{get_quota().pk}/change/"
    assert f'href="{URL}"' in client.get(change).content.decode()


def test_the_page_lists_live_sessions_with_their_health(
    olga, client, settings, monkeypatch
) -> None:
    settings.GOLIVE_LEASE_TTL = 15.0
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)  # ages to the second
    fresh = session(
        "fresh", now - 65 * M, None, partner=True, ingest_node="node-a",
        video_codec="avc1.64001f", audio_codec="mp4a.40.2", width=1280, height=720,
        transcoded=True, last_heartbeat_at=now - timedelta(seconds=3),
        health={"bitrate_kbps": 2990.8, "frame_rate": 29.97, "keyframe_interval_ms": 2000,
                "lag_ms": 120},
    )
    SlotLease.objects.create(session=fresh, node="node-a", expires_at=now + timedelta(seconds=12))
    quiet = session(
        "quiet", now - 10 * M, None, ingest_node="node-b", video_codec="hvc1.1.6.L93.B0",
        width=1920, height=1080, last_heartbeat_at=now - timedelta(seconds=40),
        health={"bitrate_kbps": 0.0, "lag_ms": 9000},
    )
    SlotLease.objects.create(session=quiet, node="node-b", expires_at=now - timedelta(seconds=25))
    session("gone", now - 3 * H, now - 2 * H, video_codec="avc1.42c01e")
    tally.count("refused", "partner_reserve", n=3)

    client.force_login(olga)
    page = client.get(URL).content.decode()

    assert "2 live of 100" in page
    assert "1 of 4 transcoded" in page
    assert 'role="img"' in page
    assert "<title id=\"capacity-chart-title\">" in page
    assert page.count('id="capacity-live"') == 1
    rows = page.split('id="live-sessions"')[1]
    assert "gone" not in rows
    fresh_row = rows.split(f'data-session="{fresh.pk}"')[1].split("</tr>")[0]
    quiet_row = rows.split(f'data-session="{quiet.pk}"')[1].split("</tr>")[0]
    assert f'href="/admin/streams/livesession/{fresh.pk}/change/"' in fresh_row
    for shown in ("partner", "node-a", "1 h 05 min", "1280x720", "avc1.64001f", "29.97",
                  "2991 kb/s", "2000 ms", "120 ms", "3 s ago", "transcoded", "in 12 s"):
        assert shown in fresh_row, shown
    assert "stale" not in fresh_row
    for shown in ("1920x1080", "0 kb/s", "9000 ms", "40 s ago", "stale", "source only",
                  "expired 25 s ago"):
        assert shown in quiet_row, shown
    assert 'class="stale"' in page.split(f'data-session="{quiet.pk}"')[0].rsplit("<tr", 1)[1]
    refusals = page.split('id="refusals"')[1].split("</table>")[0]
    assert "partner_reserve" in refusals
    assert "only partner slots left" in refusals


# --- In a real browser -----------------------------------------------------------------------

LIVE_BLUE = (0x2B, 0x6C, 0xB0)  # .capacity-chart .live in the template
QUOTA_RED = (0xC5, 0x30, 0x30)


def pixels(png: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of a PNG (decoded by PyAV: no imaging library here)."""
    import io

    import av

    with av.open(io.BytesIO(png)) as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
    plane = bytes(frame.planes[0])
    stride = frame.planes[0].line_size
    found = []
    for row in range(frame.height):
        line = plane[row * stride : row * stride + frame.width * 3]
        found.extend(zip(line[0::3], line[1::3], line[2::3], strict=True))
    return frame.width, frame.height, found


def near(color: tuple[int, int, int], target: tuple[int, int, int], by: int = 40) -> bool:
    return all(abs(a - b) <= by for a, b in zip(color, target, strict=True))


@pytest.mark.slow
def test_the_capacity_chart_renders_in_headless_chromium(olga, live_server) -> None:
    import shutil

    from tests.platform.delivery.browser import ARTIFACTS, CHROMIUM_FLAGS

    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    now = timezone.now()
    session("morning", now - 9 * H, now - 4 * H)
    session("lunch", now - 5 * H, now - 3 * H + 10 * M)
    session("partner", now - 6 * H, None, partner=True, video_codec="avc1.64001f", width=1920,
            height=1080, last_heartbeat_at=now, health={"bitrate_kbps": 6000.0, "lag_ms": 80})
    session("evening", now - 2 * H, None, video_codec="avc1.42c01e", width=1280, height=720,
            last_heartbeat_at=now - 2 * M, health={"bitrate_kbps": 2500.0})
    QuotaChange.objects.create(
        changed_at=now - 12 * H, source="command", reason="weekend",
        old={"max_streams": 4, "max_transcodes": 2, "partner_reserve": 0},
        new={"max_streams": 5, "max_transcodes": 2, "partner_reserve": 1},
    )
    ServerQuota.objects.filter(pk=get_quota().pk).update(
        max_streams=5, max_transcodes=2, partner_reserve=1
    )
    tally.count("refused", "capacity", n=4)
    tally.count("admitted", n=4)

    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{live_server.url}/admin/login/?next=/admin/capacity/")
        page.fill("#id_username", "olga")
        page.fill("#id_password", "olga-pw-1234")
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/capacity/")
        chart = page.locator("#capacity-chart")
        chart.wait_for(state="visible")
        box = chart.bounding_box()
        live_line = page.locator("#capacity-live")
        line_box = live_line.bounding_box()
        points = (live_line.get_attribute("points") or "").split()
        figure = page.inner_text("#capacity-now")
        label = page.get_attribute("#capacity-chart", "aria-labelledby")
        page.screenshot(path=str(ARTIFACTS / "capacity-page.png"), full_page=True)
        chart_png = chart.screenshot(path=str(ARTIFACTS / "capacity-chart.png"))
        browser.close()

    assert errors == []
    assert box is not None
    assert box["width"] > 600
    assert box["height"] > 150
    assert line_box is not None
    assert line_box["width"] > 500
    assert line_box["height"] > 20
    assert len(points) == 288
    assert "2 live of 5" in figure
    assert "1 reserved for partners" in figure
    assert label == "capacity-chart-title capacity-chart-desc"
    assert len(chart_png) > 10_000
    width, height, found = pixels(chart_png)
    assert abs(width - box["width"]) <= 1
    assert abs(height - box["height"]) <= 1
    assert len(set(found)) > 50  # lines, an area, anti-aliased text: not a blank box
    assert sum(near(pixel, LIVE_BLUE) for pixel in found) > 300
    assert sum(near(pixel, QUOTA_RED) for pixel in found) > 300
    assert (ARTIFACTS / "capacity-page.png").stat().st_size > 30_000


def test_the_page_shows_every_origins_load_beside_streams_and_quota(olga, client, settings):
    import re
    import time as clock

    import redis

    from delivery.load import REPORT_PREFIX

    settings.REDIS_URL = "redis://127.0.0.1:6379/13"
    try:
        server = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        server.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis is needed: {error}")
    names = [f"{REPORT_PREFIX}test-origin-{n}:1" for n in (1, 2)]
    for number, name in enumerate(names, 1):
        server.hset(name, mapping={"held": 100 * number, "limit": 5000, "rps": 7.5 * number,
                                   "shed_rps": 2 if number == 2 else 0, "at": clock.time()})
        server.expire(name, 10)
    try:
        client.force_login(olga)
        page = client.get("/admin/capacity/").content.decode()
    finally:
        server.delete(*names)
    text = re.sub(r"\s+", " ", page)
    assert "2 origin processes, 300 held requests, 22.5 requests/s" in text
    assert "test-origin-2:1" in text
    assert "2.0 shed/s" in text


def test_the_page_shows_viewers_per_live_stream_and_in_all(olga, client, alice, bob):
    import asyncio
    import re

    from streams.models import LiveSession
    from viewers.counter import reset_for_tests, viewer_counts

    LiveSession.objects.create(channel=alice.channel, ingest_node="ingest-a")
    LiveSession.objects.create(channel=bob.channel, ingest_node="ingest-a")
    counts = viewer_counts()

    tabs = [(alice.channel.slug, f"tab-{c * 8}") for c in "abc"] + [
        (bob.channel.slug, "tab-dddddddd")
    ]

    async def watch() -> None:
        for slug, tab in tabs:
            await counts.beat(slug, tab, "203.0.113.7")

    async def leave() -> None:  # with Redis the beats outlive the test: take them back
        for slug, tab in tabs:
            await counts.leave(slug, tab, "203.0.113.7")

    try:
        asyncio.run(watch())
        client.force_login(olga)
        text = re.sub(r"\s+", " ", client.get("/admin/capacity/").content.decode())
    finally:
        asyncio.run(leave())
        reset_for_tests()
    assert "4 viewers" in text
    rows = re.findall(r'<tr class="[^"]*" data-session="\d+">(.*?)</tr>', text)
    assert [re.findall(r'<td class="number">(\d+)</td>$', row.strip()) for row in rows] == [
        ["3"], ["1"]
    ]
