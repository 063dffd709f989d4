"""Headless Chromium (Debian's) driven by Playwright: watching a golive page, and finding
characters that no installed font can draw."""

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


# Every character of the page's text drawn on a canvas in its element's font, compared
# with what the browser draws for a character no font has (U+10FFFD, private use): equal
# drawings mean an empty box ("tofu"). Chromium falls back across every installed font
# before it draws that box, so this finds exactly the characters a person would see as
# boxes on this machine. ``extra`` is text to check as well (a self-test of the probe).
_MISSING_GLYPHS = r"""
(extra) => {
  const canvas = document.createElement("canvas");
  canvas.width = 96; canvas.height = 64;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const draw = (text, font) => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = font;
    ctx.textBaseline = "top";
    ctx.fillStyle = "#000";
    ctx.fillText(text, 8, 8);
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let digest = 0;
    for (let i = 3; i < pixels.length; i += 4) digest = (digest * 31 + pixels[i]) | 0;
    return digest + "/" + ctx.measureText(text).width.toFixed(2);
  };
  const boxes = {};
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (element && !element.closest("script, style, svg")) texts.push([node.textContent, element]);
  }
  document.querySelectorAll("input[placeholder], textarea[placeholder]").forEach(
    (element) => texts.push([element.placeholder, element]));
  document.querySelectorAll("input[type=submit], input[type=button], option").forEach(
    (element) => texts.push([element.value || element.textContent, element]));
  (extra || []).forEach((text) => texts.push([text, document.body]));
  const missing = [];
  const seen = new Set();
  for (const [text, element] of texts) {
    const style = getComputedStyle(element);
    const font = style.fontStyle + " " + style.fontWeight + " 32px " + style.fontFamily;
    const box = boxes[font] || (boxes[font] = draw("\u{10FFFD}", font));
    for (const character of text) {
      if (character.codePointAt(0) < 0x7f || /\s/u.test(character)) continue;
      const key = character + "\u0000" + font;
      if (seen.has(key)) continue;
      seen.add(key);
      if (draw(character, font) === box) {
        missing.push("U+" + character.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")
          + " in " + JSON.stringify(text.trim().slice(0, 60)));
      }
    }
  }
  return missing;
}
"""


def missing_glyphs(page, extra: list[str] | None = None) -> list[str]:
    """The characters of ``page`` (and of ``extra``) that this machine's fonts cannot draw:
    each as "U+23F1 in <the text it is in>"."""
    return page.evaluate(_MISSING_GLYPHS, extra or [])
