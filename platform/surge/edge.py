"""What the edge and the origins did during a run: varnishstat counters and the origins'
own request counters (`/metrics`), read before and after."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass

VARNISH_COUNTERS = (
    "MAIN.client_req", "MAIN.cache_hit", "MAIN.cache_miss", "MAIN.cache_hitpass",
    "MAIN.cache_hitmiss", "MAIN.backend_req", "MAIN.busy_sleep", "MAIN.busy_wakeup",
    "MAIN.backend_retry",
)  # fmt: skip
_SAMPLE = re.compile(r'^golive_origin_requests_total\{object="([a-z_]+)"\}\s+([0-9.eE+]+)', re.M)
_SHED = re.compile(r"^golive_origin_shed_total\s+([0-9.eE+]+)", re.M)


def varnish_counters(name: str) -> dict[str, int]:
    """The counters of the varnishd instance ``name`` (-n), as varnishstat reads them."""
    command = shutil.which("varnishstat")
    if command is None:
        raise RuntimeError("varnishstat is not installed (apt-get install varnish)")
    fields = []
    for counter in VARNISH_COUNTERS:
        fields += ["-f", counter]
    output = subprocess.run(
        [command, "-n", name, "-1", "-j", *fields],
        capture_output=True, check=True, timeout=10, text=True,
    ).stdout
    counters = json.loads(output)
    counters = counters.get("counters", counters)  # varnishstat 6 had no "counters" level
    return {key: int(counters[key]["value"]) for key in VARNISH_COUNTERS if key in counters}


@dataclass(frozen=True, slots=True)
class OriginCounters:
    requests: dict[str, float]  # by object kind
    shed: float


def origin_counters(url: str, token: str = "") -> OriginCounters:
    """An origin process's request counters from its /metrics (loopback needs no token)."""
    request = urllib.request.Request(url.rstrip("/") + "/metrics")  # noqa: S310 (given)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (given address)
        text = answer.read().decode()
    shed = _SHED.search(text)
    return OriginCounters(
        {kind: float(value) for kind, value in _SAMPLE.findall(text)},
        float(shed.group(1)) if shed else 0.0,
    )


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in after}
