"""Viewer counts in /metrics: per live channel and in total (read at each scrape)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .counter import viewer_counts


def live_slugs() -> list[str]:
    from streams.models import LiveSession

    return list(
        LiveSession.objects.filter(ended_at__isnull=True).values_list("channel__slug", flat=True)
    )


class ViewersCollector(Collector):
    """One query (the live channels, bounded by the stream quota) and one Redis round trip."""

    def collect(self) -> Iterator[Metric]:
        counts = viewer_counts().counts(live_slugs())
        per_channel = GaugeMetricFamily(
            "golive_viewers", "Viewers of a live channel (player heartbeats in the last 30 s).",
            labels=["channel"],
        )
        for slug, count in sorted(counts.items()):
            per_channel.add_metric([slug], count)
        yield per_channel
        yield GaugeMetricFamily(
            "golive_viewers_total", "Viewers of all live channels.", value=sum(counts.values())
        )
