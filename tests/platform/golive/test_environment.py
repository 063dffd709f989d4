"""Settings from the environment: a bad value stops the process, naming the variable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from golive.environment import (
    env,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_is_set,
    env_ladder,
    env_list,
    local_secret_key,
)

ROOT = Path(__file__).resolve().parents[3]


def test_unset_and_empty_both_mean_the_default() -> None:
    for environ in ({}, {"X": ""}):
        assert env("X", "d", environ=environ) == "d"
        assert env_bool("X", True, environ=environ) is True
        assert env_int("X", 7, environ=environ) == 7
        assert env_float("X", 0.5, environ=environ) == 0.5
        assert env_list("X", "a,b", environ=environ) == ["a", "b"]
        assert not env_is_set("X", environ=environ)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True),
     ("0", False), ("false", False), ("no", False), ("Off", False)],
)
def test_booleans_are_read_in_every_usual_spelling(text, value) -> None:
    assert env_bool("DEBUG", not value, environ={"DEBUG": text}) is value


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        (lambda e: env_bool("DEBUG", False, environ=e), "flase",
         "DEBUG='flase': expected one of 1/0, true/false, yes/no, on/off"),
        (lambda e: env_int("N", 1, environ=e), "2.5", "N='2.5': expected a whole number"),
        (lambda e: env_int("N", 1, environ=e), "ten", "N='ten': expected a whole number"),
        (lambda e: env_int("N", 1, minimum=1, environ=e), "0",
         "N='0': must be at least 1"),
        (lambda e: env_float("N", 1.0, environ=e), "1,5", "N='1,5': expected a number"),
        (lambda e: env_float("N", 1.0, environ=e), "nan",
         "N='nan': expected a finite number"),
        (lambda e: env_float("N", 1.0, minimum=0, environ=e), "-3",
         "N='-3': must be at least 0"),
        (lambda e: env_choice("S", "path", ("path", "virtual"), environ=e), "Path",
         "S='Path': expected one of path, virtual"),
    ],
)
def test_a_bad_value_is_improperly_configured_naming_the_variable(reader, text, message) -> None:
    name = message.split("=", 1)[0]
    with pytest.raises(ImproperlyConfigured) as refused:
        reader({name: text})
    assert str(refused.value) == message


def test_numbers_and_lists_parse() -> None:
    assert env_int("N", 0, minimum=0, environ={"N": " 42 "}) == 42
    assert env_float("F", 0.0, environ={"F": "2.5"}) == 2.5
    assert env_list("L", "", environ={"L": " a, ,b ,"}) == ["a", "b"]
    assert env_choice("S", "path", ("path", "virtual"), environ={"S": " virtual "}) == "virtual"
    assert env_choice("S", "path", ("path", "virtual"), environ={}) == "path"


def test_the_local_secret_key_is_made_once_private_and_then_reused(tmp_path) -> None:
    path = tmp_path / "var" / "secret-key"
    first = local_secret_key(path)
    assert len(first) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secret_key(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret-key"]  # no draft left


def test_a_process_with_a_bad_setting_stops_with_the_variables_name(tmp_path) -> None:
    environ = {**os.environ, "GOLIVE_HLS_TARGET_DURATION": "two", "GOLIVE_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImproperlyConfigured: GOLIVE_HLS_TARGET_DURATION='two': expected a whole number" in (
        result.stderr
    )


def test_the_transcode_ladder_is_read_from_the_environment_or_defaults() -> None:
    from transcoder.ladder import DEFAULT_LADDER

    assert env_ladder("L", environ={}) == tuple(DEFAULT_LADDER)
    ladder = env_ladder("L", environ={"L": "720p30:1280x720@30:2400k, 360p30:640x360@30:630k"})
    assert [(r.name, r.width, r.height, r.bitrate) for r in ladder] == [
        ("720p30", 1280, 720, 2_400_000), ("360p30", 640, 360, 630_000)]
    with pytest.raises(ImproperlyConfigured, match="L="):
        env_ladder("L", environ={"L": "720p30:1280x720"})
    assert env_ladder("L", environ={"L": "none"}) == ()  # source only, platform-wide
