"""A viewer surge: the schedule shared out over a few client processes (one event loop
each, so the client can use every core), a progress line while it runs, the edge's and
origins' counters read before and after, and the summary as plain data.

Two kinds of viewer, alike in what they do, apart in what they are trusted to measure:
- load viewers, in `processes` worker processes run niced (`load_nice`): they make the
  crowd, and count requests, errors, timeouts and parts;
- probe viewers (`probes`, taken evenly from the same schedule), in one more process at
  normal priority with few viewers on its event loop: their time to first part,
  blocking-reload wait, part TTFB and latency behind live are the run's timings.
Why: on a machine shared with the server, a client loop carrying a thousand viewers falls
behind when the cores are busy, and its timings then measure its own lag, not the
server's answer. The probe process keeps an idle loop and first claim on a core, so what
it times is the edge; its own loop lag is reported to show that it held.

Bounded in count (`MAX_VIEWERS`), time (`MAX_SECONDS`) and address (the URL's host and
port only, plus the origins and the varnishd instance it is told to read)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

from . import edge
from .playlist import PlaylistCache
from .report import percentiles
from .shapes import Slot, schedule
from .viewers import Figures, Target, Viewer, measure_loop_lag

MAX_VIEWERS = 50_000
MAX_SECONDS = 3600.0
# Per process: requests, errors, viewers watching, parts received.
_PROGRESS_FIELDS = 4
# Few enough that one event loop stays idle between their answers, enough for percentiles
# (20 viewers x 3 parts a second: ~60 latency samples a second).
DEFAULT_PROBES = 20
MAX_PROBES = 200
DEFAULT_LOAD_NICE = 10
PROBE, LOAD = "probe", "load"


def split_probes(slots: list[Slot], probes: int) -> tuple[list[Slot], list[Slot]]:
    """(probe slots, load slots): the probes taken evenly across the schedule, so they
    arrive during the ramp (and leave at a relaunch) like everyone else."""
    if probes <= 0:
        return [], list(slots)
    chosen = {round(i * len(slots) / probes) for i in range(min(probes, len(slots)))}
    return ([s for i, s in enumerate(slots) if i in chosen],
            [s for i, s in enumerate(slots) if i not in chosen])


@dataclass(frozen=True)
class ViewerRun:
    url: str
    viewers: int
    seconds: float
    shape: str = "plateau"
    ramp: float = 5.0
    rate: float = 50_000 / 60
    warmup: float = 5.0  # s after the start before waits, TTFB and latency count
    switch_every: float = 30.0  # mean s between rendition switches (0: never)
    processes: int = 1
    varnish: str | None = None  # varnishd -n name to read counters from
    origins: tuple[str, ...] = field(default_factory=tuple)  # origin base URLs (/metrics)
    metrics_token: str = ""
    seed: int = 0
    probes: int = DEFAULT_PROBES  # viewers (of `viewers`) timed in the normal-priority process
    load_nice: int = DEFAULT_LOAD_NICE  # niceness added to the load processes

    @property
    def probe_count(self) -> int:
        return min(self.probes, self.viewers)

    def check(self) -> None:
        Target.from_url(self.url)
        if not 1 <= self.viewers <= MAX_VIEWERS:
            raise ValueError(f"viewers must be between 1 and {MAX_VIEWERS}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be above 0 and at most {MAX_SECONDS:g}")
        if not 1 <= self.processes <= max(1, os.cpu_count() or 1) * 2:
            raise ValueError("processes must be between 1 and twice the cores")
        if not 0 <= self.probes <= MAX_PROBES:
            raise ValueError(f"probes must be between 0 and {MAX_PROBES}")
        if not 0 <= self.load_nice <= 19:
            raise ValueError("load_nice must be between 0 and 19")


def run_viewers(config: ViewerRun, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    config.check()
    slots = schedule(config.shape, config.viewers, config.seconds, ramp=config.ramp,
                     rate=config.rate)
    probe_slots, load_slots = split_probes(slots, config.probe_count)
    varnish_before = edge.varnish_counters(config.varnish) if config.varnish else None
    origins_before = _read_origins(config)
    context = multiprocessing.get_context("fork")
    shares = [(LOAD, load_slots[i :: config.processes], config.load_nice)
              for i in range(config.processes)]
    shares = [share for share in shares if share[1]]
    if probe_slots:
        shares.append((PROBE, probe_slots, 0))
    counters: SynchronizedArray[float] = context.Array("d", _PROGRESS_FIELDS * len(shares))
    start_wall = time.time() + 0.5 + 0.0002 * config.viewers  # every process ready by then
    workers = []
    for index, (role, share, nice) in enumerate(shares):
        ours, theirs = context.Pipe(duplex=False)
        process = context.Process(
            target=_shard, args=(config, share, start_wall, counters, index, theirs, nice),
            daemon=True,
        )
        process.start()
        theirs.close()
        workers.append((process, ours, role))
    by_role = {PROBE: Figures(), LOAD: Figures()}
    steady: list[list[edge.OriginCounters]] = []  # the origins' counters after the warm-up

    def read_steady() -> None:
        if (counters_now := _read_origins(config)) is not None:
            steady.append(counters_now)

    try:
        for role, shard in _collect(config, start_wall, counters, workers, progress,
                                    read_steady):
            by_role[role].merge(shard)
    finally:
        for process, _, _ in workers:
            if process.is_alive():
                process.terminate()
    elapsed = time.time() - start_wall
    varnish_after = edge.varnish_counters(config.varnish) if config.varnish else None
    origins_after = _read_origins(config)
    summary = summarise(config, by_role[PROBE], by_role[LOAD], elapsed, varnish_before,
                        varnish_after, origins_before or [], origins_after or [])
    everyone = _merged(by_role[PROBE], by_role[LOAD])
    if config.origins and (origins_before is None or origins_after is None):
        summary["origin"]["unreadable"] = "an origin did not answer /metrics in time"
    if steady and origins_after and everyone.parts_measured:
        # After the warm-up: what the origins paid per part once viewers were watching,
        # tune-ins (master, bare playlist, init) left out as far as the ramp allows.
        by_object: dict[str, float] = {}
        for before, after in zip(steady[0], origins_after, strict=True):
            for kind, value in edge.difference(after.requests, before.requests).items():
                by_object[kind] = by_object.get(kind, 0) + value
        parts = len(everyone.parts_measured)
        summary["origin"]["steady"] = {
            "parts": parts,
            "by_object": by_object,
            "requests_per_part": sum(by_object.values()) / parts,
            "part_requests_per_part": by_object.get("part", 0) / parts,
            "playlist_requests_per_part": (
                by_object.get("blocking_playlist", 0) + by_object.get("playlist", 0)) / parts,
        }
    return summary


def _merged(*figures: Figures) -> Figures:
    everyone = Figures()
    for one in figures:
        everyone.merge(one)
    return everyone


def _read_origins(config: ViewerRun) -> list[edge.OriginCounters] | None:
    """Every origin's counters, or None when one does not answer (a saturated origin may
    not answer /metrics either: the run goes on without its figures)."""
    try:
        return [edge.origin_counters(url, config.metrics_token) for url in config.origins]
    except (OSError, ValueError):
        return None


def _collect(
    config: ViewerRun,
    start_wall: float,
    counters: SynchronizedArray[float],
    workers: list[tuple[Any, Pipe, str]],
    progress: Callable[[str], None] | None,
    at_warmup: Callable[[], None],
) -> list[tuple[str, Figures]]:
    """Each process's role and figures, as they come (read at once: a process blocks
    sending a large result until it is read), with a progress line every second
    meanwhile."""
    end = start_wall + config.seconds
    deadline = end + 60  # a process that has not answered by then never will
    results: list[tuple[str, Figures]] = []
    roles = {process: role for process, _, role in workers}
    waiting = {process: pipe for process, pipe, _ in workers}
    last_requests, last_at, shown = 0.0, time.time(), time.time()
    warm = False
    while waiting and time.time() < deadline:
        if not warm and time.time() >= start_wall + config.warmup:
            warm = True
            at_warmup()
        for process, pipe in list(waiting.items()):
            if pipe.poll(0.05):
                with contextlib.suppress(EOFError):  # it died; what it measured is lost
                    results.append((roles[process], pipe.recv()))
                del waiting[process]
            elif not process.is_alive() and not pipe.poll(0):
                del waiting[process]
        now = time.time()
        if now - shown < 1.0:
            continue
        shown = now
        values = counters[:]
        requests = sum(values[0::_PROGRESS_FIELDS])
        errors = sum(values[1::_PROGRESS_FIELDS])
        watching = sum(values[2::_PROGRESS_FIELDS])
        parts = sum(values[3::_PROGRESS_FIELDS])
        rate = (requests - last_requests) / max(now - last_at, 1e-6)
        last_requests, last_at = requests, now
        if progress is not None and now < end + 5:
            progress(
                f"{max(0.0, now - start_wall):5.1f}/{config.seconds:g} s  watching {watching:.0f}"
                f"  requests {requests:.0f} ({rate:.0f}/s)  parts {parts:.0f}  errors {errors:.0f}"
            )
    for process, _pipe, _role in workers:
        process.join(5)
    return results


def _shard(
    config: ViewerRun,
    slots: list[Slot],
    start_wall: float,
    counters: SynchronizedArray[float],
    index: int,
    pipe: Pipe,
    nice: int = 0,
) -> None:
    if nice:
        # A load process yields the cores to the servers and to the probe process: when
        # the machine is short of CPU it is the crowd that slows, not the measurement.
        os.nice(nice)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover (a dependency of golive)
        pass
    # Thousands of viewers allocate all the time; the collector's pauses would land in the
    # timings as server delay. What exists now is kept out of its sight, and it runs rarely.
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
    figures = asyncio.run(_watch(config, slots, start_wall, counters, index))
    pipe.send(figures)
    pipe.close()


async def _watch(
    config: ViewerRun,
    slots: list[Slot],
    start_wall: float,
    counters: SynchronizedArray[float],
    index: int,
) -> Figures:
    loop = asyncio.get_running_loop()
    target = Target.from_url(config.url)
    figures = Figures()
    cache = PlaylistCache()
    rng = random.Random(config.seed * 1000 + index)  # noqa: S311 (jitter, not secrets)
    start = loop.time() + max(0.0, start_wall - time.time())
    measure_from = time.monotonic() + (start - loop.time()) + config.warmup
    lag = loop.create_task(measure_loop_lag(figures))
    tasks: set[asyncio.Task[None]] = set()
    report = loop.create_task(_report(figures, tasks, counters, index))

    def leave(task: asyncio.Task[None]) -> None:
        task.cancel()

    for slot in sorted(slots, key=lambda s: s.join):
        delay = start + slot.join - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if loop.time() >= start + config.seconds:
            break
        viewer = Viewer(target, figures, cache, measure_from=measure_from,
                        switch_every=config.switch_every, rng=rng)
        task = loop.create_task(viewer.watch())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if slot.leave is not None:
            loop.call_at(start + slot.leave, leave, task)
    await asyncio.sleep(max(0.0, start + config.seconds - loop.time()))
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in (lag, report):
        task.cancel()
    await asyncio.gather(lag, report, return_exceptions=True)
    return figures


async def _report(
    figures: Figures, tasks: set[asyncio.Task[None]], counters: SynchronizedArray[float],
    index: int,
) -> None:
    base = index * _PROGRESS_FIELDS
    while True:
        counters[base] = sum(figures.requests.values())
        counters[base + 1] = sum(figures.errors.values())
        counters[base + 2] = len(tasks)
        counters[base + 3] = len(figures.part_ttfb)
        await asyncio.sleep(0.5)


def summarise(
    config: ViewerRun,
    probes: Figures,
    load: Figures,
    elapsed: float,
    varnish_before: dict[str, int] | None,
    varnish_after: dict[str, int] | None,
    origins_before: list[edge.OriginCounters],
    origins_after: list[edge.OriginCounters],
) -> dict[str, Any]:
    """Counts (viewers, requests, errors, parts) from every viewer; timings from the
    probes when there are any (`measured_by` says which), the load viewers' own timings
    beside them under `load` for comparison."""
    figures = _merged(probes, load)
    timed = probes if probes.started else figures
    viewer_requests = sum(figures.requests.values())
    timeouts = sum(n for kind, n in figures.errors.items() if kind.startswith("timeout"))
    summary: dict[str, Any] = {
        "target": config.url,
        "shape": config.shape,
        "seconds": round(elapsed, 2),
        "warmup": config.warmup,
        "processes": config.processes,
        "measured_by": "probes" if probes.started else "all viewers",
        "viewers": {
            "asked": config.viewers,
            "started": figures.started,
            "with_a_part": len(figures.first_part),
            "probes": probes.started,
            "probes_with_a_part": len(probes.first_part),
            "variants": figures.variants,
            "switches": figures.switches,
            "uris_on_other_hosts": figures.other_host,
        },
        "time_to_first_part": percentiles(timed.first_part),
        "blocking_reload_wait": percentiles(timed.reload_wait),
        "part_ttfb": percentiles(timed.part_ttfb),
        "latency": percentiles(timed.latency),
        "errors": {"total": sum(figures.errors.values()), "timeouts": timeouts,
                   "by_kind": dict(figures.errors),
                   "probes": sum(probes.errors.values())},
        "requests": {"total": viewer_requests, "per_second": viewer_requests / max(elapsed, 1e-6),
                     "by_object": dict(figures.requests)},
        "parts_seen": len(figures.parts_seen),
        "client": {
            # The measuring loop's lag: the probes' when there are probes.
            "loop_lag": percentiles(timed.loop_lag),
            "load_loop_lag": percentiles(load.loop_lag),
            "load_nice": config.load_nice,
        },
        "load": {
            "viewers": load.started,
            "time_to_first_part": percentiles(load.first_part),
            "part_ttfb": percentiles(load.part_ttfb),
            "latency": percentiles(load.latency),
        },
        "origin": {},
    }
    if origins_before and origins_after:
        by_object: dict[str, float] = {}
        for before, after in zip(origins_before, origins_after, strict=True):
            for kind, value in edge.difference(after.requests, before.requests).items():
                by_object[kind] = by_object.get(kind, 0) + value
        total = sum(by_object.values())
        summary["origin"] = {
            "processes": len(origins_after),
            "requests": total,
            "requests_per_second": total / max(elapsed, 1e-6),
            "per_object_per_second": {k: v / max(elapsed, 1e-6) for k, v in by_object.items()},
            "by_object": by_object,
            "requests_per_part": total / len(figures.parts_seen) if figures.parts_seen else None,
            "part_requests_per_part": (
                by_object.get("part", 0) / len(figures.parts_seen) if figures.parts_seen else None
            ),
            "shed": sum(a.shed - b.shed for a, b in zip(origins_after, origins_before,
                                                        strict=True)),
        }
        summary["collapse_factor"] = viewer_requests / total if total else None
    if varnish_before is not None and varnish_after is not None:
        delta = {k: varnish_after.get(k, 0) - varnish_before.get(k, 0) for k in varnish_after}
        looked_up = sum(delta.get(f"MAIN.{k}", 0) for k in (
            "cache_hit", "cache_miss", "cache_hitpass", "cache_hitmiss"))
        summary["edge"] = {
            "counters": delta,
            "hit_ratio": delta.get("MAIN.cache_hit", 0) / looked_up if looked_up else None,
            "backend_requests_per_second": delta.get("MAIN.backend_req", 0) / max(elapsed, 1e-6),
        }
        if not summary["origin"] and delta.get("MAIN.backend_req"):
            summary["collapse_factor"] = viewer_requests / delta["MAIN.backend_req"]
    return summary
