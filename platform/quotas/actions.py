"""The one write path for the quota: every change is validated and audited atomically."""

from __future__ import annotations

import copy
import logging
import threading
import time

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from .models import QUOTA_ROW_ID, QuotaChange, ServerQuota

log = logging.getLogger(__name__)

# A sane ceiling that catches a typo (an extra zero, a pasted byte count) before it
# reaches the gatekeeper; not a capacity estimate.
MAX_LIMIT = 1_000_000


class QuotaError(ValueError):
    """A quota change that cannot be made, with a sentence saying why."""


class _QuotaCache:
    """The quota row as last read, where a process keeps it (`keep_quota_for`)."""

    def __init__(self) -> None:
        self.max_age = 0.0
        self.quota: ServerQuota | None = None
        self.read_at = 0.0
        self.lock = threading.Lock()


_cache = _QuotaCache()


def keep_quota_for(seconds: float) -> None:
    """In this process, `get_quota` reads the row at most every ``seconds`` (0: always).
    The ingest does, for one second: every publish reads the quota on the way to its
    answer, and an operator's change reaching the nodes a second later decides nothing
    differently (a change always races the publishes arriving meanwhile). A change made
    in this process is seen at once."""
    with _cache.lock:
        _cache.max_age = seconds
        _cache.quota = None


def get_quota() -> ServerQuota:
    """The current quota row (a copy of it where it is kept, see `keep_quota_for`).
    Created with the configured defaults if it is missing."""
    if _cache.max_age <= 0:
        return _read_quota()
    now = time.monotonic()
    with _cache.lock:
        kept, read_at = _cache.quota, _cache.read_at
    if kept is None or now - read_at >= _cache.max_age:
        kept = _read_quota()
        with _cache.lock:
            _cache.quota, _cache.read_at = kept, now
    return copy.copy(kept)


def _read_quota() -> ServerQuota:
    quota, _ = ServerQuota.objects.get_or_create(pk=QUOTA_ROW_ID, defaults=_defaults())
    return quota


def _defaults() -> dict[str, int]:
    return {
        "max_streams": settings.GOLIVE_DEFAULT_MAX_STREAMS,
        "max_transcodes": settings.GOLIVE_DEFAULT_MAX_TRANSCODES,
        "partner_reserve": settings.GOLIVE_DEFAULT_PARTNER_RESERVE,
    }


def set_quota(
    *,
    actor: User | AnonymousUser | None,
    source: QuotaChange.Source,
    reason: str,
    actor_name: str = "",
    max_streams: int | None = None,
    max_transcodes: int | None = None,
    partner_reserve: int | None = None,
) -> QuotaChange | None:
    """Changes the limits given (None leaves one as it is) and records one audit row.

    ``actor_name`` names who acted when there is no user (a shell account running the
    command). Returns the audit row, or None when nothing would change (no row is written). Raises
    QuotaError for a missing reason or a value out of range. Lowering a limit never stops
    a running stream: it only refuses new ones until the platform is back under it.
    """
    reason = reason.strip()
    if not reason:
        raise QuotaError("say why the quota is changing (a reason is required)")
    requested = {
        "max_streams": max_streams,
        "max_transcodes": max_transcodes,
        "partner_reserve": partner_reserve,
    }
    for name, value in requested.items():
        if value is not None and not 0 <= value <= MAX_LIMIT:
            raise QuotaError(f"{name} must be between 0 and {MAX_LIMIT}, not {value}")

    with transaction.atomic():
        _read_quota()  # makes sure the row exists before it is locked (not a kept copy)
        quota = ServerQuota.objects.select_for_update().get(pk=QUOTA_ROW_ID)
        old = quota.as_dict()
        new = {name: (old[name] if value is None else value) for name, value in requested.items()}
        if new["partner_reserve"] > new["max_streams"]:
            raise QuotaError(
                f"the partner reserve ({new['partner_reserve']}) cannot exceed "
                f"the stream quota ({new['max_streams']})"
            )
        if new == old:
            return None
        for name, value in new.items():
            setattr(quota, name, value)
        quota.updated_at = timezone.now()
        quota.save()
        # Now for this thread, and again at the commit, before which another thread may
        # have read and kept the old row.
        _forget_quota()
        transaction.on_commit(_forget_quota)
        user = actor if actor is not None and actor.is_authenticated else None
        change = QuotaChange.objects.create(
            changed_by=user,
            changed_by_name=user.get_username() if user is not None else actor_name,
            source=source,
            reason=reason,
            old=old,
            new=new,
        )
    log.info("quota changed via %s: %s", source, change.summary)
    return change


def _forget_quota() -> None:
    with _cache.lock:
        _cache.quota = None
