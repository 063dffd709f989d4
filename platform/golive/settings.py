"""golive settings: environment variables only, with defaults that need no services.

With nothing set, golive runs embedded: SQLite and the local media directory under the
checkout, an in-memory channel layer, tasks run in-process. Setting DATABASE_URL, REDIS_URL,
S3_BUCKET (and friends) moves each part to its cluster service. The README lists every
variable.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

import dj_database_url
import django_stubs_ext
from botocore.config import Config as BotocoreConfig
from celery.schedules import crontab

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

# Django's generic classes (ModelAdmin, ModelForm) take their model as a type argument at
# run time too, as they are written for the type checker.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Where the embedded mode keeps its database and generated secrets; ignored by git.
DATA_DIR = Path(env("GOLIVE_DATA_DIR", str(BASE_DIR / "var")))

# Off unless asked for: DEBUG shows settings, SQL and the URLconf to whoever gets an error
# page. `manage.py up` refuses it on an address beyond loopback.
DEBUG = env_bool("DEBUG", False)
# Unset: a key generated once into DATA_DIR, shared by every process of this checkout. A
# cluster spanning machines sets one for all; with GOLIVE_HTTPS (production) it must be set
# (check golive.E001).
SECRET_KEY = env("SECRET_KEY") or local_secret_key(DATA_DIR / "secret-key")
SECRET_KEY_IS_DEFAULT = not env_is_set("SECRET_KEY")
# This machine's names only, unless set; `manage.py up` beyond loopback adds the names it
# answers to (README "Serving beyond this machine").
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
ALLOWED_HOSTS_IS_DEFAULT = not env_is_set("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "golive",
    "streams",
    "quotas",
    "api",
    "watch",
    "delivery",
    "deals",
    "accounts",
    "chat",
    "viewers",
    "dashboard",
    "surge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Next to the views: what they raise while the database or Redis is down becomes a 503.
    "golive.middleware.DependencyOutageMiddleware",
]

ROOT_URLCONF = "golive.urls"
ASGI_APPLICATION = "golive.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'golive.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while the ingest writes; IMMEDIATE takes the write
        # lock up front so concurrent writers wait instead of failing with "locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # Tests: a file, not Django's shared-cache memory database, whose table locks fail at
    # once ("database table is locked") when the ingest's thread writes as a test reads.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-golive.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channel layer, Celery ------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = env("CELERY_BROKER_URL") or REDIS_URL
# No broker: the embedded mode runs task bodies in-process (same functions, no queue).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# Transcode sessions have a queue of their own, served by the transcode workers
# (`celery -A golive worker -Q transcode`), one session per worker process. A session's
# task runs as long as its broadcast and is acked when it starts (delivery.transcode_tasks);
# a worker reserves no task it has no free process for (Redis brokers), so a busy worker
# never holds a session back from an idle one.
CELERY_TASK_ROUTES = {"delivery.transcode_session": {"queue": "transcode"}}
CELERY_WORKER_DISABLE_PREFETCH = True
# The broker's keys live under golive's Redis prefix (GOLIVE_REDIS_PREFIX, below), so
# installations (and test runs) sharing one Redis keep their queues apart.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{env('GOLIVE_REDIS_PREFIX', 'golive')}:celery:"
}
# Celery beat (cluster mode), the one schedule of periodic work.
CELERY_BEAT_SCHEDULE = {
    # Recordings past retention; `manage.py up` runs the same hourly in-process.
    "expire-recordings": {"task": "delivery.expire_recordings", "schedule": 3600.0},
    # Transcode sessions: each live transcoded broadcast whose session lease is not held
    # (new, upgraded, or its worker died) is given a worker. A check not run within 2 s is
    # dropped: the next one does the same.
    "supervise-transcodes": {
        "task": "delivery.supervise_transcodes",
        "schedule": 1.0,
        "options": {"expires": 2.0},
    },
    # Deals: last month's draft payouts, computed early on the 1st (UTC), await approval.
    "close-deal-payouts": {
        "task": "deals.close_payout_period",
        "schedule": crontab(minute=30, hour=0, day_of_month=1),
    },
}

# --- Media and the segment store -------------------------------------------------------
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS: list[object] = [BASE_DIR / "static"]
# hls.js comes from npm (./golive installs it), never copied into the repository.
if (BASE_DIR / "node_modules" / "hls.js" / "dist").is_dir():
    STATICFILES_DIRS.append(("vendor/hls.js", BASE_DIR / "node_modules" / "hls.js" / "dist"))

S3_BUCKET = env("S3_BUCKET")
S3_PUBLIC_BASE_URL = env("S3_PUBLIC_BASE_URL")
S3_ADDRESSING_STYLE: Literal["path", "virtual", "auto"] = env_choice(
    "S3_ADDRESSING_STYLE", "path", ("path", "virtual", "auto")
)
SEGMENT_STORE_OPTIONS: dict[str, object]
if S3_BUCKET:
    SEGMENT_STORE_OPTIONS = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": env("S3_ENDPOINT_URL") or None,
        "access_key": env("S3_ACCESS_KEY_ID") or None,
        "secret_key": env("S3_SECRET_ACCESS_KEY") or None,
        "region_name": env("S3_REGION") or None,
        "addressing_style": S3_ADDRESSING_STYLE,
        # Segments are public media: plain URLs a CDN can cache, not signed ones.
        "querystring_auth": False,
        "file_overwrite": True,
        # "public-read" when the bucket itself serves viewers; unset behind a CDN that
        # reads the bucket with its own credentials or a bucket policy.
        "default_acl": env("S3_DEFAULT_ACL") or None,
        # Botocore waits 60 s for a connection or a reply by default, and retries within
        # each call: the upload lanes retry by themselves, and a dead store must fail an
        # attempt in seconds so the lane knows it is down. (A client_config replaces the
        # one django-storages builds, so it carries the addressing style too.)
        "client_config": BotocoreConfig(
            s3={"addressing_style": S3_ADDRESSING_STYLE},
            connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2},
        ),
    }
    if S3_PUBLIC_BASE_URL:
        # django-storages builds public URLs as https://<custom_domain>/<key>.
        SEGMENT_STORE_OPTIONS["custom_domain"] = S3_PUBLIC_BASE_URL.split("://", 1)[-1]
        SEGMENT_STORE_OPTIONS["url_protocol"] = S3_PUBLIC_BASE_URL.split("://", 1)[0] + ":"
    STORAGES = {
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": SEGMENT_STORE_OPTIONS},
        "segments": {
            "BACKEND": "delivery.storage.SegmentS3Storage",
            "OPTIONS": SEGMENT_STORE_OPTIONS,
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
else:
    SEGMENT_STORE_OPTIONS = {}
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        # Segments and VOD under media/hls, served by the origin with immutable caching.
        "segments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {
                "location": MEDIA_ROOT / "hls",
                "base_url": f"{MEDIA_URL}hls/",
                "allow_overwrite": True,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

# --- golive ----------------------------------------------------------------------------
# What streamers and viewers are told to use; the defaults match `manage.py up`.
GOLIVE_PUBLIC_URL = env("GOLIVE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
GOLIVE_RTMP_URL = env("GOLIVE_RTMP_URL", "rtmp://127.0.0.1:1935/live").rstrip("/")
# Unset, `manage.py up` prints URLs built from its bind addresses instead.
GOLIVE_PUBLIC_URL_IS_DEFAULT = not env_is_set("GOLIVE_PUBLIC_URL")
GOLIVE_RTMP_URL_IS_DEFAULT = not env_is_set("GOLIVE_RTMP_URL")
GOLIVE_NODE_NAME = env("GOLIVE_NODE_NAME") or socket.gethostname()
GOLIVE_OPS_GROUP = "ops"
# Seconds a streamer whose connection dropped may reconnect into the same broadcast (same
# playlist, same VOD) before it ends; 0 ends broadcasts at once.
GOLIVE_RECONNECT_GRACE = env_float("GOLIVE_RECONNECT_GRACE", 10.0, minimum=0)
# LL-HLS EXT-X-TARGETDURATION in whole seconds. It never changes during a broadcast: a
# segment ends at the publisher's first key frame after 1 s, and at the latest after this
# long (then the next one starts without a key frame). Match it to the encoder's keyframe
# interval (OBS: 2 s, as the streamer guide says).
GOLIVE_HLS_TARGET_DURATION = env_int("GOLIVE_HLS_TARGET_DURATION", 2, minimum=1)
# LL-HLS PART-TARGET in seconds: parts are cut to at most this long, and a viewer's latency
# is about PART-HOLD-BACK (in parts, below) times it, plus the encoder's. The draft allows
# PART-HOLD-BACK down to two parts and recommends three; with 0.2 s parts, two and a half
# keep glass to glass under a second (tests/bench delivery, "glass", measures them all).
GOLIVE_HLS_PART_TARGET = env_float("GOLIVE_HLS_PART_TARGET", 0.2, minimum=0.1)
GOLIVE_HLS_PART_HOLD_BACK = env_float("GOLIVE_HLS_PART_HOLD_BACK", 2.5, minimum=2.0)
# ... and for a broadcast with a quality ladder, in every one of its playlists. A rung's part
# comes after the source's by its encoding (0.1-0.4 s on a loaded machine), and switching
# rendition loads the other one's playlist, init and part within what is buffered: measured
# in Chromium at 100 ms from the origin, 4 parts (0.8 s) stalled 1.5-5 s at switches and
# 5 parts (1.0 s) never over 70 ms (tests/platform/watch/test_ladder_browser.py).
GOLIVE_HLS_LADDER_PART_HOLD_BACK = env_float(
    "GOLIVE_HLS_LADDER_PART_HOLD_BACK", 5.0, minimum=2.0
)
# A live stream's slot lease lasts this long unless the ingest's heartbeat renews it; an
# ingest node that dies loses its streams' slots this long after its last heartbeat.
GOLIVE_LEASE_TTL = env_float("GOLIVE_LEASE_TTL", 15.0, minimum=1)
# After ops force-stop a stream, its channel may not go live again for this many seconds.
GOLIVE_FORCE_STOP_COOLDOWN = env_int("GOLIVE_FORCE_STOP_COOLDOWN", 300, minimum=0)
# With Redis, admissions are decided in the Redis slot ledger (quotas.slots); 0 decides
# every admission under the quota row lock instead.
GOLIVE_SLOT_LEDGER = env_bool("GOLIVE_SLOT_LEDGER", True)
# The ingest writes admissions' tally counts and key uses every second instead of on the
# way to each publisher's answer (streams.ingest_runtime); 0 writes each at once.
GOLIVE_DEFER_ADMISSION_WRITES = env_bool("GOLIVE_DEFER_ADMISSION_WRITES", True)
# Requests one origin process holds at most (blocking playlist reloads, preload-hinted parts);
# past it new ones are answered 503 + Retry-After at once. ~21 KiB each, no thread.
GOLIVE_ORIGIN_MAX_HELD = env_int("GOLIVE_ORIGIN_MAX_HELD", 5000, minimum=0)
# RTMP connections one ingest process accepts, in all and from one client address.
GOLIVE_RTMP_MAX_CONNECTIONS = env_int("GOLIVE_RTMP_MAX_CONNECTIONS", 2000, minimum=1)
GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP = env_int("GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP", 20, minimum=1)
# Static files are served by the process itself (golive.asgi); a cluster may leave them to
# the edge cache (0).
GOLIVE_SERVE_STATIC = env_bool("GOLIVE_SERVE_STATIC", True)
# Days a past broadcast stays watchable (its VOD and segments); 0 keeps them for good.
GOLIVE_VOD_RETENTION_DAYS = env_int("GOLIVE_VOD_RETENTION_DAYS", 30, minimum=0)
# Segments waiting for the segment store, per rendition of a broadcast: this much in
# memory, then this much spooled to DATA_DIR/spool (a minute of 6 Mb/s is ~45 MB), so an
# object store away for minutes costs the recording nothing. Past both, segments are lost.
GOLIVE_UPLOAD_MEMORY_MB = env_int("GOLIVE_UPLOAD_MEMORY_MB", 64, minimum=1)
GOLIVE_UPLOAD_SPOOL_MB = env_int("GOLIVE_UPLOAD_SPOOL_MB", 2048, minimum=0)
# The bearer token a Prometheus scraper sends to /metrics from another machine
# ("Authorization: Bearer <token>"). Empty: only this machine and logged-in staff may scrape.
GOLIVE_METRICS_TOKEN = env("GOLIVE_METRICS_TOKEN")
# What the dashboard tells streamers to send, and warns past: the ladder's top (the
# source rung passes through; 6 Mb/s is what Twitch asks of 1080p60).
GOLIVE_MAX_BITRATE_KBPS = env_int("GOLIVE_MAX_BITRATE_KBPS", 6000, minimum=1)
# Prefix of golive's Redis keys and channels: live index, chat, viewer counts (each test
# process uses its own).
GOLIVE_REDIS_PREFIX = env("GOLIVE_REDIS_PREFIX", "golive")
# Player beacons (heartbeats, telemetry) bounded per client address (IPv6: per /64), so
# one machine cannot inflate a viewer count: requests a minute (a tab sends ~8), and tabs
# that count per channel (a household, an office behind one NAT; past it they still
# watch, they just are not counted).
GOLIVE_BEACONS_PER_MINUTE = env_int("GOLIVE_BEACONS_PER_MINUTE", 120, minimum=1)
GOLIVE_VIEWER_TABS_PER_ADDRESS = env_int("GOLIVE_VIEWER_TABS_PER_ADDRESS", 10, minimum=1)
# Proxies (the edge cache, a load balancer) whose X-Forwarded-For names the client.
# Loopback by default: an edge on the same machine. Checked at start-up (golive.E005).
GOLIVE_TRUSTED_PROXIES = env_list("GOLIVE_TRUSTED_PROXIES", "127.0.0.0/8,::1")
# Quota defaults for a new installation; ops change the row at run time, not this.
GOLIVE_DEFAULT_MAX_STREAMS = env_int("GOLIVE_DEFAULT_MAX_STREAMS", 100, minimum=0)
GOLIVE_DEFAULT_MAX_TRANSCODES = env_int("GOLIVE_DEFAULT_MAX_TRANSCODES", 4, minimum=0)
GOLIVE_DEFAULT_PARTNER_RESERVE = env_int("GOLIVE_DEFAULT_PARTNER_RESERVE", 0, minimum=0)
# The ABR ladder a transcoded broadcast gets (rungs no taller than the source are left
# out; the source is the top rendition): `transcoder.ladder.parse_ladder` text,
# "NAME:WxH@FPS:BITRATE[:PROFILE]" comma separated, or "none" (source only). Unset:
# 720p30/480p30/360p30/160p30. A channel may have its own (admin; `streams.ladders`).
GOLIVE_TRANSCODE_LADDER = env_ladder("GOLIVE_TRANSCODE_LADDER")
# Transcode sessions `manage.py up` runs in its own process at most (each a decode and
# one libx264 thread per rung; a 1080p30 ladder takes ~0.7 of a core). Broadcasts get a
# ladder only while they hold a transcode slot of the quota, so this bounds it per node.
GOLIVE_TRANSCODE_SESSIONS = env_int(
    "GOLIVE_TRANSCODE_SESSIONS", GOLIVE_DEFAULT_MAX_TRANSCODES, minimum=0
)
# Cluster mode: a transcode session's lease (Redis) lasts this long unless its worker
# renews it (every second). A worker that dies loses its sessions this long after, and
# they start again on another worker within a second or two more.
GOLIVE_TRANSCODE_LEASE_TTL = env_float("GOLIVE_TRANSCODE_LEASE_TTL", 3.0, minimum=1.5)
# Payouts below these amounts may be approved and marked paid by one admin alone, e.g.
# "USD 250.00, EUR 200.00". Empty (the default): every payout needs two admins.
GOLIVE_SINGLE_APPROVER_BELOW = env("GOLIVE_SINGLE_APPROVER_BELOW")

# --- HTTPS ------------------------------------------------------------------------------
# TLS terminates in front of the edge (a load balancer, or hitch beside Varnish), which
# passes X-Forwarded-Proto on; the processes behind it speak plain HTTP. GOLIVE_HTTPS=1
# (production) turns on what `manage.py check --deploy` asks for: HSTS, the redirect to
# HTTPS and secure cookies. The public, cookie-less LL-HLS URLs, /healthz and /metrics are
# never redirected: an edge must not cache a redirect, and probes and scrapers inside the
# cluster speak HTTP.
GOLIVE_HTTPS = env_bool("GOLIVE_HTTPS", False)
if GOLIVE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$", r"^live/", r"^media/", r"^static/"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Auth, API -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Any user (streamers too: the admin's login refuses non-staff); staff go on to /admin/.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# Password-reset mail: printed on the console in the embedded mode, SMTP when EMAIL_HOST
# is set (EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS).
EMAIL_HOST = env("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "golive <noreply@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "golive API",
    "DESCRIPTION": "Streamer channels and keys, live sessions, and the ops quota.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DealStatusEnum": "deals.models.Deal.Status",
        "PayoutStatusEnum": "deals.models.Payout.Status",
        # Three models name a choice field "kind": named apart so `check --deploy`
        # (which builds the schema) has no collision to warn about.
        "DealKindEnum": "deals.models.Deal.KIND_CHOICES",
        "PayoutKindEnum": "deals.models.Payout.Kind",
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Stream keys must never reach a log line, whoever formats it: every handler redacts.
    "filters": {"redact_stream_keys": {"()": "golive.redaction.StreamKeyRedactionFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_stream_keys"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.db.backends": {"level": "INFO"}},
}
