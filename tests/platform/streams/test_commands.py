from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from streams.actions import find_channel_by_key
from streams.models import Channel


def test_createstreamer_json_prints_a_working_key_and_urls(db, capsys) -> None:
    call_command("createstreamer", "frank", "--partner", "--json")
    details = json.loads(capsys.readouterr().out)
    assert set(details) == {"username", "channel", "stream_key", "rtmp_url", "watch_url"}
    assert details["username"] == "frank"
    assert details["channel"] == "frank"
    assert details["rtmp_url"].startswith("rtmp://")
    assert details["watch_url"].endswith("/c/frank")
    channel = find_channel_by_key(details["stream_key"])
    assert channel is not None
    assert channel.slug == "frank"
    assert channel.is_partner


def test_createstreamer_refuses_a_taken_name(alice) -> None:
    with pytest.raises(CommandError, match="already exists"):
        call_command("createstreamer", "alice")
    assert Channel.objects.filter(slug="alice").count() == 1


def test_createstreamer_refuses_a_name_that_makes_no_channel(db) -> None:
    with pytest.raises(CommandError, match="usable channel name"):
        call_command("createstreamer", "!!!")
