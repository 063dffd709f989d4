"""`/metrics`: Prometheus text exposition (format 0.0.4) of the platform and this process.

The response concatenates two registries:

- `PLATFORM`, a dedicated registry holding `PlatformCollector`: figures read from the
  database at each scrape with five aggregate queries (never one per stream or per row
  of output), so every process answers with the same values;
- prometheus_client's default `REGISTRY`: this process's own metrics (``process_*``,
  ``python_*`` and the origin's ``golive_playlist_response_seconds``). They are per
  process: in cluster mode scrape each Daphne process directly, not through the load
  balancer.

Who may scrape: a request with ``Authorization: Bearer <GOLIVE_METRICS_TOKEN>`` (when
the setting is not empty), a request from a loopback address that came through no proxy,
or a logged-in staff user. Anyone else gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from streams.models import LiveSession

from .actions import get_quota
from .models import AdmissionTally, SlotLease

# Spelled out: prometheus_client >= 0.22 names 1.0.0 its latest text format; ours is the
# 0.0.4 text format every Prometheus reads (the bytes are the same for these names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Tally results that free a slot rather than decide a publish: counters of their own.
_RELEASES = {
    AdmissionTally.Result.LEASE_EXPIRED: (
        "golive_lease_expiries",
        "Slots freed because their lease expired (the ingest stopped renewing it; the "
        "session ended as ingest_lost).",
    ),
    AdmissionTally.Result.FORCE_STOPPED: (
        "golive_force_stops", "Live streams force-stopped by ops."
    ),
}


class PlatformCollector(Collector):
    """Live streams, quota, leases and the admission tallies, read at each scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        live = LiveSession.objects.filter(ended_at__isnull=True).aggregate(
            total=Count("pk"),
            transcoded=Count("pk", filter=Q(transcoded=True)),
            partner=Count("pk", filter=Q(channel__is_partner=True)),
        )
        yield GaugeMetricFamily(
            "golive_live_streams",
            "Live streams: sessions not ended, those waiting for a reconnect included.",
            value=live["total"],
        )
        yield GaugeMetricFamily(
            "golive_live_streams_transcoded",
            "Live streams given the quality ladder (the rest go out source-only).",
            value=live["transcoded"],
        )
        yield GaugeMetricFamily(
            "golive_live_streams_partner", "Live streams of partner channels.",
            value=live["partner"],
        )

        quota = get_quota()
        yield GaugeMetricFamily(
            "golive_quota_max_streams", "Quota: concurrent live streams, all channels.",
            value=quota.max_streams,
        )
        yield GaugeMetricFamily(
            "golive_quota_partner_reserve", "Quota: stream slots only partner channels may use.",
            value=quota.partner_reserve,
        )
        yield GaugeMetricFamily(
            "golive_quota_max_transcodes", "Quota: streams given the quality ladder.",
            value=quota.max_transcodes,
        )

        leases = SlotLease.objects.aggregate(
            total=Count("pk"), overdue=Count("pk", filter=Q(expires_at__lt=now))
        )
        yield GaugeMetricFamily(
            "golive_slot_leases", "Slot leases held by live streams.", value=leases["total"]
        )
        yield GaugeMetricFamily(
            "golive_slot_leases_overdue",
            "Slot leases past their expiry that no reaper has freed yet (should stay 0).",
            value=leases["overdue"],
        )

        yield from self._tallies()

        # Exact for ended sessions; for live ones, as of their last heartbeat (every 5 s).
        # Falls if sessions are deleted (a channel's deletion): Prometheus sees a reset.
        ingested = LiveSession.objects.aggregate(total=Sum("bytes_in"))["total"] or 0
        yield CounterMetricFamily(
            "golive_ingest_bytes",
            "Bytes received from publishers, all sessions (live ones as of their last "
            "heartbeat).",
            value=ingested,
        )

    def _tallies(self) -> Iterator[Metric]:
        admissions = CounterMetricFamily(
            "golive_admissions",
            "Publishes by outcome (admitted, resumed after a reconnect, refused) and "
            "refusal reason.",
            labels=["result", "reason"],
        )
        # Every outcome is exported from the start, so rate() works from the first one.
        counts: dict[tuple[str, str], int] = {
            (AdmissionTally.Result.ADMITTED.value, ""): 0,
            (AdmissionTally.Result.RESUMED.value, ""): 0,
        }
        releases = dict.fromkeys(_RELEASES, 0)
        rows = (
            AdmissionTally.objects.values_list("result", "reason")
            .annotate(total=Sum("count"))
            .order_by()
        )
        for result, reason, total in rows:
            if result in releases:
                releases[result] += total
            else:
                counts[(result, reason)] = counts.get((result, reason), 0) + total
        for (result, reason), total in sorted(counts.items()):
            admissions.add_metric([result, reason], total)
        yield admissions
        for result, (name, documentation) in _RELEASES.items():
            yield CounterMetricFamily(name, documentation, value=releases[result])


PLATFORM = CollectorRegistry(auto_describe=False)
PLATFORM.register(PlatformCollector())


def may_scrape(request: HttpRequest) -> bool:
    return _has_token(request) or _is_local(request) or bool(
        request.user.is_authenticated and request.user.is_staff
    )


def _has_token(request: HttpRequest) -> bool:
    token = settings.GOLIVE_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    # Digests of equal length, compared in constant time: not even the length leaks.
    return hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def _is_local(request: HttpRequest) -> bool:
    """A loopback peer, unless the request names another client: a reverse proxy on the
    same machine connects from loopback on behalf of anyone."""
    if any(header in request.headers for header in _PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponse(
            "403: scrape with a bearer token (GOLIVE_METRICS_TOKEN), from this machine, "
            "or as staff\n",
            content_type="text/plain",
            status=403,
        )
    body = generate_latest(PLATFORM) + generate_latest(REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE)
