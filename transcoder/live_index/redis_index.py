"""The live index in Redis (cluster mode): the ingest writes, N origin processes read and wait.

Data layout, for prefix P (default ``golive:live``), stream S and rendition R. The stream is
the hash tag, so one stream's keys share a cluster slot and one script can touch them all:

    P:{S}:stream    hash   ended=1 once ended; r:<R>=1 for every rendition (end/remove)
    P:{S}:R:meta    hash   v version, iv/iu init version/url, pt part target, td target
                           duration, next msn being built, hm/hi newest part, cm newest
                           complete msn, ms media sequence, ds discontinuity sequence,
                           pdt current segment's date, ended, rd the rendition's
                           description (Rendition.to_text)
    P:{S}:R:segs    list   complete segments, oldest first, msns contiguous from ms:
                           "msn dur pdt gap disc nparts|idx dur ind;…|url"
    P:{S}:R:parts   list   the current segment's parts: "idx dur ind"
    P:{S}:R:data    hash   i:<version> init bytes (current and previous), p:<msn>:<idx> part

Every write is one Lua script (one round trip, atomic): it checks order, writes, trims the
window, bumps the version, refreshes the TTL of every key of the rendition (so a crashed
ingest leaves nothing after ``ttl_seconds``) and PUBLISHes the new position on
``P:{S}:R:ev`` as "version head_msn head_idx complete_msn ended" ("x" when removed).
Versions are max(previous + 1, server time in µs), so a re-created rendition never repeats
one. A snapshot is one MULTI/EXEC round trip (HGETALL + 2 LRANGE).

Waiting: pub/sub with a snapshot re-check, not Streams. Each process has ONE subscriber
connection, subscribed to the channels of the renditions it serves, whose reader task fans
events out to local asyncio futures: thousands of waiters cost a dict entry each and no
connection. A waiter checks state only after its channel's subscription is confirmed, so no
event can fall between its check and its sleep; events carry the whole position, so a wake
needs no round trip. Streams (XREAD BLOCK) would replay missed events, but one blocking
reader cannot add keys to a read in flight and old entries would need trimming; with
pub/sub the state itself is the source of truth and a re-check after (re)subscribing covers
any event lost in a reconnect. The subscription also keeps the last snapshot per rendition
valid until the next event: concurrent readers share one fetch per version (single flight),
so 2,000 woken viewers make one round trip, not 2,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError, ResponseError

from transcoder.live_index.model import (
    DEFAULT_TTL_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    MAX_SEGMENT_PARTS,
    WHOLE_SEGMENT,
    FencedError,
    LiveIndexError,
    OrderError,
    PartRef,
    Position,
    RenditionWindow,
    SegmentRef,
    StreamEndedError,
    UnknownRenditionError,
    check_names,
    check_part,
    check_segment,
    check_stream,
)
from transcoder.renditions import Rendition

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "golive:live"

# Shared by every write script. KEYS: stream, meta, segs, parts, data. ARGV[1] channel,
# ARGV[2] TTL in ms, ARGV[3] window seconds; the operation's own arguments follow. Each
# returns {result, event published or ''}, so the writing process learns the new position
# (and drops its cached window) without waiting for its own event.
_PRELUDE = """
local stream_key, meta, segs, parts, data = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, ttl, window = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function changed()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local v = tonumber(redis.call('HGET', meta, 'v') or '0')
  if now > v then v = now else v = v + 1 end
  redis.call('HSET', meta, 'v', string.format('%.0f', v))
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
  local f = redis.call('HMGET', meta, 'v', 'hm', 'hi', 'cm', 'ended')
  local payload = f[1] .. ' ' .. (f[2] or '-1') .. ' ' .. (f[3] or '-1') .. ' '
    .. (f[4] or '-1') .. ' ' .. (f[5] or '0')
  redis.call('PUBLISH', channel, payload)
  return payload
end

local function must_exist()
  if not redis.call('HGET', meta, 'iv') then
    return redis.error_reply('NOINIT no such rendition: set_init first')
  end
end

local function set_url(msn, url)
  local ms = tonumber(redis.call('HGET', meta, 'ms') or '-1')
  if ms < 0 or msn < ms then return {0, ''} end
  local entry = redis.call('LINDEX', segs, msn - ms)
  if not entry or string.match(entry, '^%S+ %S+ %S+ (%d)') == '1' then return {0, ''} end
  local a = string.find(entry, '|', 1, true)
  local b = string.find(entry, '|', a + 1, true)
  if string.sub(entry, b + 1) == url then return {0, ''} end
  redis.call('LSET', segs, msn - ms, string.sub(entry, 1, b) .. url)
  local payload = changed()
  return {1, payload}
end
"""

# ARGV[4] rendition, [5] init bytes, [6] part target, [7] target duration, [8] url or ''.
_SET_INIT = _PRELUDE + """
if redis.call('HGET', stream_key, 'ended') == '1' then
  return redis.error_reply('ENDED the stream has ended')
end
local current = tonumber(redis.call('HGET', meta, 'iv') or '0')
local version = current
if current == 0 or redis.call('HGET', data, 'i:' .. current) ~= ARGV[5] then
  version = current + 1
  redis.call('HSET', data, 'i:' .. version, ARGV[5])
  if current > 1 then redis.call('HDEL', data, 'i:' .. (current - 1)) end
  redis.call('HSET', meta, 'iv', version)
  redis.call('HDEL', meta, 'iu')
end
if ARGV[8] ~= '' then redis.call('HSET', meta, 'iu', ARGV[8]) end
redis.call('HSET', meta, 'pt', ARGV[6])
if tonumber(ARGV[7]) > tonumber(redis.call('HGET', meta, 'td') or '0') then
  redis.call('HSET', meta, 'td', ARGV[7])
end
redis.call('HSET', stream_key, 'r:' .. ARGV[4], '1')
local payload = changed()
return {version, payload}
"""

# ARGV[4] description. Beside the init, with the rendition's TTL; no new version (the
# window is unchanged), so nobody re-renders a media playlist for it.
_DESCRIBE = _PRELUDE + """
local missing = must_exist()
if missing then return missing end
if redis.call('HGET', meta, 'ended') == '1' then
  return redis.error_reply('ENDED the stream has ended')
end
redis.call('HSET', meta, 'rd', ARGV[4])
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
return {1, ''}
"""

# ARGV[4] msn, [5] index, [6] list entry, [7] bytes, [8] program date time or '',
# [9] most parts a segment may have.
_ADD_PART = _PRELUDE + """
local missing = must_exist()
if missing then return missing end
if redis.call('HGET', meta, 'ended') == '1' then
  return redis.error_reply('ENDED the stream has ended')
end
local msn, idx = tonumber(ARGV[4]), tonumber(ARGV[5])
local nxt = tonumber(redis.call('HGET', meta, 'next') or '-1')
if nxt < 0 then nxt = msn end
local n = redis.call('LLEN', parts)
if msn < nxt or (msn == nxt and idx < n) then return {0, ''} end
if msn ~= nxt or idx ~= n then
  return redis.error_reply('ORDER part ' .. ARGV[4] .. '.' .. ARGV[5]
    .. ' is not the next one (' .. nxt .. '.' .. n .. ')')
end
if n >= tonumber(ARGV[9]) then
  return redis.error_reply('ORDER segment ' .. ARGV[4] .. ' has ' .. n
    .. ' parts: complete it first')
end
redis.call('RPUSH', parts, ARGV[6])
redis.call('HSET', data, 'p:' .. ARGV[4] .. ':' .. ARGV[5], ARGV[7])
redis.call('HSET', meta, 'next', ARGV[4], 'hm', ARGV[4], 'hi', ARGV[5])
if idx == 0 and ARGV[8] ~= '' then redis.call('HSET', meta, 'pdt', ARGV[8]) end
local payload = changed()
return {1, payload}
"""

# ARGV[4] msn, [5] entry head "msn dur pdt gap disc", [6] parts the caller names (-1: any),
# [7] url or '', [8] duration, [9] gap 0/1.
_COMPLETE = _PRELUDE + """
local missing = must_exist()
if missing then return missing end
local msn = tonumber(ARGV[4])
local cm = tonumber(redis.call('HGET', meta, 'cm') or '-1')
if cm >= 0 and msn <= cm then
  if ARGV[7] ~= '' and ARGV[9] == '0' then return set_url(msn, ARGV[7]) end
  return {0, ''}
end
if redis.call('HGET', meta, 'ended') == '1' then
  return redis.error_reply('ENDED the stream has ended')
end
local nxt = tonumber(redis.call('HGET', meta, 'next') or '-1')
if nxt >= 0 and msn ~= nxt then
  return redis.error_reply('ORDER segment ' .. ARGV[4] .. ' is not the current one ('
    .. nxt .. '): mark the ones in between as gaps')
end
local n = redis.call('LLEN', parts)
local claimed = tonumber(ARGV[6])
if ARGV[9] == '0' and claimed >= 0 and claimed ~= n then
  return redis.error_reply('ORDER segment ' .. ARGV[4] .. ' names ' .. claimed
    .. ' parts, ' .. n .. ' were published')
end
local body
if ARGV[9] == '1' then
  for i = 0, n - 1 do redis.call('HDEL', data, 'p:' .. ARGV[4] .. ':' .. i) end
  body = ' 0||'
else
  body = ' ' .. n .. '|' .. table.concat(redis.call('LRANGE', parts, 0, -1), ';') .. '|'
    .. ARGV[7]
end
redis.call('RPUSH', segs, ARGV[5] .. body)
redis.call('DEL', parts)
redis.call('HSET', meta, 'next', string.format('%.0f', msn + 1), 'cm', ARGV[4])
redis.call('HDEL', meta, 'pdt')
if not redis.call('HGET', meta, 'ms') then redis.call('HSET', meta, 'ms', ARGV[4]) end
local rounded = math.floor(tonumber(ARGV[8]) + 0.5)
if rounded > tonumber(redis.call('HGET', meta, 'td') or '0') then
  redis.call('HSET', meta, 'td', rounded)
end
-- Trim: drop the oldest segments (and their parts' bytes) until the rest span at most the
-- window; the same left-to-right sums as model.segments_to_trim.
local entries = redis.call('LRANGE', segs, 0, -1)
local durations, total = {}, 0
for i, entry in ipairs(entries) do
  durations[i] = tonumber(string.match(entry, '^%S+ (%S+) '))
  total = total + durations[i]
end
local ms = tonumber(redis.call('HGET', meta, 'ms'))
local dropped, discontinuities = 0, 0
while #entries - dropped > 1 and total > window do
  local disc, count = string.match(entries[dropped + 1], '^%S+ %S+ %S+ %d (%d) (%d+)|')
  local old = string.format('%.0f', ms + dropped)
  for i = 0, tonumber(count) - 1 do redis.call('HDEL', data, 'p:' .. old .. ':' .. i) end
  if disc == '1' then discontinuities = discontinuities + 1 end
  total = total - durations[dropped + 1]
  dropped = dropped + 1
end
if dropped > 0 then
  redis.call('LTRIM', segs, dropped, -1)
  redis.call('HSET', meta, 'ms', string.format('%.0f', ms + dropped))
  redis.call('HINCRBY', meta, 'ds', discontinuities)
end
local payload = changed()
return {1, payload}
"""

# ARGV[4] msn, [5] url.
_MARK_STORED = _PRELUDE + """
local missing = must_exist()
if missing then return missing end
local msn = tonumber(ARGV[4])
if msn > tonumber(redis.call('HGET', meta, 'cm') or '-1') then
  return redis.error_reply('ORDER segment ' .. ARGV[4] .. ' is not complete')
end
return set_url(msn, ARGV[5])
"""

# KEYS: stream, then meta, segs, parts, data of each rendition. ARGV[1] TTL ms, [2] count,
# then the channels, then the rendition names. -1 when the renditions changed meanwhile.
_END = """
local ttl, k = ARGV[1], tonumber(ARGV[2])
local known = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 'r:' then known = known + 1 end
end
if known ~= k then return -1 end
for i = 1, k do
  if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[2 + k + i]) == 0 then return -1 end
end
redis.call('HSET', KEYS[1], 'ended', '1')
redis.call('PEXPIRE', KEYS[1], ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, k do
  local meta = KEYS[2 + (i - 1) * 4]
  if redis.call('EXISTS', meta) == 1 and redis.call('HGET', meta, 'ended') ~= '1' then
    local v = tonumber(redis.call('HGET', meta, 'v') or '0')
    if now > v then v = now else v = v + 1 end
    redis.call('HSET', meta, 'ended', '1', 'v', string.format('%.0f', v))
    local f = redis.call('HMGET', meta, 'v', 'hm', 'hi', 'cm')
    redis.call('PUBLISH', ARGV[2 + i], f[1] .. ' ' .. (f[2] or '-1') .. ' '
      .. (f[3] or '-1') .. ' ' .. (f[4] or '-1') .. ' 1')
  end
  for j = 0, 3 do redis.call('PEXPIRE', KEYS[2 + (i - 1) * 4 + j], ttl) end
end
return k
"""

# Same KEYS and ARGV as _END (without the TTL's use).
_REMOVE = """
local k = tonumber(ARGV[2])
local known = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 'r:' then known = known + 1 end
end
if known ~= k then return -1 end
for i = 1, k do
  if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[2 + k + i]) == 0 then return -1 end
end
redis.call('DEL', unpack(KEYS))
for i = 1, k do redis.call('PUBLISH', ARGV[2 + i], 'x') end
return k
"""

# KEYS: meta, data. ARGV[1] version or ''.
_GET_INIT = """
local v = ARGV[1]
local current = redis.call('HGET', KEYS[1], 'iv')
if not current then return false end
if v == '' then v = current end
local n = tonumber(v)
if n ~= tonumber(current) and n ~= tonumber(current) - 1 then return false end
return redis.call('HGET', KEYS[2], 'i:' .. v)
"""

# KEYS: meta, segs, data. ARGV[1] msn. The parts' bytes, or false.
_GET_SEGMENT = """
local ms = tonumber(redis.call('HGET', KEYS[1], 'ms') or '-1')
local msn = tonumber(ARGV[1])
if ms < 0 or msn < ms then return false end
local entry = redis.call('LINDEX', KEYS[2], msn - ms)
if not entry then return false end
local gap, count = string.match(entry, '^%S+ %S+ %S+ (%d) %d (%d+)|')
if gap == '1' or count == '0' then return false end
local fields = {}
for i = 0, tonumber(count) - 1 do fields[i + 1] = 'p:' .. ARGV[1] .. ':' .. i end
local chunks = redis.call('HMGET', KEYS[3], unpack(fields))
for i = 1, #chunks do if not chunks[i] then return false end end
return chunks
"""

# A fenced write (`FencedLiveIndex`): KEYS[6] is the writer's lease, the last ARGV its
# token. Checked before anything is written, in the same script, so a writer whose lease
# lapsed cannot write once it is gone or another holds it, however long it was paused.
_FENCE = """
if redis.call('GET', KEYS[6]) ~= ARGV[#ARGV] then
  return redis.error_reply('FENCED the lease ' .. KEYS[6] .. ' is not held by this writer')
end
"""

_ERRORS: dict[str, type[Exception]] = {
    "ORDER": OrderError,
    "NOINIT": UnknownRenditionError,
    "ENDED": StreamEndedError,
    "FENCED": FencedError,
}


def lease_key(prefix: str, stream: str, holder: str) -> str:
    """The key of a lease on a stream's writes (``holder`` names who takes it, e.g.
    "transcoder"), in the stream's cluster slot, so a fenced write checks it in the same
    script (`RedisLiveIndex.fenced`). ``prefix`` is the index's."""
    check_names(stream, holder)
    return f"{prefix}:{{{stream}}}:lease:{holder}"


def _raise_as_index_error(error: ResponseError) -> None:
    code, _, message = str(error).partition(" ")
    kind = _ERRORS.get(code)
    if kind is not None:
        raise kind(message) from None


def _number(value: float) -> str:
    # repr round-trips a float exactly, and Lua's tonumber reads it back bit for bit.
    return repr(float(value))


@dataclass(slots=True)
class _Flight:
    """One snapshot read in progress, shared by every caller it is recent enough for."""

    epoch: int
    known_version: int
    task: asyncio.Task[RenditionWindow | None]


@dataclass(slots=True, eq=False)
class _Watch:
    """This process's view of one rendition: its subscription, last position and window."""

    stream: str
    rendition: str
    channel: bytes
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    # Bumped whenever the subscription is (re)confirmed or lost: anything read under an
    # older epoch may have missed events.
    epoch: int = 0
    position: Position | None = None
    position_epoch: int = -1
    window: RenditionWindow | None = None
    window_epoch: int = -1
    window_read_at: float = 0.0
    flight: _Flight | None = None
    waiters: dict[tuple[int, int], set[asyncio.Future[bool | None]]] = field(
        default_factory=dict
    )
    users: int = 0
    idle_since: float = 0.0

    def fresh(self) -> bool:
        """Whether ``position`` is current: read or heard since the subscription was
        confirmed, so every later change will reach us as an event."""
        return self.confirmed.is_set() and self.position_epoch == self.epoch

    def learn(self, position: Position | None, epoch: int, force: bool = False) -> None:
        if epoch != self.epoch:
            return
        if (
            force
            or not self.fresh()
            or self.position is None
            or (position is not None and position.version > self.position.version)
        ):
            self.position = position
            self.position_epoch = epoch

    def release(self, outcome: bool | None, only_due: bool = False) -> None:
        """Resolves waiters: those the position satisfies (``only_due``) or all."""
        for key in list(self.waiters):
            if only_due and (self.position is None or not self.position.satisfies(*key)):
                continue
            for future in self.waiters.pop(key):
                if not future.done():
                    future.set_result(outcome)


class _PubSub(PubSub):
    """redis-py's PubSub re-subscribes by itself after a reconnect; this tells us when, since
    whatever was published while the connection was down is lost."""

    reconnected: Callable[[], None] | None = None

    async def on_connect(self, connection: Connection) -> None:
        if self.reconnected is not None:
            self.reconnected()
        await super().on_connect(connection)


class RedisLiveIndex:
    """`LiveIndex` over Redis. Create one per process and share it: it holds the process's
    single subscriber connection. Bound to the event loop that first uses it.

    ``client`` must return bytes (``decode_responses=False``); a pool that blocks at a
    bound (`from_url` makes one) keeps a burst of requests from opening a connection each.
    ``heartbeat_seconds`` is how often the subscriber proves it is alive (a dead connection
    is replaced after three silent beats); ``linger_seconds`` how long a rendition nobody
    asks about stays subscribed; ``cache_seconds`` caps how long a snapshot is reused
    without an event (keys that expire publish nothing).
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        heartbeat_seconds: float = 5.0,
        linger_seconds: float = 30.0,
        cache_seconds: float = 2.0,
        owns_client: bool = False,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the live index needs a Redis client with decode_responses=False")
        if window_seconds <= 0 or ttl_seconds <= 0:
            raise ValueError("window_seconds and ttl_seconds must be > 0")
        self._client = client
        self._owns_client = owns_client
        self.prefix = prefix
        self.window_seconds = window_seconds
        self.ttl_seconds = ttl_seconds
        self._ttl_ms = str(max(1, round(ttl_seconds * 1000)))
        self._heartbeat = heartbeat_seconds
        self._linger = linger_seconds
        self._cache_seconds = cache_seconds
        self._set_init = client.register_script(_SET_INIT)
        self._add_part = client.register_script(_ADD_PART)
        self._complete = client.register_script(_COMPLETE)
        self._mark_stored = client.register_script(_MARK_STORED)
        self._describe = client.register_script(_DESCRIBE)
        self._end = client.register_script(_END)
        self._remove = client.register_script(_REMOVE)
        self._get_init = client.register_script(_GET_INIT)
        self._get_segment = client.register_script(_GET_SEGMENT)
        # The same writes, fenced by a lease (`fenced`).
        self._fenced_scripts = {
            id(script): client.register_script(text.replace(_PRELUDE, _PRELUDE + _FENCE, 1))
            for script, text in ((self._set_init, _SET_INIT), (self._add_part, _ADD_PART),
                                 (self._complete, _COMPLETE), (self._mark_stored, _MARK_STORED),
                                 (self._describe, _DESCRIBE))
        }
        self._watches: dict[bytes, _Watch] = {}
        # A part's read in flight, with the rendition's version this process knew when it
        # began (see get_part).
        self._part_flights: dict[
            tuple[str, str, int, int], tuple[int, asyncio.Task[bytes | None]]
        ] = {}
        self._control = f"{prefix}:ctl:{uuid.uuid4().hex}".encode()
        self._pubsub: _PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._want: set[bytes] = set()
        self._unwant: set[bytes] = set()
        self._commands = asyncio.Event()
        self._listening = asyncio.Event()
        self._heard_at = 0.0
        self._closed = False
        # Round trips made for snapshots: what the fan-out saves shows up here.
        self.snapshot_reads = 0

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 64, **options: Any) -> RedisLiveIndex:
        """An index with its own client on ``url``; `aclose` closes the client."""
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5)
        return cls(Redis(connection_pool=pool), owns_client=True, **options)

    # -- keys -----------------------------------------------------------------------------

    def _stream_key(self, stream: str) -> str:
        return f"{self.prefix}:{{{stream}}}:stream"

    def _keys(self, stream: str, rendition: str) -> list[str]:
        base = f"{self.prefix}:{{{stream}}}:{rendition}"
        return [self._stream_key(stream), f"{base}:meta", f"{base}:segs", f"{base}:parts",
                f"{base}:data"]

    def _channel(self, stream: str, rendition: str) -> bytes:
        return f"{self.prefix}:{{{stream}}}:{rendition}:ev".encode()

    def lease_key(self, stream: str, holder: str) -> str:
        return lease_key(self.prefix, stream, holder)

    def fenced(self, stream: str, holder: str, token: str) -> FencedLiveIndex:
        """This index for a writer holding the lease ``lease_key(stream, holder)`` with
        ``token``: its writes to ``stream`` are refused (FencedError) as soon as the lease
        holds anything else. Reads are this index's."""
        return FencedLiveIndex(self, stream, self.lease_key(stream, holder), token)

    async def _write(
        self, script: Any, stream: str, rendition: str, *args: bytes | str,
        fence: tuple[str, str] | None = None,
    ) -> int:
        channel = self._channel(stream, rendition)
        argv = [channel, self._ttl_ms, _number(self.window_seconds)]
        keys = self._keys(stream, rendition)
        if fence is not None:
            script = self._fenced_scripts[id(script)]
            keys.append(fence[0])
            args = (*args, fence[1])
        try:
            result, event = await script(keys=keys, args=[*argv, *args])
        except ResponseError as error:
            _raise_as_index_error(error)
            raise
        if event:
            # Read-your-writes in this process: the event on its way would do the same.
            self._heard(channel, event)
        return int(result)

    # -- writes ---------------------------------------------------------------------------

    async def set_init(
        self,
        stream: str,
        rendition: str,
        data: bytes,
        part_target: float,
        *,
        target_duration: int,
        url: str | None = None,
        fence: tuple[str, str] | None = None,
    ) -> int:
        check_names(stream, rendition)
        if not part_target > 0 or target_duration < 1:
            raise ValueError("part_target must be > 0 and target_duration >= 1")
        version = await self._write(
            self._set_init, stream, rendition, rendition, bytes(data), _number(part_target),
            str(int(target_duration)), url or "", fence=fence,
        )
        return version

    async def describe(
        self, stream: str, description: Rendition, *, fence: tuple[str, str] | None = None
    ) -> None:
        check_names(stream, description.name)
        await self._write(self._describe, stream, description.name, description.to_text(),
                          fence=fence)

    async def add_part(
        self,
        stream: str,
        rendition: str,
        part: PartRef,
        data: bytes,
        *,
        program_date_time: float | None = None,
        fence: tuple[str, str] | None = None,
    ) -> None:
        check_names(stream, rendition)
        check_part(part)
        entry = f"{part.index} {_number(part.duration)} {int(part.independent)}"
        await self._write(
            self._add_part, stream, rendition, str(part.msn), str(part.index), entry,
            bytes(data), "" if program_date_time is None else _number(program_date_time),
            str(MAX_SEGMENT_PARTS), fence=fence,
        )

    async def complete_segment(
        self, stream: str, rendition: str, segment: SegmentRef, *,
        fence: tuple[str, str] | None = None,
    ) -> None:
        check_names(stream, rendition)
        check_segment(segment.msn, segment.duration, segment.program_date_time)
        await self._completed(stream, rendition, segment, fence)

    async def mark_gap(
        self,
        stream: str,
        rendition: str,
        msn: int,
        duration: float,
        program_date_time: float,
        *,
        discontinuity: bool = False,
        fence: tuple[str, str] | None = None,
    ) -> None:
        check_names(stream, rendition)
        check_segment(msn, duration, program_date_time)
        await self._completed(
            stream,
            rendition,
            SegmentRef(msn, duration, program_date_time, gap=True, discontinuity=discontinuity),
            fence,
        )

    async def _completed(
        self, stream: str, rendition: str, segment: SegmentRef, fence: tuple[str, str] | None
    ) -> None:
        head = (
            f"{segment.msn} {_number(segment.duration)} {_number(segment.program_date_time)}"
            f" {int(segment.gap)} {int(segment.discontinuity)}"
        )
        await self._write(
            self._complete, stream, rendition, str(segment.msn), head,
            str(len(segment.parts) if segment.parts else -1),
            "" if segment.gap else segment.url or "", _number(segment.duration),
            "1" if segment.gap else "0", fence=fence,
        )

    async def mark_stored(
        self, stream: str, rendition: str, msn: int, url: str, *,
        fence: tuple[str, str] | None = None,
    ) -> None:
        check_names(stream, rendition)
        if not url:
            raise ValueError("a stored segment needs a URL")
        await self._write(self._mark_stored, stream, rendition, str(msn), url, fence=fence)

    async def end(self, stream: str) -> None:
        check_stream(stream)
        await self._for_every_rendition(stream, self._end)

    async def remove(self, stream: str) -> None:
        check_stream(stream)
        await self._for_every_rendition(stream, self._remove)

    async def _for_every_rendition(self, stream: str, script: Any) -> None:
        # The script checks the rendition list it was given is still complete, and says -1
        # when a rendition appeared between HKEYS and the script: then ask again.
        for _ in range(10):
            fields = await self._client.hkeys(self._stream_key(stream))
            names = sorted(f.decode()[2:] for f in cast(list[bytes], fields)
                           if f.startswith(b"r:"))
            keys = [self._stream_key(stream)]
            for name in names:
                keys += self._keys(stream, name)[1:]
            args = [self._ttl_ms, str(len(names)), *(self._channel(stream, n) for n in names),
                    *names]
            if int(await script(keys=keys, args=args)) >= 0:
                break
        else:
            raise RedisError(f"the renditions of {stream} kept changing")
        for watch in self._watches.values():
            if watch.stream == stream:
                # Read-your-writes here too; other processes hear it as an event.
                watch.window = None
                if script is self._remove:
                    watch.learn(None, watch.epoch, force=True)
                    watch.release(False)

    # -- reads ----------------------------------------------------------------------------

    async def snapshot(self, stream: str, rendition: str) -> RenditionWindow | None:
        check_names(stream, rendition)
        watch = self._watch(stream, rendition)
        loop = asyncio.get_running_loop()
        if (
            watch.fresh()
            and watch.window is not None
            and watch.window_epoch == watch.epoch
            and watch.position is not None
            and watch.window.version >= watch.position.version
            and loop.time() - watch.window_read_at < self._cache_seconds
        ):
            return watch.window
        try:
            return await self._fetch(watch)
        finally:
            watch.idle_since = loop.time()

    async def wait_for_part(
        self,
        stream: str,
        rendition: str,
        msn: int,
        index: int | None,
        timeout: float,  # noqa: ASYNC109 -- a deadline per call is the contract
    ) -> bool:
        check_names(stream, rendition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        key = (msn, WHOLE_SEGMENT if index is None else index)
        watch = self._watch(stream, rendition)
        watch.users += 1
        try:
            while not self._closed:
                position = watch.position if watch.fresh() else await self._read_position(watch)
                if position is not None and position.satisfies(msn, index):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closed:
                    return False
                if not watch.fresh():
                    if watch.confirmed.is_set():
                        # What we read has not been learned yet: a shared read that had
                        # finished before we joined it lands in its done callback, on
                        # the next loop turn. Neither that read nor the set Event below
                        # yields, so without this the loop would spin, and the whole
                        # process with it, until the deadline.
                        await asyncio.sleep(0)
                        continue
                    # Checked before the subscription was confirmed: an event may have
                    # slipped by. Wait for the confirmation, then check again.
                    try:
                        async with asyncio.timeout(remaining):
                            await watch.confirmed.wait()
                    except TimeoutError:
                        return False
                    continue
                future: asyncio.Future[bool | None] = loop.create_future()
                watch.waiters.setdefault(key, set()).add(future)
                try:
                    async with asyncio.timeout(remaining):
                        outcome = await future
                except TimeoutError:
                    return False
                finally:
                    futures = watch.waiters.get(key)
                    if futures is not None:
                        futures.discard(future)
                        if not futures:
                            del watch.waiters[key]
                if outcome is not None:
                    return outcome
                # None: the subscription was re-established; look again.
            return False
        finally:
            watch.users -= 1
            watch.idle_since = loop.time()

    async def _read_position(self, watch: _Watch) -> Position | None:
        window = await self._fetch(watch)
        if watch.fresh():
            return watch.position  # the newest of what was read and what was heard
        return None if window is None else window.position

    async def renditions(self, stream: str) -> tuple[Rendition, ...]:
        check_stream(stream)
        fields = await self._client.hkeys(self._stream_key(stream))
        names = sorted(f.decode()[2:] for f in cast(list[bytes], fields) if f.startswith(b"r:"))
        if not names:
            return ()
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self._keys(stream, name)[1], "rd")
            texts = await pipe.execute()
        found = []
        for name, text in zip(names, texts, strict=True):
            if text is None:
                continue  # not described yet, or expired with its rendition
            try:
                found.append(Rendition.from_text(text))
            except ValueError:
                log.warning("live index: %s/%s has an unreadable description", stream, name)
        return tuple(found)

    async def get_part(self, stream: str, rendition: str, msn: int, index: int) -> bytes | None:
        check_names(stream, rendition)
        # Many viewers ask for the same new part the moment it exists: one HGET for all
        # who ask before this process learns of a newer write. A read begun before the
        # part was written answers None; a caller who has learned of it since (the origin
        # reads again once wait_for_part says it is there) gets a read of its own.
        flight_key = (stream, rendition, msn, index)
        watch = self._watches.get(self._channel(stream, rendition))
        known = watch.position.version if watch is not None and watch.position is not None else -1
        flight = self._part_flights.get(flight_key)
        if flight is None or flight[0] < known:
            data_key = self._keys(stream, rendition)[4]
            read = cast(Awaitable[bytes | None],
                        self._client.hget(data_key, f"p:{msn}:{index}"))
            task = asyncio.ensure_future(read)
            flight = self._part_flights[flight_key] = (known, task)

            def landed(done: asyncio.Task[bytes | None]) -> None:
                current = self._part_flights.get(flight_key)
                if current is not None and current[1] is done:
                    del self._part_flights[flight_key]
                if not done.cancelled():
                    done.exception()  # retrieved here; every awaiting caller sees it too

            task.add_done_callback(landed)
        return await asyncio.shield(flight[1])

    async def get_segment(self, stream: str, rendition: str, msn: int) -> bytes | None:
        check_names(stream, rendition)
        keys = self._keys(stream, rendition)
        chunks = await self._get_segment(keys=[keys[1], keys[2], keys[4]], args=[str(msn)])
        return None if not chunks else b"".join(cast(list[bytes], chunks))

    async def get_init(
        self, stream: str, rendition: str, version: int | None = None
    ) -> bytes | None:
        check_names(stream, rendition)
        keys = self._keys(stream, rendition)
        data = await self._get_init(
            keys=[keys[1], keys[4]], args=["" if version is None else str(version)]
        )
        return cast(bytes | None, data)

    async def _fetch(self, watch: _Watch) -> RenditionWindow | None:
        """The rendition's window from Redis, sharing a read in flight when that read
        started late enough: under this subscription epoch and after the newest event."""
        epoch = watch.epoch if watch.confirmed.is_set() else -1
        known = watch.position.version if watch.position is not None else 0
        flight = watch.flight
        if flight is None or flight.epoch != epoch or flight.known_version < known:
            task = asyncio.get_running_loop().create_task(
                self._read_window(watch.stream, watch.rendition)
            )
            flight = watch.flight = _Flight(epoch, known, task)
            task.add_done_callback(lambda done: self._landed(watch, flight, done))
        return await asyncio.shield(flight.task)

    def _landed(
        self, watch: _Watch, flight: _Flight, done: asyncio.Task[RenditionWindow | None]
    ) -> None:
        if watch.flight is flight:
            watch.flight = None
        if done.cancelled() or done.exception() is not None:
            return
        window = done.result()
        if flight.epoch < 0 or flight.epoch != watch.epoch:
            return  # read without a confirmed subscription: good for its callers only
        watch.learn(None if window is None else window.position, flight.epoch)
        if window is not None and (watch.window is None or watch.window_epoch != flight.epoch
                                   or window.version >= watch.window.version):
            watch.window = window
            watch.window_epoch = flight.epoch
            watch.window_read_at = asyncio.get_running_loop().time()
        watch.release(True, only_due=True)

    async def _read_window(self, stream: str, rendition: str) -> RenditionWindow | None:
        keys = self._keys(stream, rendition)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys[1])
            pipe.lrange(keys[2], 0, -1)
            pipe.lrange(keys[3], 0, -1)
            meta, segments, parts = await pipe.execute()
        self.snapshot_reads += 1
        return _window_from(meta, segments, parts)

    # -- the subscriber: one connection per process, fanned out to local futures ----------

    def _watch(self, stream: str, rendition: str) -> _Watch:
        if self._closed:
            raise RuntimeError("the live index is closed")
        channel = self._channel(stream, rendition)
        watch = self._watches.get(channel)
        if watch is None:
            watch = self._watches[channel] = _Watch(stream, rendition, channel)
            watch.idle_since = asyncio.get_running_loop().time()
            self._start()
            self._unwant.discard(channel)
            self._want.add(channel)
            self._commands.set()
        return watch

    def _start(self) -> None:
        if self._pubsub is not None:
            return
        self._pubsub = _PubSub(self._client.connection_pool)
        self._pubsub.reconnected = self._lost
        self._want.add(self._control)
        self._heard_at = asyncio.get_running_loop().time()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_subscriptions(), name="live-index-subscribe"),
            loop.create_task(self._read_events(), name="live-index-events"),
            loop.create_task(self._keep_alive(), name="live-index-heartbeat"),
        ]

    async def _send_subscriptions(self) -> None:
        # The only task that writes (UN)SUBSCRIBE, so commands never interleave and a
        # burst of new renditions goes out as one command.
        assert self._pubsub is not None
        delay = 0.05
        while True:
            await self._commands.wait()
            self._commands.clear()
            want, self._want = self._want, set()
            unwant, self._unwant = self._unwant, set()
            try:
                if unwant:
                    await self._pubsub.unsubscribe(*unwant)
                if want:
                    await self._pubsub.subscribe(*want)
                    self._listening.set()
                delay = 0.05
            except (RedisError, OSError) as error:
                log.warning("live index: subscribing failed, retrying: %s", error)
                self._want |= {c for c in want if c in self._watches or c == self._control}
                self._unwant |= unwant
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                self._commands.set()

    async def _read_events(self) -> None:
        assert self._pubsub is not None
        loop = asyncio.get_running_loop()
        delay = 0.05
        await self._listening.wait()  # reading needs the connection the first SUBSCRIBE opens
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as error:
                log.warning("live index: subscriber connection lost: %s", error)
                self._lost()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            if message is None:
                continue
            self._heard_at = loop.time()
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                self._heard(channel, message["data"])
            elif kind == "subscribe":
                self._confirmed(channel)

    def _heard(self, channel: bytes, data: bytes) -> None:
        watch = self._watches.get(channel)
        if watch is None or not watch.confirmed.is_set():
            return
        if data == b"x":
            watch.learn(None, watch.epoch, force=True)
            watch.window = None
            watch.release(False)
            return
        try:
            version, head_msn, head_index, completed, ended = (int(n) for n in data.split())
        except ValueError:
            log.warning("live index: ignoring a malformed event on %r: %r", channel, data)
            return
        watch.learn(Position(version, head_msn, head_index, completed, ended == 1), watch.epoch)
        watch.release(True, only_due=True)

    def _confirmed(self, channel: bytes) -> None:
        watch = self._watches.get(channel)
        if watch is None or watch.confirmed.is_set():
            return
        watch.epoch += 1
        watch.confirmed.set()
        watch.release(None)  # look again: something may have happened before we listened

    def _lost(self) -> None:
        for watch in self._watches.values():
            if watch.confirmed.is_set():
                watch.confirmed.clear()
                watch.epoch += 1

    async def _keep_alive(self) -> None:
        # A half-open TCP connection would block the reader forever: publish to our own
        # control channel, and replace the connection when three beats go unheard.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self._client.publish(self._control, b"beat")
            except (RedisError, OSError) as error:
                log.warning("live index: heartbeat failed: %s", error)
            now = loop.time()
            pubsub = self._pubsub
            if now - self._heard_at > 3 * self._heartbeat and pubsub is not None:
                log.warning("live index: subscriber silent, reconnecting")
                self._heard_at = now
                self._lost()
                if pubsub.connection is not None:
                    await pubsub.connection.disconnect()
            for channel, watch in list(self._watches.items()):
                idle = now - watch.idle_since
                # Renditions never seen to exist go at once, so requests for made-up names
                # cannot pile up subscriptions.
                absent = watch.position is None and watch.window is None
                if (not watch.users and not watch.waiters and watch.flight is None
                        and (idle > self._linger or (absent and idle > self._heartbeat))):
                    del self._watches[channel]
                    self._want.discard(channel)
                    self._unwant.add(channel)
                    self._commands.set()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watch in self._watches.values():
            watch.release(False)
            watch.confirmed.set()  # lets waiters still waiting for it see the index closed
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await cast(Any, self._pubsub).aclose()  # redis-py leaves it unannotated
        if self._owns_client:
            await self._client.aclose(close_connection_pool=True)


def _window_from(
    meta: dict[bytes, bytes], segment_entries: list[bytes], part_entries: list[bytes]
) -> RenditionWindow | None:
    if b"iv" not in meta:
        return None
    segments = tuple(_segment_from(entry) for entry in segment_entries)
    next_msn = int(meta[b"next"]) if b"next" in meta else None
    parts = tuple(_part_from(next_msn or 0, entry) for entry in part_entries)
    current_pdt = float(meta[b"pdt"]) if b"pdt" in meta else None
    if current_pdt is None and segments:
        current_pdt = segments[-1].program_date_time + segments[-1].duration
    # The first listed segment's msn; with none yet, the one being built.
    media_sequence = segments[0].msn if segments else next_msn if next_msn is not None else 0
    return RenditionWindow(
        version=int(meta[b"v"]),
        init_version=int(meta[b"iv"]),
        init_url=meta[b"iu"].decode() if b"iu" in meta else None,
        part_target=float(meta[b"pt"]),
        target_duration=int(meta[b"td"]),
        media_sequence=media_sequence,
        discontinuity_sequence=int(meta.get(b"ds", b"0")),
        segments=segments,
        parts=parts,
        next_msn=next_msn,
        current_program_date_time=current_pdt,
        ended=meta.get(b"ended") == b"1",
    )


def _part_from(msn: int, entry: bytes) -> PartRef:
    index, duration, independent = entry.split(b" ")
    return PartRef(msn, int(index), float(duration), independent == b"1")


def _segment_from(entry: bytes) -> SegmentRef:
    head, part_list, url = entry.split(b"|", 2)
    msn_text, duration, pdt, gap, discontinuity, _count = head.split(b" ")
    msn = int(msn_text)
    parts = tuple(_part_from(msn, part) for part in part_list.split(b";")) if part_list else ()
    return SegmentRef(
        msn=msn,
        duration=float(duration),
        program_date_time=float(pdt),
        parts=parts,
        url=url.decode() if url else None,
        gap=gap == b"1",
        discontinuity=discontinuity == b"1",
    )



class FencedLiveIndex:
    """A `LiveIndex` for a writer that holds a lease on one stream's writes (a
    transcoder's, `RedisLiveIndex.fenced`): every write to that stream checks, in its own
    script, that the lease still holds this writer's token, and raises FencedError when it
    does not. Reads go to the index as they are. Such a writer adds renditions to a stream;
    ending or removing the stream is its source's, so those are refused here."""

    def __init__(self, index: RedisLiveIndex, stream: str, key: str, token: str) -> None:
        self.index = index
        self.stream = stream
        self.fence = (key, token)

    def _fence_for(self, stream: str) -> tuple[str, str]:
        if stream != self.stream:
            raise FencedError(f"this writer holds a lease on {self.stream}, not {stream}")
        return self.fence

    async def set_init(
        self,
        stream: str,
        rendition: str,
        data: bytes,
        part_target: float,
        *,
        target_duration: int,
        url: str | None = None,
    ) -> int:
        return await self.index.set_init(
            stream, rendition, data, part_target, target_duration=target_duration, url=url,
            fence=self._fence_for(stream),
        )

    async def describe(self, stream: str, description: Rendition) -> None:
        await self.index.describe(stream, description, fence=self._fence_for(stream))

    async def add_part(
        self,
        stream: str,
        rendition: str,
        part: PartRef,
        data: bytes,
        *,
        program_date_time: float | None = None,
    ) -> None:
        await self.index.add_part(stream, rendition, part, data,
                                  program_date_time=program_date_time,
                                  fence=self._fence_for(stream))

    async def complete_segment(self, stream: str, rendition: str, segment: SegmentRef) -> None:
        await self.index.complete_segment(stream, rendition, segment,
                                          fence=self._fence_for(stream))

    async def mark_stored(self, stream: str, rendition: str, msn: int, url: str) -> None:
        await self.index.mark_stored(stream, rendition, msn, url, fence=self._fence_for(stream))

    async def mark_gap(
        self,
        stream: str,
        rendition: str,
        msn: int,
        duration: float,
        program_date_time: float,
        *,
        discontinuity: bool = False,
    ) -> None:
        await self.index.mark_gap(stream, rendition, msn, duration, program_date_time,
                                  discontinuity=discontinuity, fence=self._fence_for(stream))

    async def wait_for_part(
        self,
        stream: str,
        rendition: str,
        msn: int,
        index: int | None,
        timeout: float,  # noqa: ASYNC109 -- the contract's
    ) -> bool:
        return await self.index.wait_for_part(stream, rendition, msn, index, timeout)

    async def snapshot(self, stream: str, rendition: str) -> RenditionWindow | None:
        return await self.index.snapshot(stream, rendition)

    async def renditions(self, stream: str) -> tuple[Rendition, ...]:
        return await self.index.renditions(stream)

    async def get_part(self, stream: str, rendition: str, msn: int, index: int) -> bytes | None:
        return await self.index.get_part(stream, rendition, msn, index)

    async def get_segment(self, stream: str, rendition: str, msn: int) -> bytes | None:
        return await self.index.get_segment(stream, rendition, msn)

    async def get_init(
        self, stream: str, rendition: str, version: int | None = None
    ) -> bytes | None:
        return await self.index.get_init(stream, rendition, version)

    async def end(self, stream: str) -> None:
        raise LiveIndexError("a fenced writer does not end streams: the source does")

    async def remove(self, stream: str) -> None:
        raise LiveIndexError("a fenced writer does not remove streams: the source does")

    async def aclose(self) -> None:
        """The index is shared: its owner closes it."""
