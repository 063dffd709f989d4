"""Virtual LL-HLS viewers that behave like hls.js in low-latency mode.

A viewer: the multivariant playlist, one rendition's media playlist, its init segment,
the last parts before the live edge (hls.js starts PART-HOLD-BACK, three parts, behind),
then, for every part, a blocking playlist reload with `_HLS_msn`/`_HLS_part` for the next
part on one connection and that part itself (the preload hint) on another, each fetched
once. Now and then it switches rendition when there is more than one. On an error it
backs off with jitter (honouring Retry-After) and tunes in again from the multivariant.

It measures per viewer: time to first part (from joining to the first part's last byte),
blocking-reload wait, part time to first byte, latency behind live (the moment a part's
last byte arrived minus the part's program-date-time: the ingest's wall clock at its first
frame; so it includes the part's own ~0.33 s), errors and timeouts.

Only the host and port of the URL it is given are ever contacted: a URI naming another
host (an S3 bucket, a CDN) is not fetched, only counted.
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .http import Connection, HTTPError, Response, open_connection
from .playlist import MediaPlaylist, PlaylistCache, Variant, parse_multivariant

HOLD_BACK_PARTS = 3
REQUEST_TIMEOUT = 6.0
# hls.js retries a failed load after about a second, doubling, up to 8 s.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0


@dataclass(frozen=True, slots=True)
class Target:
    """The one address a run may contact, and the multivariant playlist's path there."""

    host: str
    port: int
    path: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an http:// URL of a multivariant playlist, not {url!r}")
        return cls(parts.hostname, parts.port or 80, parts.path or "/")

    def local_path(self, base_path: str, uri: str) -> str | None:
        """The path of ``uri`` (relative to ``base_path``) on this target; None when it
        names another host. Remembered: every viewer resolves the same few URIs."""
        key = (base_path, uri)
        if key in _RESOLVED:
            return _RESOLVED[key]
        absolute = urljoin(f"http://{self.host}:{self.port}{base_path}", uri)
        parts = urlsplit(absolute)
        path = None
        if parts.hostname == self.host and (parts.port or 80) == self.port:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(_RESOLVED) > 4096:
            _RESOLVED.clear()
        _RESOLVED[key] = path
        return path


_RESOLVED: dict[tuple[str, str], str | None] = {}


@dataclass
class Figures:
    """What one process's viewers measured (seconds), merged across processes."""

    first_part: array[float] = field(default_factory=lambda: array("d"))
    reload_wait: array[float] = field(default_factory=lambda: array("d"))
    part_ttfb: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    loop_lag: array[float] = field(default_factory=lambda: array("d"))
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    parts_seen: set[str] = field(default_factory=set)
    parts_measured: set[str] = field(default_factory=set)  # asked for after the warm-up
    started: int = 0
    switches: int = 0
    other_host: int = 0
    variants: int = 0

    def merge(self, other: Figures) -> None:
        for name in ("first_part", "reload_wait", "part_ttfb", "latency", "loop_lag"):
            getattr(self, name).extend(getattr(other, name))
        self.requests.update(other.requests)
        self.errors.update(other.errors)
        self.parts_seen |= other.parts_seen
        self.parts_measured |= other.parts_measured
        self.started += other.started
        self.switches += other.switches
        self.other_host += other.other_host
        self.variants = max(self.variants, other.variants)


class _Failed(Exception):
    def __init__(self, kind: str, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


class Viewer:
    def __init__(
        self,
        target: Target,
        figures: Figures,
        cache: PlaylistCache,
        *,
        measure_from: float,
        switch_every: float,
        rng: random.Random,
    ) -> None:
        self.target = target
        self.figures = figures
        self.cache = cache
        self.measure_from = measure_from  # time.monotonic() before which latency is warm-up
        self.switch_every = switch_every  # mean seconds between switches; 0: never
        self.rng = rng  # jitter and choices, not secrets
        self._playlist_conn: Connection | None = None
        self._part_conn: Connection | None = None
        self._joined = 0.0
        self._got_first = False
        self._last = (-1, -1)  # (msn, part index) of the newest part fetched

    async def watch(self) -> None:
        """Watches until cancelled (the viewer leaves) or the stream ends."""
        self.figures.started += 1
        self._joined = time.monotonic()
        failures = 0
        try:
            while True:
                try:
                    if await self._session():
                        return  # the broadcast ended
                    failures = 0
                except _Failed as failure:
                    self.figures.errors[failure.kind] += 1
                    failures += 1
                    await asyncio.sleep(self._backoff(failures, failure.retry_after))
        finally:
            for connection in (self._playlist_conn, self._part_conn):
                if connection is not None:
                    connection.close()

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        # Jitter spreads a crowd's retries out instead of sending them back together.
        if retry_after is not None:
            return retry_after * (1 + self.rng.random())
        ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (failures - 1))
        return ceiling * (0.5 + self.rng.random() / 2)

    async def _get(
        self, which: str, path: str, kind: str, limit: float, again: bool = True
    ) -> Response:
        connection = await self._connection(which)
        self.figures.requests[kind] += 1
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that races with its answer, and the viewer would never leave.
        try:
            async with asyncio.timeout(limit):
                response = await connection.get(path)
        except TimeoutError:
            connection.close()  # its answer may still come: the connection cannot be reused
            raise _Failed(f"timeout {kind}") from None
        except HTTPError:
            if again and connection.closed_while_idle:
                self.figures.requests["sent again"] += 1
                return await self._get(which, path, kind, limit, again=False)
            raise _Failed(f"connection {kind}") from None
        if response.status != 200:
            raise _Failed(f"{response.status} {kind}", _retry_after(response))
        return response

    async def _session(self) -> bool:
        """One tune-in; True when the broadcast ended."""
        master = await self._get("playlist", self.target.path, "master", REQUEST_TIMEOUT)
        variants = parse_multivariant(master.body.decode("utf-8", "replace"))
        if not variants:
            raise _Failed("empty multivariant")
        self.figures.variants = max(self.figures.variants, len(variants))
        variant = self.rng.choice(variants)
        media_path, playlist = await self._tune_in(variant)
        if playlist.ended:
            return True
        next_switch = self._next_switch()
        while True:
            playlist = await self._next_part(media_path, playlist)
            if playlist.ended:
                return True
            if len(variants) > 1 and time.monotonic() >= next_switch:
                others = [v for v in variants if v != variant]
                variant = self.rng.choice(others)
                media_path, playlist = await self._tune_in(variant, switching=True)
                self.figures.switches += 1
                next_switch = self._next_switch()

    def _next_switch(self) -> float:
        if self.switch_every <= 0:
            return float("inf")
        return time.monotonic() + self.rng.expovariate(1 / self.switch_every)

    async def _tune_in(
        self, variant: Variant, switching: bool = False
    ) -> tuple[str, MediaPlaylist]:
        media_path = self.target.local_path(self.target.path, variant.uri)
        if media_path is None:
            self.figures.other_host += 1
            raise _Failed("variant on another host")
        response = await self._get("playlist", media_path, "playlist", REQUEST_TIMEOUT)
        playlist = self.cache.media(response.body)
        if playlist.init_uri:
            init = self.target.local_path(media_path, playlist.init_uri)
            if init is None:
                self.figures.other_host += 1
            else:
                await self._get("part", init, "init", REQUEST_TIMEOUT)
        # Like hls.js: start PART-HOLD-BACK behind the newest part; fetch those that exist.
        for entry in playlist.parts[-HOLD_BACK_PARTS:]:
            path = self.target.local_path(media_path, entry.uri)
            if path is None:
                self.figures.other_host += 1
                continue
            response = await self._get("part", path, "part", REQUEST_TIMEOUT)
            self._last = (entry.msn, entry.index)
            self._part_arrived(response, entry.uri, entry.program_date_time, switching)
        return media_path, playlist

    async def _connection(self, which: str) -> Connection:
        connection = self._playlist_conn if which == "playlist" else self._part_conn
        if connection is None or connection.closed:
            try:
                connection = await open_connection(self.target.host, self.target.port)
            except (OSError, TimeoutError) as error:
                raise _Failed("connect") from error
            if which == "playlist":
                self._playlist_conn = connection
            else:
                self._part_conn = connection
        return connection

    async def _next_part(
        self, media_path: str, playlist: MediaPlaylist, again: bool = True
    ) -> MediaPlaylist:
        """One blocking reload for the part after the last listed, and that part (the
        preload hint) at the same time; then any listed part not fetched yet (a hint
        names a part that may never exist: the segment can end before it, and the next
        part is the new segment's first). Returns the new playlist.

        The two requests are plain futures under one deadline (no task per request):
        this loop runs for every part of every viewer."""
        directive = f"{media_path}?_HLS_msn={playlist.next_msn}&_HLS_part={playlist.next_part}"
        hold = 3 * max(playlist.target_duration, 1.0) + 2
        hint_path = (
            self.target.local_path(media_path, playlist.hint_uri) if playlist.hint_uri else None
        )
        playlist_conn = await self._connection("playlist")
        part_conn = await self._connection("part") if hint_path is not None else None
        figures = self.figures
        figures.requests["blocking_playlist"] += 1
        reload = playlist_conn.get(directive)
        part = None
        if part_conn is not None and hint_path is not None:
            figures.requests["part"] += 1
            part = part_conn.get(hint_path)
        try:
            async with asyncio.timeout(hold):
                answer = await reload
                got = await part if part is not None else None
        except TimeoutError:
            playlist_conn.close()
            if part_conn is not None:
                part_conn.close()
            raise _Failed("timeout blocking_playlist" if not reload.done()
                          else "timeout part") from None
        except HTTPError:
            if again and any(c is not None and c.closed_while_idle
                             for c in (playlist_conn, part_conn)):
                # Both again, on new connections where closed (see `closed_while_idle`);
                # the other's answer, if still coming, is not waited for.
                for request, connection in ((reload, playlist_conn), (part, part_conn)):
                    if request is not None and not request.done() and connection is not None:
                        connection.close()
                self.figures.requests["sent again"] += 1
                return await self._next_part(media_path, playlist, again=False)
            raise _Failed("connection") from None
        if answer.status != 200:
            raise _Failed(f"{answer.status} blocking_playlist", _retry_after(answer))
        if answer.sent_at >= self.measure_from:
            figures.reload_wait.append(answer.done_at - answer.sent_at)
        new = self.cache.media(answer.body)
        if got is not None and playlist.hint_uri is not None:
            entry = new.by_uri.get(playlist.hint_uri)
            if got.status == 200:
                self._last = (playlist.next_msn, playlist.next_part)
                self._part_arrived(got, playlist.hint_uri,
                                   entry.program_date_time if entry else None, False)
            elif got.status != 404 or entry is not None:
                # A 404 for a hint the new playlist does not list: the segment ended
                # before that part, which is no error.
                raise _Failed(f"{got.status} part", _retry_after(got))
        if new.parts and (new.parts[-1].msn, new.parts[-1].index) > self._last:
            for entry in new.parts:
                if (entry.msn, entry.index) <= self._last:
                    continue
                path = self.target.local_path(media_path, entry.uri)
                if path is None:
                    figures.other_host += 1
                    continue
                response = await self._get("part", path, "part", REQUEST_TIMEOUT)
                self._last = (entry.msn, entry.index)
                self._part_arrived(response, entry.uri, entry.program_date_time, False)
        return new

    def _part_arrived(
        self, response: Response, uri: str, date: float | None, switching: bool
    ) -> None:
        figures = self.figures
        figures.parts_seen.add(uri)
        if not self._got_first:
            self._got_first = True
            figures.first_part.append(response.done_at - self._joined)
        if response.sent_at < self.measure_from:
            return
        figures.parts_measured.add(uri)
        figures.part_ttfb.append(response.first_byte_at - response.sent_at)
        if date is not None and not switching:
            figures.latency.append(response.done_wall - date)


def _retry_after(response: Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


async def measure_loop_lag(figures: Figures, every: float = 0.1) -> None:
    """How late this process's event loop wakes: when it is busy, the client is the
    bottleneck and its timings say more about itself than about the server."""
    loop = asyncio.get_running_loop()
    while True:
        planned = loop.time() + every
        await asyncio.sleep(every)
        figures.loop_lag.append(max(0.0, loop.time() - planned))
