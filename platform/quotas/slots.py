"""Fast, exact admission: the quota's slots decided atomically in Redis, recorded in
PostgreSQL, which stays the source of truth.

Why: admitting under `select_for_update` of the quota row serialises every publish on one
row lock for the whole admission transaction: 60 publishes at once over two ingest nodes
took p50 1.9 s. Here one Lua script decides (a Redis round trip, every node sees the same
count), and the database write that follows takes no shared lock.

The ledger is two sorted sets of channel ids (slots held, transcode slots held), scored by
when the database last confirmed them (or when they were claimed):
- `claim` admits a channel when fewer than the quota hold a slot (partners up to the whole
  quota, others up to the quota less the partner reserve) and, while transcode slots are
  free, gives it one; the caller then writes the session and its `SlotLease`, and releases
  the claim if that write fails;
- `release` removes channels whose broadcast ended (after the commit that ended it);
- `reconcile` (every ingest node, every 2 s) re-adds every channel the database holds a
  lease for, scored now, and drops members the database has not confirmed for `MARGIN`
  seconds: a claim whose node crashed before writing its lease. A claim still being
  written is younger than that (the ingest gives up on an admission after 15 s).

So the ledger never counts fewer slots than the database holds leases (it may count a
crashed claim for up to `MARGIN` s: a publish refused a moment early, never one admitted
over the quota). If Redis loses its data, the `synced` marker goes with it and the next
claim rebuilds the ledger from the database first. Without Redis (the embedded mode) or
when it cannot be reached, admission takes the quota row lock as before: exact on its
own; while Redis is coming and going, the two ways can each admit the last slot once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

if TYPE_CHECKING:
    from redis.commands.core import Script
    from redis.typing import EncodableT

log = logging.getLogger(__name__)

PREFIX = "golive:slots:"
MARGIN = 30.0  # s a claim may go unconfirmed by the database before it is dropped

# ARGV: now (ms), the quota, the slots open to all, then per claim in order: the channel,
# 1 for a partner, the transcode slots it may take (0: it has no ladder). Answers three
# values per claim: outcome, slots held (this claim included when admitted), transcoded.
_CLAIM = """
if redis.call('EXISTS', KEYS[3]) == 0 then return {'unsynced'} end
local now, max_streams, open_to_all = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local answers = {}
local function answer(outcome, held, transcoded)
  answers[#answers + 1] = outcome
  answers[#answers + 1] = held
  answers[#answers + 1] = transcoded
end
for i = 4, #ARGV, 3 do
  local member = ARGV[i]
  local held = redis.call('ZCARD', KEYS[1])
  if redis.call('ZSCORE', KEYS[1], member) then
    answer('exists', held, 0)
  elseif held >= max_streams then
    answer('capacity', held, 0)
  elseif ARGV[i + 1] == '0' and held >= open_to_all then
    answer('partner_reserve', held, 0)
  else
    redis.call('ZADD', KEYS[1], now, member)
    local transcoded = 0
    if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[i + 2]) then
      redis.call('ZADD', KEYS[2], now, member)
      transcoded = 1
    end
    answer('admitted', held + 1, transcoded)
  end
end
return answers
"""

_CLAIM_TRANSCODE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# ARGV: now (ms), margin (ms), count of slot members, then the slot members, then transcode members.
_RECONCILE = """
local now = ARGV[1]
local slots = tonumber(ARGV[3])
for i = 4, 3 + slots do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
for i = 4 + slots, #ARGV do redis.call('ZADD', KEYS[2], now, ARGV[i]) end
local before = tonumber(now) - tonumber(ARGV[2])
local dropped = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. before)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. before)
redis.call('SET', KEYS[3], now)
return dropped
"""


def _now_ms() -> int:
    # Whole milliseconds: Lua turns numbers into text with 14 significant digits, which
    # would round a fractional epoch time.
    return int(time.time() * 1000)


class LedgerUnavailable(Exception):
    """Redis could not be reached: decide under the quota row lock instead."""


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """A publish asking for a slot: its channel, whether a partner's, and how many
    transcode slots the quota has for it (0 when its channel has no ladder)."""

    channel_id: int
    partner: bool
    max_transcodes: int


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: str  # admitted, capacity, partner_reserve, exists
    held: int  # slots held, this claim included when admitted
    transcoded: bool


class SlotLedger:
    def __init__(self, url: str, prefix: str = PREFIX) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.keys = [prefix + "streams", prefix + "transcodes", prefix + "synced"]
        self._claim = self._redis.register_script(_CLAIM)
        self._claim_transcode = self._redis.register_script(_CLAIM_TRANSCODE)
        self._reconcile = self._redis.register_script(_RECONCILE)

    def claim(
        self, channel_id: int, *, max_streams: int, open_to_all: int, partner: bool,
        max_transcodes: int,
    ) -> Claim:
        """Decides one publish (see `claim_many`)."""
        return self.claim_many([ClaimRequest(channel_id, partner, max_transcodes)],
                               max_streams=max_streams, open_to_all=open_to_all)[0]

    def claim_many(
        self, requests: Sequence[ClaimRequest], *, max_streams: int, open_to_all: int
    ) -> list[Claim]:
        """Decides publishes in the order given, in one atomic script (one round trip for
        a batch the gatekeeper gathered): each sees the slots the ones before it took.
        Rebuilds the ledger from the database first when Redis has lost it. Raises
        LedgerUnavailable when Redis cannot be reached."""
        if not requests:
            return []
        args: list[EncodableT] = [_now_ms(), max_streams, open_to_all]
        for request in requests:
            args += [request.channel_id, int(request.partner), request.max_transcodes]
        for _ in range(2):
            answers = self._call(self._claim, args)
            if answers[0] != b"unsynced":
                return [
                    Claim(outcome.decode(), int(held), bool(transcoded))
                    for outcome, held, transcoded in zip(
                        answers[::3], answers[1::3], answers[2::3], strict=True)
                ]
            self.reconcile()
        raise LedgerUnavailable("the slot ledger could not be rebuilt")

    def claim_transcode(self, channel_id: int, max_transcodes: int) -> bool:
        """A transcode slot for a live channel (an upgrade from source-only)."""
        return bool(self._call(self._claim_transcode, [_now_ms(), channel_id,
                                                       max_transcodes], keys=[1, 2]))

    def note(self, channel_id: int, transcoded: bool) -> None:
        """Records a slot the database granted without a claim (the locked path)."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self.keys[0], {str(channel_id): _now_ms()})
                if transcoded:
                    pipe.zadd(self.keys[1], {str(channel_id): _now_ms()})
                pipe.execute()
        except Exception as error:  # the next reconciliation adds it
            log.warning("could not note a slot in Redis: %s", error)

    def release(self, channel_ids: Iterable[int]) -> None:
        ids = [str(i) for i in channel_ids]
        if not ids:
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys[0], *ids)
                pipe.zrem(self.keys[1], *ids)
                pipe.execute()
        except Exception as error:
            # Reconciliation drops them within MARGIN s; meanwhile their slots stay taken.
            log.warning("could not release %d slot(s) in Redis: %s", len(ids), error)

    def reconcile(self) -> int:
        """Makes the ledger hold every lease the database holds; returns how many
        unconfirmed claims it dropped. Raises LedgerUnavailable when Redis is away."""
        from .models import SlotLease

        leases = list(
            SlotLease.objects.values_list("session__channel_id", "session__transcoded")
        )
        streams = [channel for channel, _ in leases]
        transcoded = [channel for channel, on in leases if on]
        dropped = int(self._call(self._reconcile, [_now_ms(), int(MARGIN * 1000), len(streams),
                                                   *streams, *transcoded]))
        if dropped:
            log.warning("slot ledger: dropped %d claim(s) no lease confirmed", dropped)
        return dropped

    def counts(self) -> tuple[int, int]:
        """Slots and transcode slots the ledger holds."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.keys[0])
                pipe.zcard(self.keys[1])
                streams, transcodes = pipe.execute()
        except Exception as error:
            raise LedgerUnavailable(str(error)) from error
        return int(streams), int(transcodes)

    def clear(self) -> None:
        self._redis.delete(*self.keys)

    def _call(
        self, script: Script, args: Sequence[EncodableT], keys: list[int] | None = None
    ) -> Any:
        import redis

        chosen = self.keys if keys is None else [self.keys[i] for i in keys]
        try:
            return script(keys=chosen, args=args)
        except redis.RedisError as error:
            raise LedgerUnavailable(str(error)) from error


@cache
def _ledger(url: str) -> SlotLedger:
    return SlotLedger(url)


def ledger() -> SlotLedger | None:
    """The ledger when Redis is configured (cluster mode) and GOLIVE_SLOT_LEDGER is on,
    else None."""
    if not settings.REDIS_URL or not settings.GOLIVE_SLOT_LEDGER:
        return None
    return _ledger(settings.REDIS_URL)


def release_sessions(session_ids: Iterable[int]) -> None:
    """After the current transaction commits: frees the ledger slots of these sessions'
    channels (their broadcasts ended and their leases are gone)."""
    current = ledger()
    if current is None:
        return
    ids = list(session_ids)
    if not ids:
        return
    from streams.models import LiveSession

    channels = list(LiveSession.objects.filter(pk__in=ids).values_list("channel_id", flat=True))
    transaction.on_commit(lambda: current.release(channels))


def release_channels(channel_ids: Iterable[int]) -> None:
    current = ledger()
    if current is not None:
        ids = list(channel_ids)
        transaction.on_commit(lambda: current.release(ids))


def reconcile() -> int:
    """The housekeeping call (every ingest node, every 2 s): 0 without Redis or when it
    cannot be reached (admissions then take the quota lock)."""
    current = ledger()
    if current is None:
        return 0
    try:
        return current.reconcile()
    except LedgerUnavailable as error:
        log.warning("slot ledger not reconciled: %s", error)
        return 0
