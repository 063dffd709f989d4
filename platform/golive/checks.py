"""System checks with stable ids for configuration that would otherwise break at run time.

ids: golive.E001 SECRET_KEY unset in production (GOLIVE_HTTPS); golive.E002 PyAV missing or without
libx264; golive.E003 PyAV without an AAC encoder; golive.E004 the S3 bucket unreachable;
golive.E005 GOLIVE_TRUSTED_PROXIES names something that is not an address or network.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

TAG = "golive"


@register(TAG)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # Elsewhere an unset key is generated into DATA_DIR: right for one machine, wrong for
    # servers behind one name, which would each sign with their own.
    if not settings.GOLIVE_HTTPS or not settings.SECRET_KEY_IS_DEFAULT:
        return []
    return [
        Error(
            "SECRET_KEY is not set in production (GOLIVE_HTTPS is on).",
            hint="Set the SECRET_KEY environment variable to the same long random string "
                 "on every server.",
            id="golive.E001",
        )
    ]


def find_encoder(name: str) -> bool:
    try:
        import av

        av.codec.Codec(name, "w")
    except Exception:  # ImportError, or PyAV's own "unknown codec" error
        return False
    return True


@register(TAG)
def check_encoders(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if not find_encoder("libx264"):
        problems.append(
            Error(
                "PyAV is missing or its FFmpeg has no libx264 encoder: transcoding cannot run.",
                hint="Install PyAV from its PyPI wheels (`pip install av`), which bundle libx264.",
                id="golive.E002",
            )
        )
    if not find_encoder("aac"):
        problems.append(
            Error(
                "PyAV's FFmpeg has no AAC encoder: audio cannot be transcoded.",
                hint="Install PyAV from its PyPI wheels (`pip install av`).",
                id="golive.E003",
            )
        )
    return problems


@register(TAG)
def check_segment_store(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not settings.S3_BUCKET:
        return []
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    def option(name: str) -> str | None:
        value = settings.SEGMENT_STORE_OPTIONS.get(name)
        return value if isinstance(value, str) else None

    client = boto3.client(
        "s3",
        endpoint_url=option("endpoint_url"),
        aws_access_key_id=option("access_key"),
        aws_secret_access_key=option("secret_key"),
        region_name=option("region_name"),
        config=Config(connect_timeout=3, read_timeout=3, retries={"max_attempts": 1}),
    )
    try:
        client.head_bucket(Bucket=settings.S3_BUCKET)
    except (BotoCoreError, ClientError) as error:
        return [
            Error(
                f"The segment store bucket {settings.S3_BUCKET!r} is unreachable: {error}",
                hint="Check S3_ENDPOINT_URL, S3_BUCKET and the credentials; create the bucket.",
                id="golive.E004",
            )
        ]
    return []


@register(TAG)
def check_trusted_proxies(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from viewers.addresses import parse_networks

    try:
        parse_networks(settings.GOLIVE_TRUSTED_PROXIES)
    except ValueError as error:
        return [
            Error(
                f"GOLIVE_TRUSTED_PROXIES: {error}.",
                hint="A comma-separated list of addresses or networks, e.g. "
                     "127.0.0.1,10.0.0.0/8,fd00::/8.",
                id="golive.E005",
            )
        ]
    return []
