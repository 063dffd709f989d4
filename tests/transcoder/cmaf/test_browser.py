"""Chromium's Media Source Extensions, which hls.js feeds, take the packager's parts one by
one as hls.js would: no SourceBuffer error, one gapless buffered range."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.transcoder.cmaf.media import Clip, Collector, demux_flv, encode_flv_pyav, feed
from transcoder.cmaf import Packager, PackagerSettings

pytestmark = pytest.mark.slow

APPEND_PARTS = """
async ([codecs, init, parts]) => {
  const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const type = `video/mp4; codecs="${codecs}"`;
  if (!MediaSource.isTypeSupported(type)) return {supported: false};
  const source = new MediaSource();
  const video = document.createElement("video");
  video.src = URL.createObjectURL(source);
  await new Promise((done) => source.addEventListener("sourceopen", done, {once: true}));
  const buffer = source.addSourceBuffer(type);
  let errors = 0;
  buffer.addEventListener("error", () => { errors += 1; });
  const append = (data) => new Promise((done) => {
    buffer.addEventListener("updateend", done, {once: true});
    buffer.appendBuffer(data);
  });
  await append(bytes(init));
  for (const part of parts) await append(bytes(part));
  const ranges = [];
  for (let i = 0; i < buffer.buffered.length; i++) {
    ranges.push([buffer.buffered.start(i), buffer.buffered.end(i)]);
  }
  return {supported: true, errors, ranges, state: source.readyState};
}
"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--headless=new", "--no-sandbox"]
        )
        page = browser.new_page()
        page.goto("about:blank")
        yield page
        browser.close()


def append_in_chromium(page: Any, clip: Clip, settings: PackagerSettings) -> dict[str, Any]:
    output = Collector()
    feed(Packager(output, settings), clip)
    ((info, init),) = output.inits
    encode = [base64.b64encode(data).decode() for _, data in output.parts]
    result: dict[str, Any] = page.evaluate(
        APPEND_PARTS, [info.codecs, base64.b64encode(init).decode(), encode]
    )
    result["duration"] = sum(segment.duration for segment, _ in output.segments)
    return result


def test_chromium_buffers_the_720p_h264_aac_publish_part_by_part(page: Any, clip: Clip) -> None:
    result = append_in_chromium(page, clip, PackagerSettings())
    assert result["supported"]
    assert result["errors"] == 0
    assert result["state"] == "open"
    ((start, end),) = result["ranges"]
    assert end - start == pytest.approx(result["duration"], abs=0.05)


@pytest.mark.parametrize(
    ("video_encoder", "audio_encoder", "options"),
    [
        ("libaom-av1", "libopus", {"cpu-used": "8", "usage": "realtime"}),
        ("libvpx-vp9", "aac", {"deadline": "realtime", "cpu-used": "8"}),
    ],
    ids=["av1+opus", "vp9+aac"],
)
def test_chromium_buffers_av1_vp9_and_opus_too(
    page: Any, video_encoder: str, audio_encoder: str, options: dict[str, str]
) -> None:
    av = pytest.importorskip("av")
    for encoder in (video_encoder, audio_encoder):
        if encoder not in av.codecs_available:
            pytest.skip(f"this FFmpeg build has no {encoder}")
    clip = demux_flv(encode_flv_pyav(video_encoder, audio_encoder, frames=60, options=options))
    result = append_in_chromium(page, clip, PackagerSettings(min_segment_duration=0.5))
    assert result["supported"]
    assert result["errors"] == 0
    assert len(result["ranges"]) == 1
