"""Headless Chromium (Debian's) driven by Playwright, watching a golive page."""

from __future__ import annotations

import itertools
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "var" / "test-artifacts"


@dataclass
class Playback:
    samples: list[tuple[float, float, float | None]]  # (monotonic s, currentTime, latency s)
    badge_visible: bool
    qualities: int
    errors: list[str]

    @property
    def advanced(self) -> float:
        return self.samples[-1][1] - self.samples[0][1]

    @property
    def longest_stall(self) -> float:
        longest, since = 0.0, self.samples[0][0]
        for (_, before, _), (moment, after, _) in itertools.pairwise(self.samples):
            if after > before:
                since = moment
            longest = max(longest, moment - since)
        return longest

    @property
    def latencies(self) -> list[float]:
        return [latency for _, _, latency in self.samples if latency is not None]

    def latency_summary(self) -> str:
        values = self.latencies
        return (
            f"median {statistics.median(values):.2f} s, "
            f"p95 {statistics.quantiles(values, n=20)[-1]:.2f} s over {len(values)} samples"
        )


def watch(url: str, seconds: float = 20, screenshot: str | None = None) -> Playback:
    """Opens the watch page, waits for playback to start, samples it every 0.2 s."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_function(
            "window.golivePlayer && window.golivePlayer.video.currentTime > 0", timeout=30_000
        )
        samples: list[tuple[float, float, float | None]] = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            current, latency = page.evaluate(
                "[window.golivePlayer.video.currentTime, window.golivePlayer.latency()]"
            )
            samples.append((time.monotonic(), current, latency))
            time.sleep(0.2)
        playback = Playback(
            samples,
            page.is_visible("#live-badge"),
            page.eval_on_selector_all("#quality option", "options => options.length"),
            errors,
        )
        if screenshot:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / screenshot))
        browser.close()
    return playback
