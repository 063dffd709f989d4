"""A lease in Redis: who owns a piece of work (a broadcast's transcode session) right now.

One key, SET NX PX: whoever sets it holds the lease for ``ttl`` seconds, and keeps it by
renewing it (a script that extends the key only while it holds the holder's token). A
holder that dies stops renewing, the key expires, and someone else may take the work
(`delivery.transcode_tasks.supervise_transcodes` restarts a session whose lease lapsed).

A holder that was only paused (a stalled process, a partitioned machine) may come back
believing it still holds the lease; it must not write then. `LeaseKeeper` renews from its
own thread and declares the lease lost at the first failed renewal, or as soon as the
last good one is ``ttl`` old; writes that must never come from a lapsed holder are fenced
on the key itself (`transcoder.live_index.redis_index.FencedLiveIndex`), so even a write
already on its way is refused once the lease is gone.

Redis only, no Django; blocking calls (the keeper's thread, or a Celery task body).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] the lease, ARGV[1] token, ARGV[2] TTL (ms): extend it only for its holder.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def new_token() -> str:
    """A holder's token: unique, and saying where the holder runs (host and process id),
    so an operator (or a test) can find it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def token_pid(token: str) -> int | None:
    """The process id a token names, or None."""
    parts = token.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


class Lease:
    """One lease key. ``client`` is a blocking Redis client (any ``decode_responses``).
    ``ttl`` is seconds. Not thread-safe by itself: `LeaseKeeper` is the one renewer."""

    def __init__(self, client: Redis, key: str, ttl: float, *, token: str | None = None):
        if ttl <= 0:
            raise ValueError("a lease needs a TTL > 0")
        self.client = client
        self.key = key
        self.ttl = ttl
        self.token = token or new_token()
        # Monotonic time until which the lease is surely ours: the TTL counted from
        # before the command that set or renewed it was sent.
        self.valid_until = 0.0
        self._ttl_ms = max(1, round(ttl * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Takes the lease if nobody holds it. Raises RedisError."""
        sent = time.monotonic()
        if self.client.set(self.key, self.token, nx=True, px=self._ttl_ms):
            self.valid_until = sent + self.ttl
            return True
        return False

    def renew(self) -> bool:
        """Extends the lease by its TTL; False when it is no longer ours (it lapsed, or
        another holder took it). Raises RedisError."""
        sent = time.monotonic()
        if int(self._renew(keys=[self.key], args=[self.token, self._ttl_ms])):
            self.valid_until = sent + self.ttl
            return True
        self.valid_until = 0.0
        return False

    def release(self) -> bool:
        """Gives the lease up if it is ours (idempotent). Raises RedisError."""
        self.valid_until = 0.0
        return bool(int(self._release(keys=[self.key], args=[self.token])))

    def holder(self) -> str | None:
        """The token of whoever holds the lease now, or None."""
        value = self.client.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    @property
    def held(self) -> bool:
        """Whether the lease is surely still ours by the clock (see ``valid_until``)."""
        return time.monotonic() < self.valid_until


class LeaseKeeper:
    """Renews a held lease every ``every`` seconds from a thread of its own (an event loop
    or a busy feeder could delay a renewal past the TTL). The lease is lost at the first
    renewal that finds it gone, or once Redis has failed to answer until the lease would
    have lapsed; ``on_lost(reason)`` is then called once, from the keeper's thread, and
    renewing stops. `stop` ends the thread (and releases the lease unless told not to)."""

    def __init__(
        self,
        lease: Lease,
        *,
        every: float = 1.0,
        on_lost: Callable[[str], None] = lambda _reason: None,
        name: str = "lease",
    ) -> None:
        if not 0 < every < lease.ttl:
            raise ValueError("a lease must be renewed more often than its TTL")
        self.lease = lease
        self.every = every
        self.lost: str | None = None
        self._on_lost = on_lost
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if release and self.lost is None:
            try:
                self.lease.release()
            except RedisError as error:
                log.warning("lease %s could not be released (it will lapse): %s",
                            self.lease.key, error)

    def _run(self) -> None:
        lease = self.lease
        while not self._stopping.wait(self.every):
            try:
                if lease.renew():
                    continue
                reason = "another holder has it, or it lapsed"
            except RedisError as error:
                if lease.held:
                    log.warning("lease %s: renewal failed, retrying: %s", lease.key, error)
                    continue
                reason = f"Redis did not answer before it lapsed ({error})"
            self._lose(reason)
            return

    def _lose(self, reason: str) -> None:
        self.lost = reason
        log.warning("lease %s lost: %s", self.lease.key, reason)
        try:
            self._on_lost(reason)
        except Exception:
            log.exception("lease %s: on_lost failed", self.lease.key)
