"""System checks: each misconfiguration is reported under its stable id."""

from __future__ import annotations

import boto3
import pytest

from golive import checks


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def test_secret_key_unset_in_production_is_an_error(settings) -> None:
    settings.GOLIVE_HTTPS = True
    settings.SECRET_KEY_IS_DEFAULT = True
    assert ids(checks.check_secret_key()) == ["golive.E001"]
    settings.SECRET_KEY_IS_DEFAULT = False
    assert checks.check_secret_key() == []


def test_the_generated_key_is_fine_on_one_machine(settings) -> None:
    settings.GOLIVE_HTTPS = False
    settings.SECRET_KEY_IS_DEFAULT = True
    assert checks.check_secret_key() == []


def test_the_installed_pyav_has_the_encoders_golive_needs() -> None:
    assert checks.check_encoders() == []


def test_missing_encoders_are_reported_by_id(monkeypatch) -> None:
    monkeypatch.setattr(checks, "find_encoder", lambda name: False)
    assert ids(checks.check_encoders()) == ["golive.E002", "golive.E003"]


def configure_s3(settings, endpoint: str, bucket: str) -> None:
    settings.S3_BUCKET = bucket
    settings.SEGMENT_STORE_OPTIONS = {
        "endpoint_url": endpoint, "access_key": "test", "secret_key": "test",
        "region_name": "us-east-1",
    }


def test_a_reachable_bucket_passes(settings, s3_server) -> None:
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1"
                 ).create_bucket(Bucket="segments-ok")
    configure_s3(settings, s3_server, "segments-ok")
    assert checks.check_segment_store() == []


def test_a_missing_bucket_is_reported(settings, s3_server) -> None:
    configure_s3(settings, s3_server, "no-such-bucket")
    assert ids(checks.check_segment_store()) == ["golive.E004"]


def test_an_unreachable_endpoint_is_reported(settings) -> None:
    from tests.support.processes import free_port

    configure_s3(settings, f"http://127.0.0.1:{free_port()}", "segments")
    assert ids(checks.check_segment_store()) == ["golive.E004"]


@pytest.mark.parametrize("https", ["1", "true"])
def test_manage_py_check_fails_with_e001_when_misconfigured(https, tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "GOLIVE_HTTPS": https, "GOLIVE_DATA_DIR": str(tmp_path)}
    env.pop("SECRET_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "golive.E001" in result.stderr
