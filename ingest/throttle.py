"""Per-address limits: concurrent connections, and wrong stream keys (no brute force).

Wrong keys are counted per address in a `KeyAttemptStore`: this process's memory when the
ingest runs alone (embedded), Redis when several ingest nodes run (the cluster), so that
a guesser spreading attempts over the nodes meets one limit, not one per node.

The rule (README, "Security"): an address gets ``max_failures`` key checks that fail per
``window``; then it is blocked for ``block_seconds`` (doubling at each further block, up
to ``max_block_seconds``), and during a block no key from it is checked, except a key
that was admitted from that same address before (within ``trusted_key_days``). So a
streamer whose neighbour behind the same address guesses keys still goes live with the
key they used there before, and the guesser's guesses are never looked up. Each check
takes its place in the count before it is made (and gives it back when the key is
right), so parallel attempts over several nodes cannot overshoot the limit; an attempt
that finds every place held by checks still under way waits for one (right keys give theirs
back within a database round trip), so many encoders starting at once behind one address
are queued for a moment, not refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """``max_failures`` wrong keys within ``window`` seconds block the address for
    ``block_seconds``, doubling at each further block up to ``max_block_seconds``."""

    max_failures: int = 10
    window: float = 60.0
    block_seconds: int = 60
    max_block_seconds: int = 3600
    # Held before answering a wrong key: grows with each failure in the window.
    delay_step: float = 0.25
    # Longest wait for a place when every one is held by checks under way.
    queue_seconds: float = 10.0
    # How long an address remembers a key admitted from it, and how many it remembers.
    trusted_key_days: float = 30.0
    trusted_keys_per_address: int = 16


@dataclass(frozen=True, slots=True)
class Attempt:
    """The answer to "may this key be checked?": ``wait`` seconds (0: yes). ``ticket``
    is the place the check holds in the address's count, if it took one; ``queued``: no,
    for now, because every place is held by checks under way (not a block)."""

    wait: int
    ticket: str | None = None
    queued: bool = False


class KeyAttemptStore(Protocol):
    """Counts key checks per address. Every method is one atomic step, whatever the
    number of ingest nodes sharing the store."""

    async def begin(self, ip: str, key_id: str, policy: ThrottlePolicy) -> Attempt:
        """Whether a key may be checked now; if so, holds its place in the count."""
        ...

    async def fail(self, ip: str, ticket: str | None, policy: ThrottlePolicy) -> int:
        """The check failed: its place stays counted, blocking the address once the count
        reaches ``max_failures``. Returns the failures in the window (0 once blocked)."""
        ...

    async def succeed(
        self, ip: str, ticket: str | None, key_id: str, policy: ThrottlePolicy
    ) -> None:
        """The key was right: its place is given back and the key trusted from ``ip``."""
        ...


def key_id(key: str) -> str:
    """What the throttle remembers of a key: a digest of its own (not the platform's)."""
    return hashlib.sha256(b"golive-throttle:" + key.encode("utf-8", "replace")).hexdigest()[:32]


class FailedKeyThrottle:
    """Slows and caps wrong-key attempts per IP address, in ``store``."""

    def __init__(
        self, policy: ThrottlePolicy | None = None, store: KeyAttemptStore | None = None
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self.store: KeyAttemptStore = store or MemoryKeyAttemptStore()

    async def begin(self, ip: str, key: str) -> Attempt:
        """Whether ``key`` may be checked now; waits (up to ``queue_seconds``) while
        every place is held by checks under way."""
        digest = key_id(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.queue_seconds
        while True:
            attempt = await self.store.begin(ip, digest, self.policy)
            if not attempt.queued or loop.time() >= deadline:
                return attempt
            await asyncio.sleep(0.05)

    async def failed(self, ip: str, attempt: Attempt) -> float:
        """Counts a wrong key; returns how long to hold the answer, in seconds."""
        failures = await self.store.fail(ip, attempt.ticket, self.policy)
        return self.policy.delay_step * failures

    async def key_accepted(self, ip: str, key: str, attempt: Attempt) -> None:
        """The platform knew the key: its check is not a failure, and the key is trusted
        from this address."""
        await self.store.succeed(ip, attempt.ticket, key_id(key), self.policy)


class MemoryKeyAttemptStore:
    """The counts in this process (the embedded mode, tests). Memory is bounded: idle
    addresses are pruned, trusted keys are kept for a bounded number of addresses."""

    MAX_ADDRESSES = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._attempts: dict[str, deque[tuple[float, str]]] = defaultdict(deque)
        self._blocked_until: dict[str, float] = {}
        self._blocks: dict[str, int] = defaultdict(int)
        # ip -> {key id: trusted until}, least recently used address first.
        self._trusted: OrderedDict[str, dict[str, float]] = OrderedDict()

    async def begin(self, ip: str, key_id: str, policy: ThrottlePolicy) -> Attempt:
        return self.begin_now(ip, key_id, policy)

    def begin_now(self, ip: str, key_id: str, policy: ThrottlePolicy) -> Attempt:
        now = self._clock()
        blocked = self._blocked_for(ip, now)
        attempts = self._attempts[ip]
        while attempts and now - attempts[0][0] > policy.window:
            attempts.popleft()
        queued = not blocked and len(attempts) >= policy.max_failures
        if queued:
            # Every place is held by checks under way: wait for one to be given back.
            blocked = max(1, math.ceil(attempts[0][0] + policy.window - now))
        if blocked:
            if self._is_trusted(ip, key_id, now):
                return Attempt(0)
            return Attempt(blocked, queued=queued)
        ticket = uuid.uuid4().hex
        attempts.append((now, ticket))
        self._prune(now, policy)
        return Attempt(0, ticket)

    async def fail(self, ip: str, ticket: str | None, policy: ThrottlePolicy) -> int:
        now = self._clock()
        attempts = self._attempts[ip]
        if ticket is None:  # a trusted key checked during a block, and wrong after all
            attempts.append((now, ""))
        if len(attempts) < policy.max_failures:
            return len(attempts)
        attempts.clear()
        self._blocks[ip] += 1
        block = min(policy.block_seconds * 2 ** (self._blocks[ip] - 1), policy.max_block_seconds)
        self._blocked_until[ip] = now + block
        return 0

    async def succeed(
        self, ip: str, ticket: str | None, key_id: str, policy: ThrottlePolicy
    ) -> None:
        attempts = self._attempts.get(ip)
        if attempts is not None and ticket is not None:
            for index, (_, held) in enumerate(attempts):
                if held == ticket:
                    del attempts[index]
                    break
        now = self._clock()
        keys = self._trusted.pop(ip, {})
        keys[key_id] = now + policy.trusted_key_days * 86400
        while len(keys) > policy.trusted_keys_per_address:
            del keys[min(keys, key=keys.__getitem__)]
        self._trusted[ip] = keys
        while len(self._trusted) > self.MAX_ADDRESSES:
            self._trusted.popitem(last=False)

    def _blocked_for(self, ip: str, now: float) -> int:
        until = self._blocked_until.get(ip)
        if until is None:
            return 0
        if until <= now:
            del self._blocked_until[ip]
            return 0
        return max(1, round(until - now))

    def _is_trusted(self, ip: str, key_id: str, now: float) -> bool:
        return self._trusted.get(ip, {}).get(key_id, 0.0) > now

    def _prune(self, now: float, policy: ThrottlePolicy) -> None:
        if len(self._attempts) < self.MAX_ADDRESSES:
            return
        for ip in [
            ip
            for ip, times in self._attempts.items()
            if not times or now - times[-1][0] > policy.window
        ]:
            del self._attempts[ip]


# KEYS: attempts (sorted set of tickets by time), blocks (counter), blocked (a key that
# lives as long as the block), trusted (sorted set of key ids by expiry).
# ARGV: now (ms), window (ms), max failures, key id, new ticket.
_BEGIN = """
local now = tonumber(ARGV[1])
local wait = redis.call('PTTL', KEYS[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local queued = 0
if wait <= 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + tonumber(ARGV[2]) - now
  queued = 1
end
if wait > 0 then
  local trusted = redis.call('ZSCORE', KEYS[4], ARGV[4])
  if trusted and tonumber(trusted) > now then return {0, '', 0} end
  return {math.max(1, math.ceil(wait / 1000)), '', queued}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {0, ARGV[5], 0}
"""

# ARGV: now (ms), window (ms), max failures, block (ms), longest block (ms), ticket.
_FAIL = """
local now = tonumber(ARGV[1])
if ARGV[6] == '' then
  redis.call('ZADD', KEYS[1], now, 'trusted-' .. now .. '-' .. math.random(1000000))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[3]) then return count end
redis.call('DEL', KEYS[1])
local blocks = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[5]))
local block = math.min(tonumber(ARGV[4]) * 2 ^ (blocks - 1), tonumber(ARGV[5]))
redis.call('SET', KEYS[3], '1', 'PX', math.floor(block))
return 0
"""

# ARGV: now (ms), ticket, key id, trusted until (ms), how many to keep, keep for (ms).
_SUCCEED = """
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[1], ARGV[2]) end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return 1
"""


class RedisKeyAttemptStore:
    """The counts in Redis, shared by every ingest node (the cluster). When Redis cannot
    be reached the node falls back on its own memory: the limit then holds per node
    (as before), and no publish waits on an outage."""

    def __init__(self, redis: Redis, prefix: str = "golive:throttle:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._begin = redis.register_script(_BEGIN)
        self._fail = redis.register_script(_FAIL)
        self._succeed = redis.register_script(_SUCCEED)
        self._fallback = MemoryKeyAttemptStore()
        # Tickets the fallback handed out: their end goes there too.
        self._local: set[str] = set()

    # Connections to Redis one node keeps at most. A burst of publishes waits its turn for
    # one (a round trip each) instead of failing: redis-py's default pool raises "Too many
    # connections" past 100 at once, and every publish over that was counted in the
    # node's memory instead, the limit no longer shared by the nodes.
    MAX_CONNECTIONS = 32

    @classmethod
    def from_url(cls, url: str, prefix: str = "golive:throttle:") -> RedisKeyAttemptStore:
        from redis.asyncio import BlockingConnectionPool, Redis

        pool = BlockingConnectionPool.from_url(
            url, max_connections=cls.MAX_CONNECTIONS, timeout=2, socket_timeout=2,
            socket_connect_timeout=2,
        )
        return cls(Redis.from_pool(pool), prefix)

    async def connect(self) -> None:
        """Opens the node's connections to Redis and loads the scripts, before the first
        publish: opened in the middle of a burst, they cost its first answers a TCP and
        a Redis handshake each. Redis away: warns, and the first publishes connect."""
        pool = self._redis.connection_pool
        held = []
        try:
            try:
                # Given back only once all are open, or each would be taken again.
                for _ in range(self.MAX_CONNECTIONS):
                    held.append(await pool.get_connection())  # type: ignore[no-untyped-call]
            finally:
                for connection in held:
                    await pool.release(connection)
            # With every connection given back: loading a script needs one of them (held,
            # it waited out the pool's timeout, and the scripts were never loaded).
            for script in (self._begin, self._fail, self._succeed):
                await self._redis.script_load(script.script)
        except Exception as error:  # the first failure ends it: a start waits one timeout
            self._warn(error)

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _keys(self, ip: str) -> list[str]:
        base = f"{self._prefix}{ip}:"
        return [base + "attempts", base + "blocks", base + "blocked", base + "trusted"]

    async def begin(self, ip: str, key_id: str, policy: ThrottlePolicy) -> Attempt:
        ticket = uuid.uuid4().hex
        args: list[str | int] = [_ms(), _ms(policy.window), policy.max_failures, key_id, ticket]
        try:
            wait, held, queued = await self._begin(keys=self._keys(ip), args=args)
        except Exception as error:  # redis errors, timeouts, a lost connection
            self._warn(error)
            attempt = self._fallback.begin_now(ip, key_id, policy)
            if attempt.ticket is not None:
                self._local.add(attempt.ticket)
            return attempt
        return Attempt(int(wait), held.decode() if held else None, bool(queued))

    async def fail(self, ip: str, ticket: str | None, policy: ThrottlePolicy) -> int:
        if ticket in self._local:
            self._local.discard(ticket)
            return await self._fallback.fail(ip, ticket, policy)
        args: list[str | int] = [
            _ms(), _ms(policy.window), policy.max_failures, _ms(policy.block_seconds),
            _ms(policy.max_block_seconds), ticket or "",
        ]
        try:
            return int(await self._fail(keys=self._keys(ip), args=args))
        except Exception as error:
            self._warn(error)
            return await self._fallback.fail(ip, None, policy)

    async def succeed(
        self, ip: str, ticket: str | None, key_id: str, policy: ThrottlePolicy
    ) -> None:
        keep = _ms(policy.trusted_key_days * 86400)
        if ticket in self._local:
            # The place was taken in this node's memory (Redis was away): given back there.
            self._local.discard(ticket)
            await self._fallback.succeed(ip, ticket, key_id, policy)
            ticket = None
        args: list[str | int] = [
            _ms(), ticket or "", key_id, _ms() + keep, policy.trusted_keys_per_address, keep,
        ]
        try:
            await self._succeed(keys=self._keys(ip), args=args)
        except Exception as error:
            self._warn(error)
        await self._fallback.succeed(ip, None, key_id, policy)

    @staticmethod
    def _warn(error: Exception) -> None:
        log.warning("wrong-key throttle: Redis unavailable, counting on this node: %s", error)


def _ms(seconds: float | None = None) -> int:
    """Whole milliseconds (of the wall clock, shared by the nodes, when no argument)."""
    return int((time.time() if seconds is None else seconds) * 1000)


class ConnectionCounter:
    """Counts open connections, globally and per address."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def try_open(self, ip: str) -> str | None:
        """Takes a place, or returns why there is none."""
        if self.total >= self.max_total:
            return "server connection limit reached"
        if self._per_ip.get(ip, 0) >= self.max_per_ip:
            return "too many connections from this address"
        self.total += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return None

    def close(self, ip: str) -> None:
        self.total -= 1
        left = self._per_ip[ip] - 1
        if left:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]
