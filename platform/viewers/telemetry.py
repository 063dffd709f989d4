"""Playback telemetry from players, in batches, exported as /metrics histograms.

Per process, in prometheus_client's default registry (like the origin's playlist timing):
scrape every origin process.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import Counter, Histogram

MAX_SAMPLES = 60

LATENCY = Histogram(
    "golive_player_latency_seconds",
    "Players' distance behind live (now minus the program date-time on screen), sampled.",
    buckets=(0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 20, 30),
)
STALLS = Histogram(
    "golive_player_stall_seconds",
    "How long each playback stall (rebuffering) lasted.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 30),
)
SWITCHES = Histogram(
    "golive_player_rendition_switches",
    "Rendition switches per telemetry batch (about 30 s of playback).",
    buckets=(0, 1, 2, 3, 5, 8, 13),
)
ERRORS = Counter(
    "golive_player_errors", "Network or media errors players recovered from (or not).",
    ["kind"],
)
_ERROR_KINDS = frozenset({"network", "media", "fatal"})


class TelemetryError(ValueError):
    """A batch that is not what players send."""


def _numbers(value: Any, low: float, high: float) -> list[float]:
    if not isinstance(value, list):
        raise TelemetryError("expected a list of numbers")
    numbers = []
    for item in value[:MAX_SAMPLES]:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise TelemetryError("expected numbers")
        if low <= item <= high:  # outliers (clock skew, a tab asleep) say nothing
            numbers.append(float(item))
    return numbers


def record(batch: dict[str, Any]) -> int:
    """Observes one batch: ``{"latency": [s…], "stalls": [s…], "switches": n,
    "errors": {"network": n, …}}``. Returns how many figures it took."""
    latencies = _numbers(batch.get("latency", []), 0.0, 120.0)
    stalls = _numbers(batch.get("stalls", []), 0.0, 600.0)
    switches = batch.get("switches", 0)
    if isinstance(switches, bool) or not isinstance(switches, int) or not 0 <= switches <= 1000:
        raise TelemetryError("switches must be a count")
    errors = batch.get("errors", {})
    if not isinstance(errors, dict):
        raise TelemetryError("errors must be an object")
    for value in latencies:
        LATENCY.observe(value)
    for value in stalls:
        STALLS.observe(value)
    SWITCHES.observe(switches)
    taken = len(latencies) + len(stalls) + 1
    for kind, count in errors.items():
        if kind in _ERROR_KINDS and isinstance(count, int) and 0 < count <= 1000:
            ERRORS.labels(kind=kind).inc(count)
            taken += 1
    return taken
