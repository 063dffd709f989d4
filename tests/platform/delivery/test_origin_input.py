"""The origin refuses malformed requests with a clear status and touches nothing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/live/demo/1/source/index.m3u8?_HLS_msn=abc", 400),
        ("/live/demo/1/source/index.m3u8?_HLS_msn=-1", 400),
        ("/live/demo/1/source/index.m3u8?_HLS_msn=99999999999999999999999", 400),
        ("/live/demo/1/source/index.m3u8?_HLS_part=2", 400),
        ("/live/demo/1/source/index.m3u8", 404),
        ("/live/demo/1/..bad/index.m3u8", 404),
        ("/live/demo/1/source/part-1.0.m4s", 404),
        ("/live/demo/1/source/seg-1.m4s", 404),
        ("/live/demo/1/source/init-0.mp4", 404),
        ("/live/nobody/master.m3u8", 404),
        ("/media/hls/../../pyproject.toml", 404),
        ("/media/hls/live/1/source/nothing.m4s", 404),
    ],
)
def test_bad_or_unknown_requests_get_a_clear_status(client, db, path, status) -> None:
    response = client.get(path)
    assert response.status_code == status, response.content


def test_playlist_answers_are_cacheable_only_as_long_as_they_are_true(client, db) -> None:
    response = client.get("/live/nobody/master.m3u8")
    assert response["Cache-Control"] == "public, max-age=2"
    # Malformed stays malformed: an edge may share the refusal (never "no-store", which
    # would send every viewer asking it to the origin).
    response = client.get("/live/demo/1/source/index.m3u8?_HLS_msn=x")
    assert response["Cache-Control"] == "public, max-age=60"
