"""The deploy/ recipe: the compose file (docker compose config where the plugin exists,
and a structural check everywhere), `check --deploy` clean with the recipe's settings,
the committed process list, and the VCL compiling with Debian's varnishd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from golive.cluster import Topology, render_procfile
from tests.support.services import create_bucket

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
GOLIVE_SERVICES = {"origin-1", "origin-2", "ingest-1", "transcode", "tasks", "beat", "migrate"}


def example_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
             if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (and $$), enough for our file."""

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise KeyError(f"{name} is required: {rest}")
        return rest if operator == ":-" else ""

    return re.sub(r"\$\{([A-Z0-9_]+)(:-|:\?)?([^}]*)\}", one, value).replace("$$", "$")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_config_accepts_the_compose_file() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True) \
        if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here (docker "
                    f"{'CLI only' if docker else 'absent'}); the structural test below checks "
                    "the file instead")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", str(DEPLOY / ".env.example"),
         "config", "--quiet"], capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_compose_file_runs_the_whole_topology_from_one_image_as_configured() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "minio", "minio-bucket", "edge"} | GOLIVE_SERVICES <= set(
        services
    )
    env = example_env()
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on an unknown {needed}"
        if name in GOLIVE_SERVICES:
            assert service["image"] == "golive:latest"
            settings = {k: interpolate(str(v), env) for k, v in service["environment"].items()}
            assert settings["GOLIVE_HTTPS"] == "1"
            assert settings["DEBUG"] == "0"
            assert settings["DATABASE_URL"].startswith("postgres://golive:")
            assert settings["REDIS_URL"] == "redis://redis:6379/0"
            assert settings["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["ingest-1"]["environment"]["GOLIVE_NODE_NAME"] == "ingest-1"
    # Every file the edge mounts exists, and its origins are the compose origins.
    for volume in services["edge"]["volumes"]:
        assert (DEPLOY / volume.split(":")[0]).is_file(), volume
    backends = re.findall(r'\.host = "([^"]+)"', (DEPLOY / "varnish/compose-origins.vcl")
                          .read_text())
    assert sorted(backends) == sorted(n for n in services if n.startswith("origin-"))


def test_the_image_is_built_in_two_stages_and_runs_as_an_unprivileged_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) == 2
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users
    assert users[-1] not in ("root", "0")
    assert ".venv" in (ROOT / ".dockerignore").read_text()


def test_check_deploy_is_clean_with_the_recipes_settings(s3_server, tmp_path) -> None:
    env = example_env()
    settings = {
        k: interpolate(str(v), env) for k, v in compose()["x-golive-env"].items()
    }
    # Reachable stand-ins for the compose services (nothing connects to them but S3's check).
    settings.update(
        S3_ENDPOINT_URL=s3_server, S3_BUCKET=create_bucket(s3_server),
        S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test",
        GOLIVE_DATA_DIR=str(tmp_path / "var"), MEDIA_ROOT=str(tmp_path / "media"),
    )
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GOLIVE_", "S3_", "DATABASE_", "REDIS_", "SECURE_"))
            and k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env={**base, **settings}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_without_https_settings_check_deploy_names_what_is_missing(tmp_path) -> None:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GOLIVE_", "S3_", "DATABASE_", "REDIS_", "SECURE_"))}
    base.update(DEBUG="0", SECRET_KEY="x" * 20 + "abcdefghijklmnopqrstuvwxyz0123456789",
                ALLOWED_HOSTS="golive.example.com", GOLIVE_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=base, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr + done.stdout


def test_the_committed_process_list_is_the_default_one() -> None:
    rendered = render_procfile(Topology(), root="$PWD", python="python",
                               run_dir="$PWD/var/cluster")
    assert (DEPLOY / "Procfile").read_text() == rendered


@pytest.mark.parametrize("origins", ["origins.vcl", "compose-origins.vcl"])
def test_the_vcl_compiles_with_debians_varnishd(origins: str, tmp_path) -> None:
    varnishd = shutil.which("varnishd")
    if varnishd is None:
        pytest.skip("varnishd is not installed (apt-get install varnish; ./golive test does)")
    vcl = tmp_path / "vcl"
    vcl.mkdir()
    text = (DEPLOY / "varnish" / origins).read_text()
    # compose's host names do not resolve here: the same file with loopback addresses.
    (vcl / "origins.vcl").write_text(re.sub(r'\.host = "[^"]+"', '.host = "127.0.0.1"', text))
    done = subprocess.run(
        [varnishd, "-C", "-n", str(tmp_path / "n"), "-f", str(DEPLOY / "varnish/golive.vcl"),
         "-p", f"vcl_path={vcl}:{DEPLOY / 'varnish'}"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_cluster_command_refuses_what_a_cluster_cannot_run_on(settings) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import connection

    settings.REDIS_URL = ""
    with pytest.raises(CommandError, match=r"needs .*REDIS_URL") as refused:
        call_command("cluster", "--origins", "3")
    # On SQLite (the default test database) the database is named as well.
    assert ("DATABASE_URL (PostgreSQL)" in str(refused.value)) == (connection.vendor == "sqlite")


def test_the_cluster_command_prints_the_process_list_it_would_run(capsys) -> None:
    from django.core.management import call_command

    call_command("cluster", "--print", "--origins", "3", "--ingest", "2", "--workers", "2",
                 "--sessions", "3", "--python", "python", "--rtmp", "0.0.0.0:1940")
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line and not line.startswith("#")]
    names = [line.split(":")[0] for line in lines]
    assert names == ["origin1", "origin2", "origin3", "ingest1", "ingest2", "transcode1",
                     "transcode2", "tasks", "beat", "edge"]
    transcode = lines[names.index("transcode1")]
    assert "-Q transcode --concurrency 3" in transcode
    assert "-Q celery " in lines[names.index("tasks")]
