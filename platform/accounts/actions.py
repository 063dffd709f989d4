"""The one write path for viewer accounts: signing up and following channels."""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, transaction

from streams.models import Channel

from .models import Follow

log = logging.getLogger(__name__)


def sign_up(username: str, email: str, password: str) -> User:
    """Creates a viewer account (no channel: `streams.actions.become_streamer` adds one).
    The form has validated the username, the address and the password."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    log.info("viewer %s signed up", username)
    return user


def follow(user: AbstractBaseUser, channel: Channel) -> bool:
    """Follows a channel. Idempotent: True when this call made the user a follower."""
    if channel.owner.user_id == user.pk:
        return False  # following yourself puts nothing first
    try:
        with transaction.atomic():
            Follow.objects.create(user_id=user.pk, channel=channel)
    except IntegrityError:
        return False
    return True


def unfollow(user: AbstractBaseUser, channel: Channel) -> bool:
    """Stops following. Idempotent: True when a follow was removed."""
    deleted, _ = Follow.objects.filter(user_id=user.pk, channel=channel).delete()
    return deleted > 0


def followed_since(user_id: int, channel_id: int) -> datetime | None:
    return (
        Follow.objects.filter(user_id=user_id, channel_id=channel_id)
        .values_list("created_at", flat=True)
        .first()
    )
