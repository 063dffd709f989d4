"""The embedded mode's demo accounts: an admin and a streamer, ready after one command.

Their credentials live in ``DATA_DIR/demo.json`` (mode 0600, ignored by git) so that every
`manage.py up` can print them again. This is the one place a stream key exists in clear
outside the streamer's own hands, and only for the local demo streamer: keys of every
other streamer are never stored. The file is trusted only while it still matches the
database; otherwise the key is rotated and the admin password reset.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from streams import actions
from streams.models import Channel

DEMO_ADMIN = "admin"
DEMO_STREAMER = "demo"


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    admin_username: str
    admin_password: str
    streamer: str
    channel: str
    stream_key: str
    # For the dashboard (sign in as the demo streamer); files written before it lack it.
    streamer_password: str = ""


def credentials_path() -> Path:
    return Path(settings.DATA_DIR) / "demo.json"


def ensure_demo() -> DemoCredentials:
    """Makes sure the demo admin and streamer exist and returns working credentials.

    Idempotent: with a valid file and matching accounts nothing changes.
    """
    saved = _read_saved()
    with transaction.atomic():
        admin_password = _ensure_admin(saved.admin_password if saved else None)
        channel, key = _ensure_streamer(saved.stream_key if saved else None)
        streamer_password = _ensure_streamer_password(
            channel, saved.streamer_password if saved else None
        )
    demo = DemoCredentials(
        admin_username=DEMO_ADMIN,
        admin_password=admin_password,
        streamer=DEMO_STREAMER,
        channel=channel.slug,
        stream_key=key,
        streamer_password=streamer_password,
    )
    if demo != saved:
        _write(demo)
    return demo


def _read_saved() -> DemoCredentials | None:
    try:
        return DemoCredentials(**json.loads(credentials_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write(demo: DemoCredentials) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(demo), file)


def _ensure_admin(saved_password: str | None) -> str:
    User = get_user_model()
    admin = User.objects.filter(username=DEMO_ADMIN).first()
    if admin is None:
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(DEMO_ADMIN, email="", password=password)
        return password
    if saved_password and admin.check_password(saved_password):
        return saved_password
    password = secrets.token_urlsafe(12)
    admin.set_password(password)
    admin.save(update_fields=["password"])
    return password


def _ensure_streamer_password(channel: Channel, saved_password: str | None) -> str:
    user = channel.owner.user
    if saved_password and user.check_password(saved_password):
        return saved_password
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


def _ensure_streamer(saved_key: str | None) -> tuple[Channel, str]:
    channel = Channel.objects.filter(owner__user__username=DEMO_STREAMER).first()
    if channel is None:
        streamer, key = actions.create_streamer(DEMO_STREAMER, display_name="Demo streamer")
        return streamer.channel, key
    if saved_key and actions.find_channel_by_key(saved_key) == channel:
        return channel, saved_key
    return channel, actions.rotate_stream_key(channel)
