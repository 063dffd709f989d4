"""The real services the tests use (PostgreSQL, Redis, an S3-compatible server): whether they
are there, and what is made on them. With GOLIVE_REQUIRE_SERVICES=1 (CI), a missing service
fails the test instead of skipping it."""

from __future__ import annotations

import os

import pytest

REQUIRE_SERVICES = os.environ.get("GOLIVE_REQUIRE_SERVICES") == "1"

# The cluster tests' own databases are created on this server; their Redis database is 9.
POSTGRES = "postgres://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/9"


def services_or_skip() -> None:
    try:
        import psycopg
        import redis

        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as error:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"PostgreSQL and Redis are needed: {error}")


def postgres_or_skip() -> None:
    """The test database (DATABASE_URL) is PostgreSQL."""
    from django.db import connection

    if connection.vendor != "postgresql":
        message = "the enforcer's race is tested on PostgreSQL (set DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def redis_or_skip(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as error:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"Redis is needed: {error}")


def create_bucket(endpoint: str, *, cors: bool = False) -> str:
    """A fresh bucket on the S3 server at ``endpoint``; ``cors`` lets browsers read it."""
    import uuid

    import boto3

    bucket = f"segments-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=bucket)
    if cors:
        # Players fetch segments from the bucket across origins: it needs a CORS rule.
        rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"]}
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
    return bucket
