"""Percentiles, the summary of a run as plain data (JSON), and its table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max (nearest rank) and how many values; None when there are none."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99),
        "max": ordered[-1],
    }  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{float(value) * 1000:.0f}"


def _figure(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def viewer_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Runs side by side (e.g. "through the edge" and "straight to the origin")."""
    names = list(summaries)
    rows: list[tuple[str, list[str]]] = []

    def add(label: str, pick: Any) -> None:
        rows.append((label, [pick(summaries[name]) for name in names]))

    add("viewers asked / started", lambda s: f"{s['viewers']['asked']}/{s['viewers']['started']}")
    add("viewers with a part", lambda s: str(s["viewers"]["with_a_part"]))
    add("timings below measured by", lambda s: (
        f"{s['viewers'].get('probes', 0)} probes" if s.get("measured_by") == "probes"
        else "all viewers"))
    for key, label in (
        ("time_to_first_part", "time to first part"),
        ("blocking_reload_wait", "blocking-reload wait"),
        ("part_ttfb", "part TTFB"),
        ("latency", "latency behind live"),
    ):
        add(f"{label} p50/p95/p99 ms", lambda s, k=key: "/".join(
            _ms(s[k][q]) for q in ("p50", "p95", "p99")))
    add("errors (timeouts)", lambda s: f"{s['errors']['total']} ({s['errors']['timeouts']})")
    add("viewer requests/s", lambda s: _figure(s["requests"]["per_second"], 0))
    add("origin requests/s", lambda s: _figure(s["origin"].get("requests_per_second"), 1))
    add("origin req/s part/playlist", lambda s: "/".join(
        _figure(s["origin"].get("per_object_per_second", {}).get(k), 1)
        for k in ("part", "blocking_playlist")))
    add("origin requests per part", lambda s: _figure(
        s["origin"].get("steady", s["origin"]).get("requests_per_part"), 2))
    add("collapse factor", lambda s: _figure(s.get("collapse_factor"), 1))
    add("edge hit ratio", lambda s: _figure(s.get("edge", {}).get("hit_ratio"), 3))
    add("measuring loop lag p95 ms", lambda s: _ms(s["client"]["loop_lag"]["p95"]))
    add("load loop lag p95 ms", lambda s: _ms(
        s["client"].get("load_loop_lag", {}).get("p95")))
    add("load viewers' latency p95 ms", lambda s: _ms(
        s.get("load", {}).get("latency", {}).get("p95")))
    width = max(len(label) for label, _ in rows)
    columns = [max(len(name), *(len(values[i]) for _, values in rows))
               for i, name in enumerate(names)]
    lines = ["  " + " " * width + "  " + "  ".join(
        name.rjust(columns[i]) for i, name in enumerate(names))]
    for label, values in rows:
        lines.append("  " + label.ljust(width) + "  " + "  ".join(
            value.rjust(columns[i]) for i, value in enumerate(values)))
    return "\n".join(lines)


def publisher_table(summary: Mapping[str, Any]) -> str:
    decision = summary["decision_seconds"]
    lines = [
        f"  publishes sent: {summary['sent']} in {summary['seconds']:.1f} s",
        f"  admitted: {summary['admitted']}   refused: {summary['refused']}"
        f"   errors: {summary['errors']}",
        "  refusals by reason: " + (", ".join(
            f"{reason} {count}" for reason, count in summary["refusals"].items()) or "none"),
        "  wait estimates given (s): " + (", ".join(
            f"{wait} x{count}" for wait, count in summary["waits"].items()) or "none"),
        f"  admission decision time (publish → answer) p50 {_ms(decision['p50'])} ms,"
        f" p99 {_ms(decision['p99'])} ms, max {_ms(decision['max'])} ms",
    ]
    return "\n".join(lines)
