"""The watch page, the dashboard and the directory in Chromium against `manage.py up`, with
ffmpeg publishing:
- a past broadcast plays with nothing drawn over it (the offline notice hidden);
- the quality menu shows only with two renditions or more;
- a chosen rendition that meets a gap (hls.js fails over, automatic) is chosen again once
  its live edge has no gap;
- through an origin outage (503s with Retry-After, then refused connections) the player
  backs off with jitter, without hammering, and plays again when the origin is back;
- every character of the pages is drawn from an installed font (the chat's moderation
  buttons were empty boxes), the channel's own bitrate cap set in admin drives the
  dashboard; the screenshots for the notes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.platform.delivery.browser import ARTIFACTS, CHROMIUM_FLAGS, missing_glyphs
from tests.support.processes import free_port, start, stop, wait_for, wait_live

pytestmark = pytest.mark.slow

VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if shutil.which("chromium") is None or shutil.which("ffmpeg") is None:
        pytest.skip("chromium and ffmpeg are needed")
    port = free_port()
    # Source only: the quality menu test shows a broadcast with one rendition, then gives
    # the player a second one itself (the ladder has its own end-to-end test).
    process, banner = start(tmp_path_factory.mktemp("player"), port,
                            extra_env={"GOLIVE_TRANSCODE_SESSIONS": "0"})
    banner["base"] = f"http://127.0.0.1:{port}"
    try:
        yield banner
    finally:
        stop(process)


@pytest.fixture(scope="module")
def chromium(platform: dict[str, str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(platform: dict[str, str]) -> Iterator[None]:
    """The demo channel live for the rest of the module: 640x360, a keyframe every 2 s."""
    publisher = ffmpeg_publish(f"{platform['rtmp']}/{platform['key']}", frames=30 * 900,
                               realtime=True, background=True, timeout=1000)
    try:
        wait_live(platform["base"])
        yield
    finally:
        publisher.kill()
        publisher.wait()


@pytest.fixture
def browser(chromium: Any) -> Iterator[Any]:
    """A browser context of this test's own: its pages close (and stop counting as
    viewers) when the test ends, passed or failed."""
    contexts: list[Any] = []

    class Contexts:
        def new_context(self, **options: Any) -> Any:
            contexts.append(chromium.new_context(**{"viewport": VIEWPORT, **options}))
            return contexts[-1]

        def new_page(self, **options: Any) -> Any:
            return self.new_context(**options).new_page()

    yield Contexts()
    for context in contexts:
        context.close()


def playing(page: Any, seconds: float = 1.0, timeout: float = 30_000) -> None:
    page.wait_for_function(
        f"window.golivePlayer && window.golivePlayer.video.currentTime > {seconds}",
        timeout=timeout,
    )


# What covers the middle of the video, and which of the page's states are drawn.
PLAYER_STATE = """() => {
  const video = document.getElementById("video");
  const box = video.getBoundingClientRect();
  const top = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  const shown = (id) => !document.getElementById(id).hidden;
  return {mode: window.golivePlayer.mode, on_top: top && top.id, offline: shown("offline"),
          reconnecting: shown("reconnecting"), past: shown("vod-badge"), live: shown("live-badge")};
}"""


def test_a_past_broadcast_plays_with_nothing_drawn_over_it(platform, browser) -> None:
    base = platform["base"]
    published = ffmpeg_publish(f"{platform['rtmp']}/{platform['key']}", frames=30 * 8,
                               size="320x180")
    assert published.returncode == 0, published.stderr
    wait_for(lambda: 'class="vod"' in requests.get(f"{base}/c/demo", timeout=5).text, 30,
             "the recording to be listed")
    page = browser.new_page()
    page.goto(f"{base}/c/demo")
    assert page.evaluate(PLAYER_STATE)["offline"]  # the channel is offline: the notice shows
    page.click("a.vod")
    playing(page, 1.0)
    expected = {"mode": "vod", "on_top": "video", "offline": False, "reconnecting": False,
                "past": True, "live": False}
    assert page.evaluate(PLAYER_STATE) == expected
    # The page polls the channel's status every 2 s: the notice must not come back.
    page.wait_for_timeout(4500)
    assert page.evaluate(PLAYER_STATE) == expected
    assert page.evaluate("window.golivePlayer.video.currentTime") > 4
    page.close()


def two_renditions(route: Any) -> None:
    """The multivariant playlist with the source listed twice, the second as a 180p rung:
    what the player gets once the transcoder's ladder exists."""
    response = route.fetch()
    lines = response.text().splitlines()
    at = next((n for n, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF")), None)
    if at is None:  # not a multivariant playlist (a 304, an error): as it came
        route.fulfill(response=response)
        return
    low = re.sub(r"BANDWIDTH=\d+", "BANDWIDTH=300000", lines[at])
    low = re.sub(r"RESOLUTION=\d+x\d+", "RESOLUTION=320x180", low)
    uri = lines[at + 1]
    lines[at + 2:at + 2] = [low, uri + ("&" if "?" in uri else "?") + "rung=low"]
    route.fulfill(response=response, body="\n".join(lines) + "\n")


def test_the_quality_menu_shows_only_with_two_renditions_or_more(platform, browser, live) -> None:
    base = platform["base"]
    single = browser.new_page()
    single.goto(f"{base}/c/demo")
    playing(single)
    assert single.evaluate("window.golivePlayer.hls.levels.length") == 1
    assert not single.is_visible("#quality-box")  # a menu with one choice is no choice
    single.close()

    double = browser.new_page()
    double.route("**/live/demo/master.m3u8", two_renditions)
    double.goto(f"{base}/c/demo")
    playing(double)
    assert double.evaluate("window.golivePlayer.hls.levels.length") == 2
    assert double.is_visible("#quality-box")
    labels = double.eval_on_selector_all("#quality option", "options => options.map(o => o.text)")
    assert labels[0] == "Auto"
    assert sorted(label.split(" ")[0] for label in labels[1:]) == ["180p", "360p"]
    low = next(n for n, label in enumerate(labels) if label.startswith("180p"))
    double.select_option("#quality", str(low - 1))
    assert double.evaluate("window.golivePlayer.hls.autoLevelEnabled") is False
    double.wait_for_function("(() => { const hls = window.golivePlayer.hls;"
                             " return hls.currentLevel >= 0"
                             " && hls.levels[hls.currentLevel].height === 180; })()",
                             timeout=20_000)  # the player switched to the chosen rung
    double.close()


def with_gap(text: str, gap_from: int | None) -> tuple[str, int]:
    """The media playlist with every segment from ``gap_from`` on (default: the one being
    built) marked as a gap, its parts too: what a rung whose transcoder restarted lists."""
    lines = text.splitlines()
    msn = next(int(line.split(":")[1]) for line in lines
               if line.startswith("#EXT-X-MEDIA-SEQUENCE:"))
    msn += sum(int(line.split("=")[1]) for line in lines  # a delta update (_HLS_skip)
               if line.startswith("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
    segments = sum(1 for line in lines if line.startswith("#EXTINF"))
    first = msn + segments if gap_from is None else gap_from
    out = []
    for line in lines:
        if line.startswith("#EXT-X-PART:") and msn >= first:
            line += ",GAP=YES"
        elif line.startswith("#EXTINF") and msn >= first:
            out.append("#EXT-X-GAP")
        elif line and not line.startswith("#"):
            msn += 1  # a segment's URI ends it
        out.append(line)
    return "\n".join(out) + "\n", first


def test_a_chosen_rendition_that_meets_a_gap_is_played_again_once_it_is_back(
    platform, browser, live,
) -> None:
    """hls.js fails a viewer over from a rendition with a gap (EXT-X-GAP, as a rung whose
    transcoder restarted lists) and turns automatic; the menu still shows the viewer's
    choice, so the page takes them back to it once its live edge has no gap."""
    base = platform["base"]
    gap: dict[str, Any] = {"until": 0.0, "from": None, "served": 0}

    def low_rung(route: Any) -> None:
        try:
            response = route.fetch()
            body = response.text()
        except Exception:  # hls.js gave the request up (a level switch) as it was fetched
            with contextlib.suppress(Exception):
                route.abort()
            return
        if time.monotonic() < gap["until"]:
            body, gap["from"] = with_gap(body, gap["from"])
            gap["served"] += 1
        route.fulfill(response=response, body=body)

    page = browser.new_page()
    page.route("**/live/demo/master.m3u8", two_renditions)
    page.route(re.compile(r"rung=low"), low_rung)
    page.goto(f"{base}/c/demo")
    playing(page)
    labels = page.eval_on_selector_all("#quality option", "options => options.map(o => o.text)")
    low = next(n for n, label in enumerate(labels) if label.startswith("180p")) - 1
    page.select_option("#quality", str(low))
    on_low = ("(() => { const hls = window.golivePlayer.hls; return hls.currentLevel >= 0"
              " && hls.levels[hls.currentLevel].height === 180 && !hls.autoLevelEnabled; })()")
    page.wait_for_function(on_low, timeout=20_000)
    page.evaluate("""() => { window.gapSeen = [];
        window.golivePlayer.hls.on("hlsError", (_e, d) => {
            if (d.details === "fragGap") window.gapSeen.push(performance.now()); }); }""")
    playing(page, page.evaluate("window.golivePlayer.video.currentTime") + 2)

    gap["until"] = time.monotonic() + 8  # four segments' worth of the rung is a gap
    page.wait_for_function("window.gapSeen.length > 0", timeout=20_000)
    page.wait_for_function("!window.golivePlayer.hls.levels[window.golivePlayer.hls.currentLevel]"
                           " || window.golivePlayer.hls.levels[window.golivePlayer.hls"
                           ".currentLevel].height !== 180", timeout=20_000)
    failed_over = time.monotonic()
    # Back on the chosen rung, chosen again (not automatic), and playing.
    try:
        page.wait_for_function(on_low, timeout=30_000)
    except Exception as error:
        state = page.evaluate("""() => { const p = window.golivePlayer, h = p.hls;
            return {returns: p.returns, level: h.currentLevel, auto: h.autoLevelEnabled,
                    errors: p.errors.slice(-6), playing: p.video.currentTime}; }""")
        raise AssertionError(f"not back on the chosen rung: {state}") from error
    back_after = time.monotonic() - max(failed_over, gap["until"])
    returns = page.evaluate("window.golivePlayer.returns")
    start_time = page.evaluate("window.golivePlayer.video.currentTime")
    page.wait_for_timeout(3000)
    advanced = page.evaluate("window.golivePlayer.video.currentTime") - start_time
    quality = page.eval_on_selector("#quality", "select => select.value")
    page.unroute_all(behavior="ignoreErrors")
    page.close()
    print(f"\nrung gapped from segment {gap['from']} in {gap['served']} playlists; back on it"
          f" {back_after:.1f} s after it was whole again ({returns} return)")
    assert gap["served"] > 0
    assert returns >= 1
    assert quality == str(low)  # the menu told the truth all along
    assert advanced > 2


ORIGIN_PATH = re.compile(r"^/(live|media)/")


def test_through_an_origin_outage_the_player_backs_off_with_jitter_and_plays_again(
    platform, browser, live,
) -> None:
    base = platform["base"]
    page = browser.new_page()
    outage: dict[str, Any] = {"phase": None, "requests": []}

    def origin(route: Any) -> None:
        path = re.sub(r"^https?://[^/]+", "", route.request.url)
        if outage["phase"] is None or not ORIGIN_PATH.match(path):
            route.continue_()
            return
        outage["requests"].append((time.monotonic(), path.split("?")[0]))
        if outage["phase"] == "503":
            route.fulfill(status=503, headers={"Retry-After": "3"}, body="busy, try again")
        else:
            route.abort("connectionrefused")

    page.route("**/*", origin)
    page.goto(f"{base}/c/demo")
    playing(page, 2.0)
    page.wait_for_timeout(2000)
    restarts_before = len(page.evaluate("window.golivePlayer.restarts"))

    began, began_ms = time.monotonic(), page.evaluate("Date.now()")
    overlay_seen = False
    for phase, seconds in (("503", 10), ("refused", 12)):
        outage["phase"] = phase
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            page.wait_for_timeout(250)  # route handlers run while Playwright waits
            overlay_seen = overlay_seen or page.evaluate(PLAYER_STATE)["reconnecting"]
    outage["phase"] = None
    ended, ended_ms = time.monotonic(), page.evaluate("Date.now()")
    during = [r for r in page.evaluate("window.golivePlayer.restarts")[restarts_before:]
              if began_ms <= r["at"] <= ended_ms]

    # Recovery: live video moves again, near the live edge.
    page.wait_for_function("window.golivePlayer.mode === 'live' && window.golivePlayer.latency()"
                           " !== null && !window.golivePlayer.video.paused", timeout=60_000)
    back = time.monotonic() - ended
    start_time = page.evaluate("window.golivePlayer.video.currentTime")
    page.wait_for_timeout(4000)
    state = page.evaluate(PLAYER_STATE)
    advanced = page.evaluate("window.golivePlayer.video.currentTime") - start_time
    latency = page.evaluate("window.golivePlayer.latency()")
    page.close()

    times = [moment for moment, _ in outage["requests"]]
    busiest = max(sum(1 for t in times if at <= t < at + 2) for at in times)
    print(f"\noutage of {ended - began:.0f} s: {len(times)} origin requests, busiest 2 s: "
          f"{busiest}; restarts (nominal → drawn ms): "
          + ", ".join(f"{r['nominal']:.0f} → {r['delay']:.0f}" for r in during)
          + f"; playing again {back:.1f} s after the origin came back, {latency:.1f} s behind")

    # No hammering: a handful of quick retries, then ever longer waits.
    assert len(times) <= 45, outage["requests"]
    assert busiest <= 12
    # Restarts back off exponentially from the 503's Retry-After (3 s), else from 1 s ...
    assert len(during) >= 2
    for k, restart in enumerate(during):
        base = restart["serverWaitMs"] or 1000
        assert restart["nominal"] == min(30_000, base * 2**k), during
    assert during[0]["serverWaitMs"] == 3000  # a 503 is not retried at once: Retry-After
    # ... each wait half fixed, half random, so viewers do not return in one wave.
    ratios = [r["delay"] / r["nominal"] for r in during]
    assert all(0.5 <= ratio <= 1.0 for ratio in ratios), ratios
    assert max(ratios) - min(ratios) > 0.01, ratios
    assert overlay_seen  # the viewer is told: "Reconnecting…"
    # Playing again, live, with nothing over the video.
    assert back < 45
    assert state["mode"] == "live"
    assert state["on_top"] == "video"
    assert not state["reconnecting"]
    assert advanced > 2.5
    assert latency < 8


def sign_in(page: Any, base: str, user: str, password: str, then: str) -> None:
    page.goto(f"{base}/accounts/login/?next={then}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{then}")


def no_boxes(page: Any) -> None:
    assert missing_glyphs(page) == [], page.url


def test_every_character_is_drawn_and_the_channels_bitrate_cap_reaches_the_dashboard(
    platform, browser, live,
) -> None:
    base = platform["base"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # Ops give the demo channel its own cap in admin, below what ffmpeg sends (~800 kb/s).
    admin = browser.new_page()
    admin.goto(f"{base}/admin/login/?next=/admin/streams/channel/")
    admin.fill("input[name=username]", platform["user"])
    admin.fill("input[name=password]", platform["password"])
    admin.click("input[type=submit]")
    admin.click("#result_list a:text-is('demo')")
    admin.fill("input[name=max_bitrate_kbps]", "300")
    admin.click("input[name=_save]")
    admin.wait_for_selector(".messagelist .success")
    admin.close()

    # A viewer signs up and chats; a <script> is text.
    dora = browser.new_page()
    dora.goto(f"{base}/accounts/signup/?next=/c/demo")
    dora.fill("input[name=username]", "dora")
    dora.fill("input[name=email]", "dora@example.com")
    dora.fill("input[name=password1]", "a-long-pass-phrase-1234")
    dora.fill("input[name=password2]", "a-long-pass-phrase-1234")
    dora.click("button[type=submit]")
    dora.wait_for_url(f"{base}/c/demo")
    dora.wait_for_function("window.goliveChat.me === 'dora'")
    for text in ("hi! first time here", "<script>alert('x')</script> is just text here",
                 "what keyboard is that?"):
        dora.fill("#chat-input", text)
        dora.press("#chat-input", "Enter")
        dora.wait_for_timeout(300)
    playing(dora)

    # The streamer watches their own channel: moderation buttons on dora's messages.
    streamer_context = browser.new_context()
    watch = streamer_context.new_page()
    sign_in(watch, base, "demo", platform["streamer_password"], "/c/demo")
    playing(watch, 2.0)
    watch.wait_for_selector("#chat-messages li button[data-action=ban]")
    watch.fill("#chat-input", "Welcome dora! Be nice in chat.")
    watch.press("#chat-input", "Enter")
    watch.wait_for_selector("#chat-messages li:has-text('Welcome dora')")
    buttons = watch.eval_on_selector_all("#chat-messages li button.icon-button", """buttons =>
        buttons.map(b => ({action: b.dataset.action, label: b.getAttribute("aria-label"),
                           text: b.innerText.trim(), width: b.querySelector("svg").getBBox().width,
                           title: b.querySelector("svg title").textContent}))""")
    assert {b["action"] for b in buttons} == {"delete", "timeout", "ban"}
    for button in buttons:
        assert button["text"] == ""  # an icon, not a character that may be a box
        assert button["label"]
        assert button["title"] == button["label"]
        assert button["width"] > 10  # the icon is drawn
    # The probe itself sees boxes where this machine has no glyph (the old buttons' ⏱ ⛔).
    assert len(missing_glyphs(watch, ["\u23f1", "\u26d4"])) == 2
    no_boxes(watch)
    # Two tabs play (dora's, the streamer's); earlier tests' tabs fall out within 30 s.
    watch.wait_for_function("document.getElementById('viewers').textContent === '2'",
                            timeout=45_000)
    watch.screenshot(path=str(ARTIFACTS / "watch-with-chat.png"))

    dashboard = streamer_context.new_page()
    dashboard.set_viewport_size({"width": 1500, "height": 1000})
    dashboard.goto(f"{base}/dashboard")
    assert "300 Kbps (or less)" in dashboard.inner_text("#obs-settings")
    dashboard.wait_for_selector("#warnings [data-code=bitrate]", timeout=20_000)
    warning = dashboard.inner_text("#warnings [data-code=bitrate]")
    assert "over this channel's cap of 300 kb/s" in warning
    dashboard.wait_for_function(
        "window.goliveDashboard.hls && document.getElementById('preview').currentTime > 1",
        timeout=30_000,
    )
    no_boxes(dashboard)
    dashboard.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)

    directory = browser.new_page()

    def thumbnail_shown() -> bool:
        directory.goto(f"{base}/")
        directory.wait_for_load_state("load")
        return directory.evaluate("(() => { const img = document.querySelector('.tile img');"
                                  " return !!img && img.complete && img.naturalWidth > 0; })()")

    wait_for(thumbnail_shown, 30, "a thumbnail in the directory")
    assert directory.inner_text("[data-viewers=demo]") == "2"
    no_boxes(directory)
    directory.screenshot(path=str(ARTIFACTS / "directory.png"))
    for path in ("/accounts/login/", "/accounts/signup/", "/category/none"):
        directory.goto(f"{base}{path}")
        no_boxes(directory)
