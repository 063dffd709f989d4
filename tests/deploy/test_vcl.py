"""deploy/varnish/golive.vcl in a real varnishd in front of a scripted origin: the cache
key keeps only the LL-HLS directives, identical requests collapse into one origin request,
an uncacheable error is kept briefly instead of turning into hit-for-miss, the bare
playlist lives at most half a part, and a busy origin's 503 is retried on the next."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from golive.cluster import render_origins_vcl
from tests.bench.processes import Processes, free_port, wait_listening

VCL = Path(__file__).resolve().parents[2] / "deploy" / "varnish"
PLAYLIST = "/live/c/7/source/index.m3u8"
BARE = "/live/c/8/source/index.m3u8"  # a playlist of its own for the TTL test


class Origin(http.server.ThreadingHTTPServer):
    """Answers from ``script``: path -> list of (status, headers, delay), one per request
    (the last repeats); counts what it was asked."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.asked: Counter[str] = Counter()
        self.script: dict[str, list[tuple[int, dict[str, str], float]]] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Origin
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.asked[self.path] += 1
            answers = self.server.script.get(self.path.split("?")[0]) or [
                (200, {"Cache-Control": "public, max-age=6"}, 0.0)
            ]
            status, headers, delay = answers.pop(0) if len(answers) > 1 else answers[0]
        time.sleep(delay)
        body = f"{self.path}\n".encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("edge")
    varnishd = shutil.which("varnishd")
    if varnishd is None:
        pytest.skip("varnishd is not installed (apt-get install varnish; ./golive test does)")
    origins = [Origin(free_port()) for _ in range(2)]
    # One script for both (any origin may answer any request), unless a test splits them.
    origins[1].script, origins[1].lock = origins[0].script, origins[0].lock
    for origin in origins:
        threading.Thread(target=origin.serve_forever, daemon=True).start()
    (tmp_path / "origins.vcl").write_text(
        render_origins_vcl([o.server_address[1] for o in origins])
    )
    port = free_port()
    with Processes() as processes:
        process = processes.start(
            [varnishd, "-F", "-j", "none", "-n", str(tmp_path / "n"), "-a", f"127.0.0.1:{port}",
             "-f", str(VCL / "golive.vcl"), "-p", f"vcl_path={tmp_path}:{VCL}",
             "-s", "malloc,32m"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        assert wait_listening(port, process, 30)
        yield f"http://127.0.0.1:{port}", origins
    for origin in origins:
        origin.shutdown()


def asked(origins: list[Origin]) -> Counter[str]:
    total: Counter[str] = Counter()
    for origin in origins:
        total.update(origin.asked)
    return total


def test_the_cache_key_is_the_path_and_the_three_directives_only(edge) -> None:
    base, origins = edge
    first = requests.get(f"{base}{PLAYLIST}?utm=x&_HLS_part=2&_HLS_msn=5&cb=1", timeout=5)
    again = requests.get(f"{base}{PLAYLIST}?_HLS_msn=5&x=y&_HLS_part=2", timeout=5)
    other = requests.get(f"{base}{PLAYLIST}?_HLS_msn=5&_HLS_part=3&_HLS_skip=YES", timeout=5)
    assert first.text == again.text == f"{PLAYLIST}?_HLS_msn=5&_HLS_part=2\n"
    assert again.headers["X-Cache"] == "HIT"
    assert other.text == f"{PLAYLIST}?_HLS_msn=5&_HLS_part=3&_HLS_skip=YES\n"
    assert sum(n for path, n in asked(origins).items() if path.startswith(PLAYLIST)) == 2


def test_a_thousand_waiters_for_one_part_cost_the_origin_one_request(edge) -> None:
    base, origins = edge
    part = "/live/c/7/source/part-9.3.m4s"
    origins[0].script[part] = [(200, {"Cache-Control": "public, max-age=31536000"}, 0.5)]
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{base}{part}", timeout=10),
                                range(200)))
    assert {a.status_code for a in answers} == {200}
    assert asked(origins)[part] == 1


def test_an_uncacheable_error_is_kept_briefly_and_never_becomes_hit_for_miss(edge) -> None:
    base, origins = edge
    part = "/live/c/7/source/part-10.0.m4s"
    origins[0].script[part] = [
        (503, {"Cache-Control": "no-store"}, 0.0),
        (200, {"Cache-Control": "public, max-age=31536000"}, 0.5),
    ]
    assert requests.get(f"{base}{part}", timeout=5).status_code == 503
    assert requests.get(f"{base}{part}", timeout=5).headers["X-Cache"] == "HIT"  # kept
    time.sleep(0.7)
    # Hit-for-miss would send every one of these to the origin; they collapse instead.
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: requests.get(f"{base}{part}", timeout=10), range(20)))
    assert {a.status_code for a in answers} == {200}
    assert asked(origins)[part] == 2


def test_the_bare_playlist_is_kept_at_most_half_a_part(edge) -> None:
    base, origins = edge
    origins[0].script[BARE] = [(200, {"Cache-Control": "public, max-age=1"}, 0.0)]
    requests.get(f"{base}{BARE}", timeout=5)
    hit = requests.get(f"{base}{BARE}", timeout=5)
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["Age"] == "0"
    time.sleep(0.25)
    requests.get(f"{base}{BARE}", timeout=5)
    assert asked(origins)[BARE] == 2


def test_a_busy_origins_503_with_retry_after_is_retried_on_the_next(edge) -> None:
    base, origins = edge
    part = "/live/c/7/source/part-11.0.m4s"
    origins[0].script[part] = [
        (503, {"Retry-After": "1", "Cache-Control": "public, max-age=1"}, 0),
        (200, {"Cache-Control": "public, max-age=31536000"}, 0),
    ]
    answer = requests.get(f"{base}{part}", timeout=5)
    assert answer.status_code == 200
    assert asked(origins)[part] == 2  # the 503, then the retry
