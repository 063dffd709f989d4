"""The tests' named people (healthchecks-style), made through the write paths.

alice streams, bob is a partner streamer, charlie only watches, ada is an admin (grace a
second one, for the steps another admin must take), olga is ops, ivy approves and pat pays
(finance). `tests/conftest.py` and `tests/platform/deals/conftest.py` make them fixtures;
other people are built inline in the test that needs them. Each password is
``<name>-pw-1234``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StreamerPersona:
    user: Any
    streamer: Any
    channel: Any
    key: str


def password(name: str) -> str:
    return f"{name}-pw-1234"


def make_streamer(username: str, *, partner: bool = False) -> StreamerPersona:
    """A user with a streamer profile, a channel named after them and its key in clear."""
    from streams.actions import create_streamer

    streamer, key = create_streamer(username, partner=partner, password=password(username))
    return StreamerPersona(streamer.user, streamer, streamer.channel, key)


def make_viewer(name: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(name, password=password(name))


def make_admin(name: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(name, password=password(name))


def make_ops(name: str) -> Any:
    """Staff in the ops group (GOLIVE_OPS_GROUP): the quota and the live sessions."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(name, password=password(name), is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=settings.GOLIVE_OPS_GROUP)[0])
    return user


def make_staff(name: str, *groups: str, perms: tuple[str, ...] = ()) -> Any:
    """Staff in the given groups (which the migrations made), with these deals permissions."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    users = get_user_model().objects
    user = users.create_user(name, password=password(name), is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=groups))
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="deals",
                                                         codename__in=perms))
    return users.get(pk=user.pk)  # a fresh permission cache


def second_admin(actor: Any) -> Any:
    """Another superuser than ``actor``: grace, or ada when grace is the actor."""
    from django.contrib.auth import get_user_model

    name = "ada" if actor.get_username() == "grace" else "grace"
    found = get_user_model().objects.filter(username=name).first()
    return found or make_admin(name)


def many_streamers(n: int, *, prefix: str = "racer") -> list[str]:
    """``n`` streamers with channels and keys, in four bulk inserts; their keys."""
    from django.contrib.auth import get_user_model

    from streams import keys
    from streams.models import Channel, Streamer, StreamKey

    User = get_user_model()
    users = User.objects.bulk_create(User(username=f"{prefix}{i}") for i in range(n))
    streamers = Streamer.objects.bulk_create(
        Streamer(user=user, display_name=user.username) for user in users
    )
    channels = Channel.objects.bulk_create(
        Channel(owner=streamer, slug=streamer.display_name) for streamer in streamers
    )
    new = [keys.generate_key() for _ in channels]
    StreamKey.objects.bulk_create(
        StreamKey(channel=channel, prefix=key.prefix, digest=key.digest)
        for channel, key in zip(channels, new, strict=True)
    )
    return [key.plaintext for key in new]
