"""What the dashboard says about a live stream's health: figures and warnings that say
what to change. Pure: a health snapshot (`LiveSession.health`) in, sentences out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A keyframe interval this close to the target counts as right (encoders round to frames).
KEYFRAME_TOLERANCE_MS = 150
# Bitrate is measured over ~5 s; CBR encoders overshoot a little between keyframes.
BITRATE_SLACK = 1.10


@dataclass(frozen=True, slots=True)
class Warning:
    code: str
    text: str


def warnings(health: dict[str, Any], *, target_keyframe_s: int, max_kbps: int) -> list[Warning]:
    found = []
    interval = health.get("keyframe_interval_ms")
    target_ms = target_keyframe_s * 1000
    if isinstance(interval, int) and abs(interval - target_ms) > KEYFRAME_TOLERANCE_MS:
        found.append(Warning(
            "keyframe_interval",
            f"Your encoder sends a keyframe every {interval / 1000:.1f} s; set it to"
            f" {target_keyframe_s} s (OBS: Settings → Output → Output Mode Advanced →"
            f" Keyframe Interval {target_keyframe_s} s). Until then viewers wait longer"
            " to start and fall further behind live.",
        ))
    bitrate = health.get("bitrate_kbps")
    if isinstance(bitrate, int | float) and bitrate > max_kbps * BITRATE_SLACK:
        found.append(Warning(
            "bitrate",
            f"You are sending {bitrate:,.0f} kb/s, over this channel's cap of"
            f" {max_kbps:,} kb/s; set the encoder's bitrate to {max_kbps:,} kb/s, CBR"
            " (OBS: Settings → Output → Bitrate). Viewers on slower links will buffer.",
        ))
    lag = health.get("lag_ms")
    if isinstance(lag, int) and lag > 3000:
        found.append(Warning(
            "lag",
            f"Your stream is {lag / 1000:.1f} s behind the wall clock: your upload cannot"
            " keep up. Lower the bitrate or check your connection.",
        ))
    regressions = health.get("timestamp_regressions")
    if isinstance(regressions, int) and regressions > 0:
        found.append(Warning(
            "late_frames",
            f"{regressions} frame(s) arrived out of order (dropped or late frames):"
            " check the encoder's CPU load and your connection.",
        ))
    return found
