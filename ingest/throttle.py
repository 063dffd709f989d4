"""Per-address limits: concurrent connections, and wrong stream keys (no brute force)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass


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


class FailedKeyThrottle:
    """Slows and caps wrong-key attempts per IP address. Memory is bounded by pruning."""

    def __init__(
        self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy = policy or ThrottlePolicy()
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._blocked_until: dict[str, float] = {}
        self._blocks: dict[str, int] = defaultdict(int)

    def blocked_for(self, ip: str) -> int:
        """Whole seconds this address must still wait, 0 if it may try."""
        until = self._blocked_until.get(ip)
        if until is None:
            return 0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._blocked_until[ip]
            return 0
        return max(1, round(remaining))

    def record_failure(self, ip: str) -> float:
        """Counts a wrong key; returns how long to hold the answer, in seconds."""
        now = self._clock()
        policy = self._policy
        failures = self._failures[ip]
        failures.append(now)
        while failures and now - failures[0] > policy.window:
            failures.popleft()
        if len(failures) >= policy.max_failures:
            failures.clear()
            self._blocks[ip] += 1
            block = min(
                policy.block_seconds * 2 ** (self._blocks[ip] - 1), policy.max_block_seconds
            )
            self._blocked_until[ip] = now + block
        self._prune(now)
        return policy.delay_step * len(failures)

    def _prune(self, now: float) -> None:
        if len(self._failures) < 4096:
            return
        for ip in [
            ip
            for ip, times in self._failures.items()
            if not times or now - times[-1] > self._policy.window
        ]:
            del self._failures[ip]


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
