"""Transcode sessions in a cluster: Celery places, starts, supervises and stops them; a
worker runs each one, following its source rendition in the live index.

- **Ownership.** A transcoded broadcast (`LiveSession.transcoded`, live) has at most one
  session, held by a lease in Redis (`transcoder.lease`, key `session_lease_key`, token
  host:pid:random) with a TTL of GOLIVE_TRANSCODE_LEASE_TTL (3 s) that its worker renews
  every second. Every write of its rungs to the live index is fenced by that lease
  (`RedisLiveIndex.fenced`): a worker that lost it (paused, partitioned) cannot write
  after its successor started, and stops at its next renewal.
- **Placement** (`supervise_transcodes`, Celery beat every second): each live transcoded
  broadcast without a held lease gets one `delivery.transcode_session` task on the
  `transcode` queue (a start mark keeps it to one until a worker takes it or 30 s pass).
  That covers a new broadcast, an upgraded one, and a worker that died: its lease lapses
  and the next check starts the session elsewhere, within the TTL and a second or two.
  The task is acked when it starts and its worker reserves no task it has no process
  for, so a running session is never redelivered (the Redis broker's visibility
  timeout, an hour, would otherwise start a second transcoder) and a busy worker never
  holds a session back; the lease, not the broker, says who owns a session.
- **The session** (`run_session`, the task's body): reads the broadcast's ladder from its
  session row (the channel's as the broadcast started, else GOLIVE_TRANSCODE_LADDER),
  takes the lease (or leaves: another worker has it), plans where to start
  (`transcoder.follower.plan_start`: the source's live edge, or after the segment the
  previous session's rungs were cut off in, listed as a gap), then runs a
  `TranscodeSession` fed by a `SourceFollower` and delivers each rung through a
  `DeliveryOutput` of its own, as the embedded mode does: parts into the index, segments
  into the store, descriptions for the multivariant playlist, VODs. It ends with the
  source, or when its lease is lost (at once, writing nothing more), or when it falls too
  far behind (it gives the broadcast up; the next check starts it again at the live edge).
- **The end** (`HandoffOutput`, the ingest's side): when the publish ends, the source's
  output writes where its last part is (`source_end_key`) and waits, up to `END_WAIT`,
  for the session to finish its rungs (its lease released) before it ends the stream in
  the index, after which no rendition may be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.db import close_old_connections, connections
from redis.exceptions import RedisError

from ingest.gatekeeper import Grant
from streams.ladders import effective_ladder, ladder_override
from transcoder.cmaf.packager import (
    InitInfo,
    PackagerOutput,
    PackagerSettings,
    PartInfo,
    SegmentInfo,
)
from transcoder.live_index import LiveIndexError
from transcoder.live_index.redis_index import FencedLiveIndex, RedisLiveIndex, lease_key
from transcoder.renditions import SOURCE

from .live import part_target, segment_store, stream_name, target_duration
from .pipeline import DeliveryOutput
from .rung_output import LoopOutput

log = logging.getLogger(__name__)

HOLDER = "transcoder"
# Renewals of a session's lease, seconds apart.
RENEW_EVERY = 1.0
# A start mark lasts this long: a task that no worker took by then is asked for again.
START_MARK_SECONDS = 30
# How long a session waits for its source's first part, and the source's end for the
# session's (flushing the encoders, the last parts and uploads).
START_WAIT = 30.0
END_WAIT = 15.0


def session_lease_key(session_id: int) -> str:
    return lease_key(settings.GOLIVE_REDIS_PREFIX, stream_name(session_id), HOLDER)


def source_end_key(session_id: int) -> str:
    """Where the ingest writes "<msn> <part index>" of the source's last part."""
    return f"{settings.GOLIVE_REDIS_PREFIX}:{{{stream_name(session_id)}}}:transcode:source-end"


def _start_mark_key(session_id: int) -> str:
    return f"{settings.GOLIVE_REDIS_PREFIX}:{{{stream_name(session_id)}}}:transcode:starting"


_clients: dict[int, redis.Redis] = {}
_lock = threading.Lock()


def _client() -> redis.Redis:
    """This process's blocking Redis client for leases and marks (timeouts well under
    the lease's TTL, so a renewal never hangs past it)."""
    with _lock:
        client = _clients.get(0)
        if client is None:
            client = _clients[0] = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        return client


# ---------------------------------------------------------------------------------------
# Supervision (Celery beat, every second)


def supervise_transcodes(ask: Callable[[int], object] | None = None) -> int:
    """Asks a worker for every live transcoded broadcast whose session lease is not held
    (never started, or its worker died): ``ask(session_id)``, by default a
    `delivery.transcode_session` task on the transcode queue. Idempotent (a start mark
    holds each ask for START_MARK_SECONDS or until the session starts); returns how many
    were asked for."""
    from streams.models import LiveSession

    if ask is None:
        from .transcode_tasks import transcode_session

        def ask(session_id: int) -> object:
            return transcode_session.apply_async((session_id,), expires=START_MARK_SECONDS)

    ids = list(
        LiveSession.objects.filter(ended_at__isnull=True, transcoded=True)
        .order_by("pk").values_list("pk", flat=True)[:10_000]
    )
    if not ids:
        return 0
    client = _client()
    with client.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.exists(session_lease_key(session_id))
        held = pipe.execute()
    asked = 0
    for session_id, is_held in zip(ids, held, strict=True):
        if is_held or not client.set(_start_mark_key(session_id), "1", nx=True,
                                     ex=START_MARK_SECONDS):
            continue
        ask(session_id)
        asked += 1
    if asked:
        log.info("asked for %d transcode session(s)", asked)
    return asked


# ---------------------------------------------------------------------------------------
# A session, in a worker


def run_session(session_id: int) -> str:
    """Runs the transcode session of one broadcast until its source ends, its lease is
    lost or it falls behind; returns why it stopped. Blocking (a Celery task's body);
    does nothing when the broadcast is over or another worker holds its lease."""
    from streams.models import LiveSession
    from transcoder.lease import Lease

    row = (
        LiveSession.objects.filter(pk=session_id)
        .values("ended_at", "transcoded", "channel__slug", "started_at", "transcode_ladder")
        .first()
    )
    client = _client()
    if row is None or row["ended_at"] is not None or not row["transcoded"]:
        client.delete(_start_mark_key(session_id))
        return "not a live transcoded broadcast"
    override = ladder_override(row["transcode_ladder"])
    if not effective_ladder(override):
        client.delete(_start_mark_key(session_id))
        return "source only: its ladder has no rungs"
    lease = Lease(client, session_lease_key(session_id), settings.GOLIVE_TRANSCODE_LEASE_TTL)
    if not lease.acquire():
        return f"already transcoded by {lease.holder()}"
    client.delete(_start_mark_key(session_id))
    # Hours without a query: no idle database connection held meanwhile.
    connections.close_all()
    grant = Grant(session_id, row["channel__slug"], transcode=True, ladder=override)
    log.info("%s (session %d): transcoding here (%s)", grant.channel, session_id, lease.token)
    try:
        outcome = asyncio.run(_transcode(grant, lease, row["started_at"].timestamp()))
    finally:
        close_old_connections()
    log.info("%s (session %d): transcoding stopped: %s", grant.channel, session_id, outcome)
    return outcome


async def _transcode(grant: Grant, lease: Any, started_at: float) -> str:
    from transcoder.lease import LeaseKeeper

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def lost(_reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closing already
            loop.call_soon_threadsafe(stop.set)

    keeper = LeaseKeeper(lease, every=RENEW_EVERY, on_lost=lost,
                         name=f"transcode-{grant.session_id}")
    keeper.start()
    index = RedisLiveIndex.from_url(settings.REDIS_URL, prefix=settings.GOLIVE_REDIS_PREFIX)
    ends = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=2.0)
    try:
        fenced = index.fenced(stream_name(grant.session_id), HOLDER, lease.token)
        return await _Session(grant, index, fenced, ends, stop, started_at).run()
    finally:
        # Released only once the rungs are delivered (or abandoned): until then a new
        # session must not start writing beside this one.
        await asyncio.to_thread(keeper.stop, release=keeper.lost is None)
        await index.aclose()
        await ends.aclose()


class _Session:
    def __init__(
        self, grant: Grant, index: RedisLiveIndex, fenced: FencedLiveIndex,
        ends: redis.asyncio.Redis, stop: asyncio.Event, started_at: float,
    ) -> None:
        self.grant = grant
        self.index = index
        self.fenced = fenced
        self.ends = ends
        self.stop = stop
        self.started_at = started_at
        self.stream = stream_name(grant.session_id)
        self.name = f"{grant.channel} (session {grant.session_id})"
        self.ladder = effective_ladder(grant.ladder)
        self.loop = asyncio.get_running_loop()
        self.rungs: dict[str, LoopOutput] = {}
        self.finished = asyncio.Event()

    async def source_end(self) -> tuple[int, int] | None:
        try:
            value = await self.ends.get(source_end_key(self.grant.session_id))
        except (RedisError, OSError):
            return None
        if value is None:
            return None
        msn, index = value.split()
        return int(msn), int(index)

    async def _plan(self) -> Any:
        from transcoder.follower import plan_start

        deadline = self.loop.time() + START_WAIT
        while not self.stop.is_set():
            plan = await plan_start(self.index, self.stream, self.ladder)
            if plan is not None:
                return plan
            window = await self.index.snapshot(self.stream, SOURCE)
            if (window is not None and window.ended) or await self.source_end() is not None:
                return None
            if self.loop.time() > deadline:
                return None
            # Not published yet: a new broadcast's first part is a moment away.
            await asyncio.sleep(0.2)
        return None

    async def run(self) -> str:
        from transcoder.follower import FellBehind, SourceFollower
        from transcoder.session import TranscodeSession

        plan = await self._plan()
        if plan is None:
            return "stopped" if self.stop.is_set() else "no source to follow"
        try:
            for gap in plan.gaps:
                await self.fenced.mark_gap(self.stream, gap.rendition, gap.msn, gap.duration,
                                           gap.program_date_time,
                                           discontinuity=gap.discontinuity)
        except LiveIndexError as error:
            return f"could not list the gaps: {error}"
        if plan.gaps:
            log.warning("%s: resuming the ladder at segment %d; gaps: %s", self.name, plan.msn,
                        ", ".join(f"{g.rendition} {g.msn}" for g in plan.gaps))
        packaging = PackagerSettings(part_target=part_target(),
                                     max_segment_duration=target_duration())
        session = TranscodeSession(
            self.ladder, self._rung_output, packaging, name=self.name,
            on_end=self._on_end,
            # The follower waits instead of dropping: catching up runs as fast as the
            # encoders go, and falling behind is dealt with a segment at a time.
            shed=False,
        )
        follower = SourceFollower(self.index, self.stream, session, start_msn=plan.msn,
                                  source_end=self.source_end)
        try:
            reason = await follower.run(self.stop)
        except FellBehind as error:
            reason = f"fell behind ({error})"
        except Exception as error:
            log.exception("%s: following the source failed", self.name)
            reason = f"failed ({type(error).__name__}: {error})"
        if self.stop.is_set() or reason not in ("ended", "silent", "gone"):
            await self._abandon(session)
            return "lease lost" if self.stop.is_set() else reason
        session.end()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_WAIT):
                await self.finished.wait()
        workers = [r.output.worker for r in self.rungs.values() if r.output is not None]
        if workers:
            await asyncio.wait(workers, timeout=END_WAIT)
        if plan.restart:
            await asyncio.to_thread(self._rebuild_vods)
        return reason

    def _on_end(self, _stats: object) -> None:
        """The session's end (on its thread): the task may finish."""
        self.loop.call_soon_threadsafe(self.finished.set)

    def _rung_output(self, name: str) -> PackagerOutput:
        grant, store = self.grant, segment_store()
        output = LoopOutput(
            self.loop, lambda: DeliveryOutput(grant, self.fenced, store, rendition=name)
        )
        self.rungs[name] = output
        return output

    async def _abandon(self, session: Any) -> None:
        for rung in self.rungs.values():
            await rung.abandon()
        session.end()  # its threads stop; what they still deliver goes nowhere
        await asyncio.to_thread(session.join, END_WAIT)

    def _rebuild_vods(self) -> None:
        """A restarted session's outputs know only their own segments: each rung's VOD is
        written again from everything its sessions stored."""
        from .vod import rebuild_vod

        store = segment_store()
        for name in self.rungs:
            try:
                rebuild_vod(store, self.grant.session_id, self.started_at, name, replace=True)
            except Exception:
                log.exception("%s: the VOD of %s could not be rebuilt", self.name, name)


# ---------------------------------------------------------------------------------------
# The ingest's side


_async_clients: dict[int, redis.asyncio.Redis] = {}


def _async_client() -> redis.asyncio.Redis:
    """This event loop's Redis client for the ingest's end marks."""
    key = id(asyncio.get_running_loop())
    with _lock:
        client = _async_clients.get(key)
        if client is None:
            client = _async_clients[key] = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        return client


class HandoffOutput:
    """The source's `DeliveryOutput` of a cluster publish, which hands the end over to
    the broadcast's transcode session, wherever it runs: at the publish's end it writes
    where the source's last part is, and ends the stream only once the session has
    finished its rungs (its lease released), or after `END_WAIT`. A broadcast nobody
    transcodes ends at once."""

    def __init__(self, source: DeliveryOutput) -> None:
        self.source = source
        self.last: tuple[int, int] = (-1, -1)
        self.ending: asyncio.Task[None] | None = None

    def init(self, info: InitInfo, data: bytes) -> None:
        self.source.init(info, data)

    def part(self, info: PartInfo, data: bytes) -> None:
        self.last = (info.msn, info.index)
        self.source.part(info, data)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.source.segment(info, data)

    def end(self) -> None:
        self.ending = asyncio.get_running_loop().create_task(self._end())

    async def _end(self) -> None:
        session_id = self.source.grant.session_id
        try:
            client = _async_client()
            await client.set(source_end_key(session_id), f"{self.last[0]} {self.last[1]}",
                             ex=300)
            deadline = time.monotonic() + END_WAIT
            lease = session_lease_key(session_id)
            while await client.exists(lease):
                if time.monotonic() > deadline:
                    log.warning("session %d: the transcoder did not finish within %.0f s",
                                session_id, END_WAIT)
                    break
                await asyncio.sleep(0.1)
        except (RedisError, OSError) as error:
            log.warning("session %d: could not hand the end to the transcoder: %s",
                        session_id, error)
        finally:
            self.source.end()


def make_handoff_output(grant: Grant) -> PackagerOutput:
    from .live import live_index

    return HandoffOutput(DeliveryOutput(grant, live_index(), segment_store()))
