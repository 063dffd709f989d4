"""The origin behind a real Varnish with the project's VCL, a live publish, and 1, 100 and
1,000 virtual hls.js viewers of one rendition (`manage.py surge`).

What the edge must give: origin requests per part independent of the audience (one part
request and one blocking playlist per part, plus the constant below), no viewer error,
and viewers' latency p95 within 150 ms of a single viewer's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from surge.report import viewer_table
from tests.conftest import REQUIRE_SERVICES
from tests.deploy.stack import ROOT, Stack, live_stack, missing_tools, services_error
from tests.platform.delivery.browser import ARTIFACTS

pytestmark = [pytest.mark.slow, pytest.mark.services]

# Per part, once viewers are watching: the part and the blocking playlist naming it (one
# each per rendition per edge), plus at most this many. Where it comes from: at each
# segment's end (every sixth part) the preload hint names a part that never exists (one
# 404, kept 0.5 s) and the new segment's first part is then asked for (≈ 2/6); the bare
# playlist of late tune-ins (kept 0.16 s) and the multivariant (1 s) add a little more.
CONSTANT_PER_PART = 0.75
LATENCY_MARGIN = 0.150  # s, viewers' p95 against a single viewer's
CLIENT_LAG = 0.100  # s, the client's event-loop lag p95 past which its timings are its own


def needs_stack() -> None:
    if missing := missing_tools():
        message = f"missing {', '.join(missing)} (apt-get install varnish ffmpeg)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    if error := services_error():
        if REQUIRE_SERVICES:
            pytest.fail(error)
        pytest.skip(f"PostgreSQL and Redis are needed: {error}")


def surge(stack: Stack, viewers: int, seconds: float = 20, warmup: float = 8) -> dict:
    command = [
        sys.executable, "manage.py", "surge", "viewers", stack.master(stack.edge),
        "--viewers", str(viewers), "--seconds", str(seconds), "--warmup", str(warmup),
        "--ramp", "3", "--processes", "2" if viewers >= 500 else "1",
        "--varnish", stack.varnish_name, "--origin", stack.origins[0], "--json", "-",
    ]
    done = subprocess.run(command, cwd=ROOT, env=stack.env, capture_output=True, text=True,
                          timeout=seconds + 120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_edge_collapses_viewers_into_one_origin_request_per_part(tmp_path) -> None:
    needs_stack()
    with live_stack(tmp_path, origins=1, edge=True) as stack:
        runs = {n: surge(stack, n) for n in (1, 100, 1000)}
        crowd = runs[1000]
        if (
            crowd["latency"]["p95"] > runs[1]["latency"]["p95"] + LATENCY_MARGIN
            and crowd["client"]["loop_lag"]["p95"] > CLIENT_LAG
        ):
            # The client itself was late (its event loop woke over 100 ms late at p95):
            # that run measured this machine's spare CPU, not the edge. Measure again once.
            print(f"\n1000 viewers again: the client lagged {crowd['client']['loop_lag']}")
            runs[1000] = surge(stack, 1000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "edge-surge.json").write_text(json.dumps(runs, indent=2))
    single = runs[1]["latency"]["p95"]
    print()
    print(viewer_table({f"{n} viewers": run for n, run in runs.items()}))
    late = []  # runs whose latency is the client's, not the edge's
    for viewers, run in runs.items():
        steady = run["origin"].get("steady", {})
        assert run["errors"]["total"] == 0, (viewers, run["errors"])
        assert run["viewers"]["with_a_part"] == viewers
        assert steady["part_requests_per_part"] <= 1 + CONSTANT_PER_PART, (viewers, steady)
        assert steady["requests_per_part"] <= 2 + CONSTANT_PER_PART, (viewers, steady)
        if run["latency"]["p95"] <= single + LATENCY_MARGIN:
            continue
        assert run["client"]["loop_lag"]["p95"] > CLIENT_LAG, (viewers, run["latency"])
        late.append(viewers)
    # And it is the edge that does it: a thousand viewers asked ~1,000 times what reached
    # the origin.
    assert runs[1000]["collapse_factor"] > 200
    if late:
        # On two cores shared by the client, Varnish, the origin, the ingest and ffmpeg,
        # a thousand virtual viewers can leave the client itself behind: its timings then
        # say nothing about the edge. Reported as such rather than passed or failed.
        pytest.xfail(
            f"latency p95 over the limit at {late} viewers while the client's own event "
            f"loop lagged (p95 > {CLIENT_LAG * 1000:.0f} ms): the client, not the edge, "
            "was measured"
        )
