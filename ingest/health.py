"""Stream-health figures kept per publish, cheaply, from what arrives on the wire."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

# Common encoder rates: a measured rate within 0.5 % of one of these is reported as it.
_NOMINAL_RATES = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 120.0)
_WINDOW_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """A snapshot. Rates are over the last few seconds; counts since the publish began.

    ``lag_ms`` is how far the media timeline has fallen behind the wall clock since the
    first frame (a publisher on a congested link drifts up); ``timestamp_regressions``
    counts video frames whose timestamp went backwards (dropped or reordered data).
    """

    bytes_in: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    bitrate_kbps: float = 0.0
    frame_rate: float = 0.0
    keyframe_interval_ms: int | None = None
    media_duration_ms: int = 0
    lag_ms: int = 0
    timestamp_regressions: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def nominal_rate(measured: float) -> float:
    closest = min(_NOMINAL_RATES, key=lambda rate: abs(measured - rate))
    if abs(measured - closest) <= closest * 0.005:
        return closest
    return round(measured, 3)


class HealthMeter:
    """Accumulates figures; `video`/`audio`/`bytes` are called per message (keep them lean).

    Times: ``now`` is the monotonic clock in seconds; media timestamps are milliseconds.
    """

    __slots__ = (
        "_audio_frames",
        "_bytes",
        "_first_now",
        "_first_ts",
        "_keyframe_interval",
        "_keyframes",
        "_last_keyframe_ts",
        "_last_ts",
        "_regressions",
        "_video_frames",
        "_window",
    )

    def __init__(self) -> None:
        self._bytes = 0
        self._video_frames = 0
        self._audio_frames = 0
        self._keyframes = 0
        self._first_ts: int | None = None
        self._first_now = 0.0
        self._last_ts = 0
        self._last_keyframe_ts: int | None = None
        self._keyframe_interval: int | None = None
        self._regressions = 0
        # (now, bytes so far, video frames so far), one sample a message at most per 100 ms
        self._window: deque[tuple[float, int, int]] = deque()

    def add_bytes(self, count: int, now: float) -> None:
        self._bytes += count
        window = self._window
        if not window or now - window[-1][0] >= 0.1:
            window.append((now, self._bytes, self._video_frames))
            while now - window[0][0] > _WINDOW_SECONDS:
                window.popleft()

    def video(self, timestamp: int, keyframe: bool, now: float) -> None:
        self._video_frames += 1
        if self._first_ts is None:
            self._first_ts, self._first_now = timestamp, now
        elif timestamp < self._last_ts:
            self._regressions += 1
        self._last_ts = max(self._last_ts, timestamp)
        if keyframe:
            self._keyframes += 1
            if self._last_keyframe_ts is not None and timestamp > self._last_keyframe_ts:
                self._keyframe_interval = timestamp - self._last_keyframe_ts
            self._last_keyframe_ts = timestamp

    def audio(self) -> None:
        self._audio_frames += 1

    @property
    def video_frames(self) -> int:
        return self._video_frames

    def measured_frame_rate(self) -> float | None:
        """Frames per second over the whole publish (the most accurate figure we have)."""
        if self._first_ts is None or self._video_frames < 2 or self._last_ts <= self._first_ts:
            return None
        return nominal_rate((self._video_frames - 1) * 1000 / (self._last_ts - self._first_ts))

    def snapshot(self, now: float) -> StreamHealth:
        bitrate = fps = 0.0
        if len(self._window) >= 2:
            t0, b0, f0 = self._window[0]
            span = now - t0
            if span > 0:
                bitrate = (self._bytes - b0) * 8 / span / 1000
                fps = (self._video_frames - f0) / span
        duration = 0
        lag = 0
        if self._first_ts is not None:
            rate = self.measured_frame_rate()
            frame_ms = 1000 / rate if rate else 0
            duration = round(self._last_ts - self._first_ts + frame_ms)
            lag = max(0, round((now - self._first_now) * 1000 - (self._last_ts - self._first_ts)))
        return StreamHealth(
            bytes_in=self._bytes,
            video_frames=self._video_frames,
            audio_frames=self._audio_frames,
            keyframes=self._keyframes,
            bitrate_kbps=round(bitrate, 1),
            frame_rate=round(fps, 2),
            keyframe_interval_ms=self._keyframe_interval,
            media_duration_ms=duration,
            lag_ms=lag,
            timestamp_regressions=self._regressions,
        )
