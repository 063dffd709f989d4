"""Pages and the API while the database or Redis is down: 503 + Retry-After, no traceback."""

from __future__ import annotations

import logging

import pytest
import redis.exceptions
from django.db import OperationalError, ProgrammingError


@pytest.fixture
def quiet(monkeypatch):
    from delivery import responses

    monkeypatch.setattr(responses, "_warned", {})


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        (OperationalError("connection to server failed"), b"the database is unavailable"),
        (redis.exceptions.ConnectionError("Error 111 connecting"), b"Redis is unavailable"),
    ],
)
def test_a_page_whose_dependency_is_down_answers_503_with_retry_after(
    client, db, monkeypatch, caplog, quiet, problem, message
) -> None:
    from watch import views

    def down(*args, **kwargs):
        raise problem

    monkeypatch.setattr(views, "listing", down)
    caplog.set_level(logging.INFO)
    response = client.get("/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.content.startswith(message)
    assert not [r for r in caplog.records if r.exc_info]
    assert len([r for r in caplog.records if r.name == "delivery.responses"]) == 1


def test_a_bug_is_still_a_bug(client, db, monkeypatch) -> None:
    from watch import views

    def broken(*args, **kwargs):
        raise ProgrammingError('relation "streams_channel" does not exist')

    monkeypatch.setattr(views, "listing", broken)
    client.raise_request_exception = False
    assert client.get("/").status_code == 500
