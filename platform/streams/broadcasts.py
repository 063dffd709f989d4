"""The write path for live sessions: admit a publish, record its health, end it.

Called by the ingest through `streams.gatekeeper` (one call per batch of publishes, per
heartbeat, per end; never per packet). Admission decides each slot atomically for every
ingest node: in Redis (the slot ledger) in a cluster, under the quota row lock without it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from math import ceil, inf
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F, Field, QuerySet
from django.utils import timezone

from ingest.gatekeeper import (
    EndReason,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
    StreamDescription,
)
from ingest.health import StreamHealth
from quotas import slots, tally
from quotas.actions import get_quota
from quotas.models import QUOTA_ROW_ID, ServerQuota, SlotLease
from transcoder.ladder import SOURCE_ONLY

from .actions import awaits_reconnect, find_channel_by_key, find_channels_by_keys
from .ladders import effective_ladder, ladder_override
from .models import Channel, LiveSession

log = logging.getLogger(__name__)

# Recent frees are counted over this window to estimate a refused streamer's wait.
FREE_WINDOW = timedelta(minutes=30)
RETRY_UNKNOWN_SECONDS = 600


def unknown_key() -> Refusal:
    return Refusal(
        RefusalCode.BAD_NAME, "unknown_key",
        "Unknown or revoked stream key: get a new key on your dashboard,"
        f" {settings.GOLIVE_PUBLIC_URL}/dashboard, and paste it into your encoder.",
        counts_as_failed_key=True,
    )


def already_live() -> Refusal:
    return Refusal(
        RefusalCode.REJECTED, "already_live",
        "This channel is already live from another encoder: stop that one first.",
    )


def start_broadcast(request: PublishRequest) -> Grant | Refusal:
    """Admits a publish, opening its live session and taking a slot lease, or says why not.

    Checks, in order: the key, the ban, a force stop's cool-down, then the slot: one live
    session per channel, the concurrent-stream quota, the slots reserved for partners
    (non-partners stop at quota minus reserve). With the Redis slot ledger (a cluster)
    the slot is decided atomically in Redis (`quotas.slots`); without it, under the quota
    row lock, so any number of ingest nodes decide one publish at a time and leases never
    outnumber the quota. Over the transcode quota the stream is admitted source-only
    (`rebalance_transcodes` upgrades it when a transcode slot frees). Every outcome is
    tallied for ops.

    The grant carries the channel's own ladder (`streams.ladders`), read with the key; a
    channel whose ladder has no rungs ("none") goes out source-only without taking a
    transcode slot.

    A channel whose publisher dropped within the reconnect grace resumes that session
    (its slot was kept) when the reconnect reaches the same ingest node, which holds the
    session's packager; on another node the old session ends and a new one starts.
    """
    return start_broadcasts([request])[0]


def start_broadcasts(requests: Sequence[PublishRequest]) -> list[Grant | Refusal]:
    """`start_broadcast` for publishes that arrived together, answered in their order: each
    answer is the one it would have had alone, after the publishes before it. Their keys
    are read in one statement, their slots claimed in one Redis call and their sessions
    written in one statement, so a surge costs the database and Redis a few round trips
    per batch (`streams.gatekeeper` gathers them), not per publish."""
    if len(requests) > MAX_BATCH:
        return [*start_broadcasts(requests[:MAX_BATCH]),
                *start_broadcasts(requests[MAX_BATCH:])]
    answers = _admit_all(requests)
    for answer in answers:
        if isinstance(answer, Refusal):
            tally.count(tally.Result.REFUSED, answer.reason)
    return answers


# The most publishes decided together (the statements a batch builds grow with it).
MAX_BATCH = 32


def _admit_all(requests: Sequence[PublishRequest]) -> list[Grant | Refusal]:
    channels = find_channels_by_keys([request.key for request in requests])
    answers: list[Grant | Refusal | None] = [None] * len(requests)
    quota: ServerQuota | None = None
    claimable: list[int] = []
    for i, channel in enumerate(channels):
        if channel is None:
            answers[i] = unknown_key()
        elif (refusal := _refusal_for(channel)) is not None:
            answers[i] = refusal
        else:
            quota = quota or get_quota()  # the row exists before it is locked
            claimable.append(i)
    ledger = slots.ledger()
    locked = claimable
    if ledger is not None and quota is not None:
        # A broadcast waiting for its publisher is resumed under the lock.
        by_ledger = [i for i in claimable if not awaits_reconnect(_channel(channels[i]))]
        try:
            decided = _admit_by_ledger([requests[i] for i in by_ledger],
                                       [_channel(channels[i]) for i in by_ledger], quota, ledger)
        except slots.LedgerUnavailable as error:
            log.warning("slot ledger unavailable, deciding under the quota lock: %s", error)
        else:
            for i, answer in zip(by_ledger, decided, strict=True):
                answers[i] = answer
            locked = [i for i in claimable if i not in by_ledger]
    for i in locked:
        assert quota is not None
        answers[i] = _admit_locked(requests[i], _channel(channels[i]), quota, ledger)
    return [_answered(answer) for answer in answers]


def _channel(channel: Channel | None) -> Channel:
    assert channel is not None
    return channel


def _answered(answer: Grant | Refusal | None) -> Grant | Refusal:
    assert answer is not None
    return answer


def _refusal_for(channel: Channel) -> Refusal | None:
    """Why a known key's channel may not go live now, whatever the slots: a ban or a
    force stop's cool-down."""
    if channel.is_banned:
        why = f": {channel.ban_reason}" if channel.ban_reason else "."
        return Refusal(RefusalCode.REJECTED, "banned", f"This channel is banned{why}")
    now = timezone.now()
    if channel.stopped_until is not None and channel.stopped_until > now:
        why = f" ({channel.stop_reason})" if channel.stop_reason else ""
        wait = (channel.stopped_until - now).total_seconds()
        return Refusal(
            RefusalCode.REJECTED, "cooldown",
            f"This stream was stopped by golive staff{why}. You can go live again in"
            f" {in_about(wait)}.",
            retry_after=ceil(wait),
        )
    return None


def _admit_locked(
    request: PublishRequest, channel: Channel, quota: ServerQuota,
    ledger: slots.SlotLedger | None,
) -> Grant | Refusal:
    """Admission under the quota row lock: without Redis, when it cannot be reached, and
    for a reconnect within the grace."""
    if not awaits_reconnect(channel):
        # Plainly full: refused without queueing for the lock. A stale count can only
        # refuse a publish that came a moment too early; admissions are decided under
        # the lock below, so nothing is ever admitted over the quota.
        refusal = _check_capacity(channel, quota)
        if refusal is not None:
            return refusal
    try:
        with transaction.atomic():
            quota = ServerQuota.objects.select_for_update().get(pk=QUOTA_ROW_ID)
            resumed = _resume(channel, request.node)
            if resumed is not None:
                tally.count(tally.Result.RESUMED)
                return resumed
            refusal = _check_capacity(channel, quota)
            if refusal is not None:
                return refusal
            transcoded = wants_transcode(channel) and (
                LiveSession.objects.filter(ended_at__isnull=True, transcoded=True).count()
                < quota.max_transcodes
            )
            session_id = open_session(channel, request.node, transcoded)
            tally.count(tally.Result.ADMITTED, "" if transcoded else "source_only")
            if ledger is not None:
                transaction.on_commit(lambda: ledger.note(channel.pk, transcoded))
    except IntegrityError:
        return already_live()
    return _granted(channel, request.node, session_id, transcoded)


def _granted(channel: Channel, node: str, session_id: int, transcoded: bool) -> Grant:
    log.info("channel %s went live on %s (session %d)", channel.slug, node, session_id)
    return Grant(session_id, channel.slug, channel.is_partner, transcoded,
                 ladder=ladder_override(channel.transcode_ladder))


def wants_transcode(channel: Channel) -> bool:
    """Whether the channel's broadcasts have a ladder to take a transcode slot for."""
    return bool(effective_ladder(ladder_override(channel.transcode_ladder)))


def _admit_by_ledger(
    requests: Sequence[PublishRequest], channels: Sequence[Channel], quota: ServerQuota,
    ledger: slots.SlotLedger,
) -> list[Grant | Refusal]:
    """The cluster's admission: the slots decided atomically in Redis (quotas.slots), then
    the sessions and their leases written without the quota row lock. Raises
    LedgerUnavailable when Redis cannot be reached (the caller takes the lock instead)."""
    claims = ledger.claim_many(
        [slots.ClaimRequest(channel.pk, channel.is_partner,
                            quota.max_transcodes if wants_transcode(channel) else 0)
         for channel in channels],
        max_streams=quota.max_streams, open_to_all=quota.max_streams - quota.partner_reserve,
    )
    answers: list[Grant | Refusal] = []
    admitted: list[tuple[int, Channel, bool]] = []
    for claim, channel in zip(claims, channels, strict=True):
        if claim.outcome == "exists":
            answers.append(already_live())
        elif claim.outcome == "capacity":
            answers.append(_full(claim.held, claim.held - quota.max_streams + 1))
        elif claim.outcome == "partner_reserve":
            open_to_all = quota.max_streams - quota.partner_reserve
            answers.append(_partner_only(quota, claim.held - open_to_all + 1))
        else:
            admitted.append((len(answers), channel, claim.transcoded))
            answers.append(already_live())  # until its session is written
    if not admitted:
        return answers
    node = requests[0].node
    try:
        sessions = _open_claimed([(channel, transcoded) for _, channel, transcoded in admitted],
                                 node)
    except BaseException:
        ledger.release([channel.pk for _, channel, _ in admitted])
        raise
    pairs = list(zip(admitted, sessions, strict=True))
    ledger.release([channel.pk for (_, channel, _), session_id in pairs if session_id is None])
    for (i, channel, transcoded), session_id in pairs:
        if session_id is not None:
            # Outside the transaction: the hour's tally row is one row every admission updates.
            tally.count(tally.Result.ADMITTED, "" if transcoded else "source_only")
            answers[i] = _granted(channel, node, session_id, transcoded)
    return answers


def _open_claimed(admitted: list[tuple[Channel, bool]], node: str) -> list[int | None]:
    """Writes the sessions of claimed slots: their ids, None for a channel that has an open
    session already (the ledger did not know it: it is told to let the claim go)."""
    try:
        return list(open_sessions(admitted, node))
    except IntegrityError:
        if len(admitted) == 1:
            return [None]
    # One of them is live already: the others are written one by one.
    written: list[int | None] = []
    for channel, transcoded in admitted:
        try:
            written.append(open_session(channel, node, transcoded))
        except IntegrityError:
            written.append(None)
    return written


def open_session(channel: Channel, node: str, transcoded: bool) -> int:
    """Records an admitted publish: its live session and its slot lease, both or neither.
    Returns the session's id. Raises IntegrityError when the channel has an open session
    already (`one_live_session_per_channel`). Callers decide the slot first. The session
    keeps the channel's ladder as it is now."""
    return open_sessions([(channel, transcoded)], node)[0]


def open_sessions(admitted: Sequence[tuple[Channel, bool]], node: str) -> list[int]:
    """`open_session` for several channels (each once, with whether it is transcoded), all
    or none; their session ids in the same order.

    On PostgreSQL one statement (the leases' insert takes the sessions' ids from the
    sessions', in a data-modifying WITH): it is on the way to the publishers' answers,
    where the ORM's saves in a transaction cost four round trips and ~1.4 ms of CPU each.
    """
    expires_at = timezone.now() + lease_ttl()
    sessions = [LiveSession(channel=channel, ingest_node=node, transcoded=transcoded,
                            transcode_ladder=channel.transcode_ladder)
                for channel, transcoded in admitted]
    leases = [SlotLease(node=node, partner=channel.is_partner, expires_at=expires_at)
              for channel, _ in admitted]
    if connection.vendor != "postgresql":
        with transaction.atomic():
            for session, lease in zip(sessions, leases, strict=True):
                session.save(force_insert=True)
                lease.session = session
                lease.save(force_insert=True)
        return [session.pk for session in sessions]
    values: list[Any] = []
    for session in sessions:
        values += _insert_values(session)
    for session, lease in zip(sessions, leases, strict=True):
        values += [session.channel_id, *_insert_values(lease)]
    with connection.cursor() as cursor:
        cursor.execute(_open_sessions_sql(len(sessions)), values)
        ids = dict(cursor.fetchall())
    return [int(ids[session.channel_id]) for session in sessions]


def _inserted_fields(model: type[LiveSession] | type[SlotLease]) -> list[Field[Any, Any]]:
    """The columns an insert of ``model`` writes (the session's id is the database's;
    the lease's is the session's, given by the statement)."""
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def _insert_values(instance: LiveSession | SlotLease) -> list[Any]:
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection)
        for field in _inserted_fields(type(instance))
    ]


@functools.lru_cache(maxsize=MAX_BATCH)
def _open_sessions_sql(count: int) -> str:
    # Built from the models, so a field added to either is written with its default. Each
    # lease row carries its session's channel, which matches it to its session's id (a
    # channel is admitted once per statement); its values are cast to their columns'
    # types, which a VALUES list outside an INSERT does not infer.
    quote = connection.ops.quote_name

    def row(placeholders: list[str]) -> str:
        return "(" + ", ".join(placeholders) + ")"

    session_fields, lease_fields = _inserted_fields(LiveSession), _inserted_fields(SlotLease)
    channel = LiveSession._meta.get_field("channel")
    session_row = row(["%s"] * len(session_fields))
    # A foreign key's type is its target's (bigint for the channel's id).
    lease_row = row([f"%s::{field.db_type(connection)}" for field in (channel, *lease_fields)])
    session_table, lease_table = (quote(m._meta.db_table) for m in (LiveSession, SlotLease))
    session_pk, lease_pk = (quote(m._meta.pk.column) for m in (LiveSession, SlotLease))
    channel_column = quote(channel.column)
    lease_columns = [quote(field.column) for field in lease_fields]
    # Table and column names from the models, quoted; every value is bound.
    return (
        f"WITH session AS (INSERT INTO {session_table}"  # noqa: S608
        f" ({', '.join(quote(field.column) for field in session_fields)})"
        f" VALUES {', '.join([session_row] * count)}"
        f" RETURNING {session_pk}, {channel_column}),"
        f" lease_row ({channel_column}, {', '.join(lease_columns)}) AS"
        f" (VALUES {', '.join([lease_row] * count)}),"
        f" lease AS (INSERT INTO {lease_table} ({lease_pk}, {', '.join(lease_columns)})"
        f" SELECT session.{session_pk}, {', '.join('lease_row.' + c for c in lease_columns)}"
        f" FROM session JOIN lease_row USING ({channel_column}) RETURNING {lease_pk})"
        f" SELECT {channel_column}, {session_pk} FROM session"
        f" JOIN lease ON lease.{lease_pk} = session.{session_pk}"
    )


def reconnect_grace() -> timedelta:
    return timedelta(seconds=settings.GOLIVE_RECONNECT_GRACE)


def lease_ttl() -> timedelta:
    return timedelta(seconds=settings.GOLIVE_LEASE_TTL)


def _resume(channel: Channel, node: str) -> Grant | None:
    """Inside the quota lock: takes the channel's session back if it is in its grace."""
    session = (
        LiveSession.objects.filter(
            channel=channel, ended_at__isnull=True, disconnected_at__isnull=False
        )
        .select_for_update()
        .first()
    )
    if session is None:
        return None
    assert session.disconnected_at is not None
    now = timezone.now()
    if session.ingest_node != node or session.disconnected_at + reconnect_grace() < now:
        _close(session, at=session.disconnected_at)
        return None
    session.earlier = {name: getattr(session, name) for name in ADDITIVE}
    session.disconnected_at = None
    session.end_reason = ""
    session.reconnects += 1
    session.save(update_fields=["earlier", "disconnected_at", "end_reason", "reconnects"])
    SlotLease.objects.update_or_create(
        session=session,
        defaults={"node": node, "partner": channel.is_partner, "expires_at": now + lease_ttl()},
    )
    log.info("channel %s reconnected into session %d", channel.slug, session.pk)
    return Grant(session.pk, channel.slug, channel.is_partner, session.transcoded, resumed=True,
                 ladder=ladder_override(session.transcode_ladder))


def _check_capacity(channel: Channel, quota: ServerQuota) -> Refusal | None:
    if LiveSession.objects.filter(channel=channel, ended_at__isnull=True).exists():
        return already_live()
    leases = SlotLease.objects.count()
    if leases >= quota.max_streams:
        return _full(leases, leases - quota.max_streams + 1)
    open_to_all = quota.max_streams - quota.partner_reserve
    if not channel.is_partner and leases >= open_to_all:
        return _partner_only(quota, leases - open_to_all + 1)
    return None


def _full(live: int, needed: int) -> Refusal:
    wait = estimate_wait(needed)
    return Refusal(
        RefusalCode.REJECTED, "capacity",
        f"golive is at capacity ({live} stream{'s' if live != 1 else ''} live)."
        f" {_retry_sentence(wait)}",
        retry_after=wait or RETRY_UNKNOWN_SECONDS,
    )


def _partner_only(quota: ServerQuota, needed: int) -> Refusal:
    wait = estimate_wait(needed)
    return Refusal(
        RefusalCode.REJECTED, "partner_reserve",
        f"golive is at capacity: the last {quota.partner_reserve} slots are kept for"
        f" partner channels. {_retry_sentence(wait)}",
        retry_after=wait or RETRY_UNKNOWN_SECONDS,
    )


class _Pace:
    """How many streams ended over FREE_WINDOW, as last counted, where a process keeps
    the count (`keep_pace_for`)."""

    def __init__(self) -> None:
        self.max_age = 0.0
        self.freed = 0
        self.counted_at = -inf
        self.lock = threading.Lock()


_pace = _Pace()


def keep_pace_for(seconds: float) -> None:
    """In this process, the wait estimate counts recent ends at most every ``seconds``
    (0: at every refusal). The ingest keeps it a few seconds: a full platform refuses
    every publish of a surge, each refusal paid a COUNT on the way to its answer, and a
    pace over 30 minutes moves little in a few seconds."""
    with _pace.lock:
        _pace.max_age = seconds
        _pace.counted_at = -inf


def _recent_ends(now: datetime | None) -> int:
    if now is not None or _pace.max_age <= 0:
        return LiveSession.objects.filter(
            ended_at__gte=(now or timezone.now()) - FREE_WINDOW
        ).count()
    with _pace.lock:
        if time.monotonic() - _pace.counted_at < _pace.max_age:
            return _pace.freed
    freed = _recent_ends(timezone.now())
    with _pace.lock:
        _pace.freed, _pace.counted_at = freed, time.monotonic()
    return freed


def estimate_wait(needed: int, now: datetime | None = None) -> int | None:
    """Seconds until ``needed`` slots free, at the pace streams ended over FREE_WINDOW
    before ``now`` (default: now, or as last counted where the process keeps the pace,
    see `keep_pace_for`); None when none ended then (no pace to go by)."""
    freed = _recent_ends(now)
    if freed == 0:
        return None
    return ceil(needed * FREE_WINDOW.total_seconds() / freed)


def _retry_sentence(wait: int | None) -> str:
    if wait is None:
        minutes = int(FREE_WINDOW.total_seconds() // 60)
        return f"No stream has ended in the last {minutes} minutes: try again later."
    return f"Try again in {in_about(wait)}."


def in_about(seconds: float) -> str:
    if seconds < 90:
        return "about a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minutes"
    hours = round(seconds / 3600)
    return "about an hour" if hours == 1 else f"about {hours} hours"


def _close(session: LiveSession, *, at: datetime, reason: str | None = None) -> None:
    """Ends a session and frees its slot (callers hold or need no quota lock)."""
    session.ended_at = at
    fields = ["ended_at"]
    if reason is not None:
        session.end_reason = reason
        fields.append("end_reason")
    session.save(update_fields=fields)
    SlotLease.objects.filter(session=session).delete()
    slots.release_channels([session.channel_id])


# Figures that add up over the connections of a session.
ADDITIVE = ("bytes_in", "video_frames", "audio_frames", "media_duration_ms")


def earlier_figures(session_id: int) -> dict[str, int]:
    """What the connections before a reconnect counted (empty for a first connection)."""
    earlier = LiveSession.objects.filter(pk=session_id).values_list("earlier", flat=True).first()
    return dict(earlier or {})


def _figures(
    description: StreamDescription, health: StreamHealth, earlier: dict[str, int] | None
) -> dict[str, object]:
    before = earlier or {}
    return {
        **{name: getattr(health, name) + before.get(name, 0) for name in ADDITIVE},
        "video_codec": description.video_codec[:64],
        "audio_codec": description.audio_codec[:64],
        "width": description.width,
        "height": description.height,
        "frame_rate": (
            Decimal(str(round(description.frame_rate, 3))) if description.frame_rate else None
        ),
        "health": health.as_dict(),
    }


def record_heartbeat(
    session_id: int,
    description: StreamDescription,
    health: StreamHealth,
    earlier: dict[str, int] | None = None,
) -> bool:
    """Stores the latest figures and renews the slot lease. False when the stream must
    stop: its session was ended (a force stop) or its lease lapsed and the slot is gone."""
    now = timezone.now()
    with transaction.atomic():  # one commit for both rows
        renewed = SlotLease.objects.filter(session_id=session_id).update(
            expires_at=now + lease_ttl()
        )
        updated = LiveSession.objects.filter(
            pk=session_id, ended_at__isnull=True, disconnected_at__isnull=True
        ).update(last_heartbeat_at=now, **_figures(description, health, earlier))
    return renewed == 1 and updated == 1


def end_broadcast(
    session_id: int,
    reason: EndReason,
    description: StreamDescription,
    health: StreamHealth,
    earlier: dict[str, int] | None = None,
) -> bool:
    """The publisher is gone: stores the final figures and closes the session, freeing
    its slot, or, when the streamer may reconnect (`EndReason.resumable` and a grace
    configured), marks it disconnected and keeps the slot until `conclude_grace` (the
    lease outlives the grace by one TTL, so a node that dies meanwhile still frees it).
    True when the session stays open for the grace. Idempotent."""
    now = timezone.now()
    grace = reason.resumable and settings.GOLIVE_RECONNECT_GRACE > 0
    closing = {"disconnected_at": now} if grace else {"ended_at": now}
    with transaction.atomic():
        changed = LiveSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
            end_reason=reason.value, **closing, **_figures(description, health, earlier)
        )
        leases = SlotLease.objects.filter(session_id=session_id)
        if grace:
            leases.update(expires_at=now + reconnect_grace() + lease_ttl())
        else:
            leases.delete()
            slots.release_sessions([session_id])
    if changed:
        state = "disconnected" if grace else "ended"
        log.info("session %d %s: %s", session_id, state, reason.value)
    return grace


def conclude_grace(session_id: int) -> bool:
    """The grace is over: closes the session as of its disconnection and frees its slot,
    unless the publisher has reconnected into it meanwhile. True when it is over."""
    with transaction.atomic():
        session = LiveSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None or session.ended_at is not None:
            return True
        if session.disconnected_at is None:
            return False  # resumed
        _close(session, at=session.disconnected_at)
    log.info("session %d ended: %s (no reconnect)", session_id, session.end_reason)
    return True


def conclude_graces(node: str) -> int:
    """Closes every session of this node still waiting for a reconnect (shutdown)."""
    count = 0
    for session_id in LiveSession.objects.filter(
        ingest_node=node, ended_at__isnull=True, disconnected_at__isnull=False
    ).values_list("pk", flat=True):
        count += conclude_grace(session_id)
    return count


def _close_lost(open_sessions: QuerySet[LiveSession], *, at: datetime) -> int:
    """Ends open sessions whose ingest is gone, in two updates: those waiting for a
    reconnect had ended when their publisher left (for its reason), the rest end at `at`
    as "ingest lost". Their leases are the caller's to delete."""
    count = open_sessions.filter(disconnected_at__isnull=False).update(
        ended_at=F("disconnected_at")
    )
    # Re-evaluated: the rows just ended no longer match `ended_at__isnull`. Their figures
    # are the last heartbeat's: the node died before it could send final ones.
    return count + open_sessions.update(
        ended_at=at, end_reason=LiveSession.EndReason.INGEST_LOST, figures_last_known=True
    )


def _finalise_recordings(session_ids: list[int]) -> None:
    """The delivery of these sessions died with their node: their VOD playlists are built
    from what the segment store holds. Never fails the caller (a store that cannot be
    read now is tried again by the node's next start)."""
    if not session_ids:
        return
    from delivery.vod import finalise_recordings

    try:
        finalise_recordings(session_ids)
    except Exception:
        log.exception("could not finalise the recordings of sessions %s", session_ids)


def end_orphaned_sessions(node: str) -> int:
    """Closes sessions a previous run of this ingest node left open (it died)."""
    with transaction.atomic():
        open_sessions = LiveSession.objects.filter(ingest_node=node, ended_at__isnull=True)
        ids = list(open_sessions.values_list("pk", flat=True))
        count = _close_lost(open_sessions, at=timezone.now())
        SlotLease.objects.filter(session_id__in=ids).delete()
        slots.release_sessions(ids)
    if count:
        log.warning("closed %d session(s) left open by a previous run of %s", count, node)
    # Also those a reaper closed lately but could not finalise (the store was away then).
    lost = LiveSession.objects.filter(
        ingest_node=node, end_reason=LiveSession.EndReason.INGEST_LOST, vod_path="",
        recording_deleted_at__isnull=True, ended_at__gte=timezone.now() - timedelta(days=1),
    ).values_list("pk", flat=True)
    _finalise_recordings([*ids, *lost[:100]])
    return count


def reap_expired_leases(now: datetime | None = None, limit: int = 500) -> int:
    """Frees the slots whose lease lapsed (their ingest node died or lost the database)
    and closes their sessions as "ingest lost" (those waiting for a reconnect: as of
    their disconnection, for their own reason). Any node may run it; rows another
    reaper holds are skipped. Returns how many slots were freed."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            SlotLease.objects.select_for_update(skip_locked=True).filter(expires_at__lt=now)[
                :limit
            ]
        )
        ids = [lease.session_id for lease in expired]
        _close_lost(LiveSession.objects.filter(pk__in=ids, ended_at__isnull=True), at=now)
        SlotLease.objects.filter(session_id__in=ids).delete()
        slots.release_sessions(ids)
        if expired:
            tally.count(tally.Result.LEASE_EXPIRED, n=len(expired))
    for lease in expired:
        log.warning(
            "lease of session %d (node %s) expired: slot freed, session closed as ingest lost",
            lease.session_id, lease.node,
        )
    _finalise_recordings(ids)
    return len(expired)


def rebalance_transcodes() -> int:
    """Upgrades source-only streams, oldest first, while transcode slots are free (a
    transcoded stream ended, or ops raised the transcode quota). Returns how many. A
    broadcast whose ladder (its own, else the platform's) has no rungs is never upgraded:
    it has nothing to transcode."""
    live = LiveSession.objects.filter(ended_at__isnull=True)
    quota = get_quota()
    # Only connected streams are upgraded: one waiting out its reconnect grace is not work.
    upgradable = live.filter(transcoded=False, disconnected_at__isnull=True).exclude(
        transcode_ladder__iexact=SOURCE_ONLY
    )
    if not settings.GOLIVE_TRANSCODE_LADDER:
        upgradable = upgradable.exclude(transcode_ladder="")
    if not upgradable.exists() or (
        live.filter(transcoded=True).count() >= quota.max_transcodes
    ):
        return 0  # nothing to do: no lock taken
    with transaction.atomic():
        quota = ServerQuota.objects.select_for_update().get(pk=QUOTA_ROW_ID)
        free = quota.max_transcodes - live.filter(transcoded=True).count()
        if free <= 0:
            return 0
        candidates = list(
            upgradable.order_by("started_at")
            .values_list("pk", "channel_id")[:free]
        )
        ledger = slots.ledger()
        if ledger is not None:
            # Admissions take transcode slots in Redis without this lock: claim there too.
            try:
                candidates = [
                    (pk, channel) for pk, channel in candidates
                    if ledger.claim_transcode(channel, quota.max_transcodes)
                ]
            except slots.LedgerUnavailable:
                return 0
        ids = [pk for pk, _ in candidates]
        LiveSession.objects.filter(pk__in=ids).update(transcoded=True)
    if ids:
        log.info("upgraded %d source-only stream(s) to the quality ladder", len(ids))
    return len(ids)


def ended_among(session_ids: Iterable[int]) -> set[int]:
    """Which of these sessions the platform has ended (force stop, lapsed lease): their
    publishers must be dropped. One query, whatever the number of streams."""
    ids = list(session_ids)
    if not ids:
        return set()
    return set(
        LiveSession.objects.filter(pk__in=ids, ended_at__isnull=False).values_list(
            "pk", flat=True
        )
    )


def transcoded_among(session_ids: Iterable[int]) -> set[int]:
    """Which of these live sessions hold a transcode slot: for publishes that went out
    source-only, those `rebalance_transcodes` has upgraded since (their ingest starts
    the ladder). One query, whatever the number of streams."""
    ids = list(session_ids)
    if not ids:
        return set()
    return set(
        LiveSession.objects.filter(pk__in=ids, ended_at__isnull=True, transcoded=True)
        .values_list("pk", flat=True)
    )


def force_stop(session_id: int, *, by: str, reason: str = "") -> bool:
    """Ends a live session now (ops' decision): its slot is freed at once, the ingest
    drops the publisher at its next check (within about a second), and the channel may
    not go live again for GOLIVE_FORCE_STOP_COOLDOWN seconds. False if it was not live."""
    now = timezone.now()
    with transaction.atomic():
        session = (
            LiveSession.objects.select_for_update()
            .select_related("channel")
            .filter(pk=session_id, ended_at__isnull=True)
            .first()
        )
        if session is None:
            return False
        _close(session, at=now, reason=LiveSession.EndReason.FORCE_STOPPED)
        Channel.objects.filter(pk=session.channel_id).update(
            stopped_until=now + timedelta(seconds=settings.GOLIVE_FORCE_STOP_COOLDOWN),
            stop_reason=reason[:200],
        )
        tally.count(tally.Result.FORCE_STOPPED)
    log.warning(
        "session %d of %s force-stopped by %s%s",
        session_id, session.channel.slug, by, f": {reason}" if reason else "",
    )
    return True


def find_live_publish(key: str) -> tuple[int, str] | None:
    """The session and ingest node of the publish now live (connected, not waiting for a
    reconnect) on the channel whose current key this is, or None. A takeover's target:
    only the channel's current key finds it, so a revoked or rotated key, or another
    channel's, can never replace a publish."""
    channel = find_channel_by_key(key)
    if channel is None:
        return None
    return (
        LiveSession.objects.filter(
            channel=channel, ended_at__isnull=True, disconnected_at__isnull=True
        )
        .values_list("pk", "ingest_node")
        .first()
    )


def close_lost_session(session_id: int) -> bool:
    """Ends a live session whose ingest node is dead (its alive mark lapsed, see
    `streams.takeovers`) at once, as its lease's expiry would later: "ingest lost", slot
    freed. For a reconnect of the same channel to another node. True if it was open."""
    with transaction.atomic():
        lease = SlotLease.objects.select_for_update().filter(session_id=session_id).first()
        if lease is None:
            return False  # already reaped, or ended
        count = _close_lost(
            LiveSession.objects.filter(pk=session_id, ended_at__isnull=True), at=timezone.now()
        )
        lease.delete()
        slots.release_sessions([session_id])
    if count:
        log.warning("session %d closed as ingest lost: its node %s is gone", session_id,
                    lease.node)
        # Its recording is finalised from the store as a reaped lease's would be, but off
        # this thread: the caller is admitting the channel's new publish.
        threading.Thread(
            target=_finalise_recordings_and_disconnect, args=([session_id],),
            name=f"finalise-{session_id}", daemon=True,
        ).start()
    return bool(count)


def _finalise_recordings_and_disconnect(session_ids: list[int]) -> None:
    try:
        _finalise_recordings(session_ids)
    finally:
        connections.close_all()  # this thread's own connections
