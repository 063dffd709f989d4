"""The embedded transcode pool, on generated media through the ingest's packager sink and
the real delivery (memory live index, a local segment store): degrade, then upgrade.

A pool of one session: the first transcoded publish takes it, a second one granted a slot
waits source-only, a third goes source-only until its grant changes. When the first ends,
the waiting one's session starts, joining its publish: its rung is cut as its source is
from the next segment on. A session stuck behind real time drops from its bounded inbox,
and `/metrics` says so (and keeps counting after it ended)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from ingest.gatekeeper import EndReason, Grant
from ingest.packaging import PackagerSink
from tests.transcoder.cmaf.media import Clip, demux_flv, encode_flv_cli
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.ladder import parse_ladder
from transcoder.live_index import MemoryLiveIndex
from transcoder.packets import MediaPacket
from transcoder.session import SessionStats

pytestmark = pytest.mark.django_db(transaction=True)  # the source's end records its VOD

SETTINGS = PackagerSettings(part_target=0.334, max_segment_duration=2.0)
LADDER = parse_ladder("120p30:214x120@30:250k")


@pytest.fixture(scope="module")
def clip() -> Clip:
    return demux_flv(encode_flv_cli(8, width=320, height=180, rate=30))


def packets(clip: Clip, since: int = 0, until: int = 10**9) -> list[MediaPacket]:
    chosen = [f.packet() for f in clip.frames if since <= f.timestamp < until]
    return ([*clip.headers(), *chosen]) if since == 0 else chosen


def scrape() -> dict[str, float]:
    from delivery.transcoding import TranscodeCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TranscodeCollector())
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_a_waiting_publish_gets_its_ladder_when_a_session_frees_cut_like_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Clip,
) -> None:
    from delivery import transcoding
    from delivery.segment_store import SegmentStore

    index = MemoryLiveIndex()
    store = SegmentStore(FileSystemStorage(tmp_path, base_url="/media/"))
    monkeypatch.setattr(transcoding, "live_index", lambda: index)
    monkeypatch.setattr(transcoding, "segment_store", lambda: store)

    started = time.monotonic()

    async def paced(packet: MediaPacket) -> None:
        # Twice real time: live sessions shed what they cannot keep up with, and a loaded
        # machine would otherwise make the rungs lose frames the assertions count.
        await asyncio.sleep(max(0.0, started + packet.timestamp / 2000 - time.monotonic()))

    async def scenario() -> dict[str, Any]:
        pool = transcoding.TranscodePool(1, LADDER, SETTINGS)
        grants = {"a": Grant(991, "a"), "b": Grant(992, "b"),
                  "c": Grant(993, "c", transcode=False)}
        outputs, sinks = {}, {}
        for name, grant in grants.items():
            outputs[name] = output = pool.output_for(grant)
            sinks[name] = PackagerSink(Packager(output, SETTINGS), grant=grant,
                                       tap=pool.tap_for(grant, output))
        seen = {"start": (len(pool.running), len(pool.waiting), scrape())}
        for packet in packets(clip, until=3000):
            for sink in sinks.values():
                sink.media(packet)
            await paced(packet)
        sinks["c"].regrant(replace(grants["c"], transcode=True))
        assert outputs["c"] in pool.waiting  # granted, but the one session is taken

        sinks["a"].end(EndReason.PUBLISHER_STOPPED)
        for _ in range(300):
            if outputs["b"].session is not None:
                break
            await asyncio.sleep(0.02)
        seen["upgraded"] = (outputs["b"].joined, len(pool.running), len(pool.waiting))
        for packet in packets(clip, since=3000):
            for name in ("b", "c"):
                sinks[name].media(packet)
            await paced(packet)
        for name in ("b", "c"):
            sinks[name].end(EndReason.PUBLISHER_STOPPED)
        for _ in range(500):
            if all(o.source.worker.done() for o in outputs.values()):
                break
            await asyncio.sleep(0.02)
        seen["windows"] = {
            (name, rendition): await index.snapshot(f"s{grants[name].session_id}", rendition)
            for name in ("a", "b", "c") for rendition in ("source", "120p30")
        }
        seen["end"] = (len(pool.running), len(pool.waiting), scrape())
        return seen

    seen = asyncio.run(scenario())
    running, waiting, metrics = seen["start"]
    assert (running, waiting) == (1, 1)
    assert metrics["golive_transcode_sessions"] == 1
    assert metrics["golive_transcode_sessions_waiting"] == 1
    assert seen["upgraded"] == (True, 1, 1)  # b joined its publish; c still waits

    windows = seen["windows"]
    assert windows[("c", "120p30")] is None  # c never got a session
    for name in ("a", "b"):
        source, rung = windows[(name, "source")], windows[(name, "120p30")]
        assert rung is not None, name
        assert rung.ended
        rung_msns = [s.msn for s in rung.segments]
        source_msns = [s.msn for s in source.segments]
        # b's rung starts at a segment after its session joined, a's at the first.
        first = rung_msns[0]
        assert (first == 0) == (name == "a"), (name, rung_msns)
        assert rung_msns == source_msns[source_msns.index(first):], name
        for mine, theirs in zip(rung.segments, source.segments[first:], strict=True):
            assert [p.index for p in mine.parts] == [p.index for p in theirs.parts]
            assert abs(mine.duration - theirs.duration) < 1 / 30 + 0.002
            assert mine.parts[0].independent

    running, waiting, metrics = seen["end"]
    assert (running, waiting) == (0, 0)
    assert metrics["golive_transcode_upgrades_total"] == 1
    assert metrics["golive_transcode_sessions"] == 0


def test_a_session_behind_real_time_drops_and_metrics_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Clip,
) -> None:
    """The feeder is held (a machine that cannot keep up) while 16 s of media arrive at
    once: the inbox (about 5 s) drops what does not fit, and /metrics counts it, after the
    end too."""
    from delivery import transcoding
    from delivery.segment_store import SegmentStore

    index = MemoryLiveIndex()
    store = SegmentStore(FileSystemStorage(tmp_path, base_url="/media/"))
    monkeypatch.setattr(transcoding, "live_index", lambda: index)
    monkeypatch.setattr(transcoding, "segment_store", lambda: store)
    gate = threading.Event()
    rung_output = transcoding.TranscodedOutput._rung_output

    def held(self: Any, name: str) -> Any:
        gate.wait(30)
        return rung_output(self, name)

    monkeypatch.setattr(transcoding.TranscodedOutput, "_rung_output", held)
    before = scrape().get("golive_transcode_packets_dropped_total", 0)

    async def scenario() -> tuple[dict[str, float], dict[str, float]]:
        pool = transcoding.TranscodePool(1, LADDER, SETTINGS)
        grant = Grant(994, "slow")
        output = pool.output_for(grant)
        sink = PackagerSink(Packager(output, SETTINGS), grant=grant,
                            tap=pool.tap_for(grant, output))
        for packet in [*packets(clip), *packets(clip.shifted(8000), since=8000)]:
            sink.media(packet)
        live = scrape()
        gate.set()
        sink.end(EndReason.PUBLISHER_STOPPED)
        for _ in range(500):
            if output.source.worker.done():
                break
            await asyncio.sleep(0.02)
        return live, scrape()

    live, ended = asyncio.run(scenario())
    assert live["golive_transcode_packets_dropped_total"] - before > 0
    assert ended["golive_transcode_packets_dropped_total"] == live[
        "golive_transcode_packets_dropped_total"]
    assert ended["golive_transcode_sessions"] == 0


def test_each_publish_is_transcoded_with_its_channels_ladder_else_the_pools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The grant's ladder (the channel's) is the one its session starts with, at once or
    on an upgrade; without one the pool's; with no rungs the publish is not wrapped at
    all (source only, nothing to upgrade)."""
    from delivery import transcoding
    from delivery.pipeline import DeliveryOutput
    from delivery.segment_store import SegmentStore

    index = MemoryLiveIndex()
    store = SegmentStore(FileSystemStorage(tmp_path, base_url="/media/"))
    monkeypatch.setattr(transcoding, "live_index", lambda: index)
    monkeypatch.setattr(transcoding, "segment_store", lambda: store)
    started: dict[str, tuple[Any, ...]] = {}

    class Session:
        """Records the ladder a session is started with; transcodes nothing."""

        def __init__(self, ladder: Any, make_output: Any, settings: Any, *, name: str,
                     on_end: Any, **_: Any) -> None:
            started[name.split()[0]] = tuple(ladder)
            self.on_end = on_end

        def media(self, packet: MediaPacket) -> None:
            pass

        def end(self) -> None:
            self.on_end(SessionStats(0, 0, 0, (), None))

    monkeypatch.setattr(transcoding, "TranscodeSession", Session)
    own = parse_ladder("90p30:160x90@30:150k")

    async def scenario() -> dict[str, Any]:
        pool = transcoding.TranscodePool(4, LADDER, SETTINGS)
        outputs = {
            "own": pool.output_for(Grant(995, "own", ladder=own)),
            "default": pool.output_for(Grant(996, "default")),
            "upgraded": pool.output_for(Grant(997, "upgraded", transcode=False, ladder=own)),
            "plain": pool.output_for(Grant(998, "plain", ladder=())),
        }
        before = dict(started)
        upgraded = outputs["upgraded"]
        assert isinstance(upgraded, transcoding.TranscodedOutput)
        upgraded.regrant(Grant(997, "upgraded", transcode=True, ladder=own))
        for output in outputs.values():
            output.end()
        workers = [getattr(o, "source", o).worker for o in outputs.values()]
        await asyncio.wait_for(asyncio.gather(*workers), 10)
        return {"before": before, "outputs": outputs}

    seen = asyncio.run(scenario())
    assert seen["before"] == {"own": own, "default": LADDER}
    assert started == {"own": own, "default": LADDER, "upgraded": own}
    assert isinstance(seen["outputs"]["plain"], DeliveryOutput)  # no tap, no session


@pytest.mark.parametrize("back_after", [0.0, 0.5], ids=["at-once", "after-half-a-second"])
def test_a_reconnect_within_the_grace_carries_the_ladder_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Clip, back_after: float,
) -> None:
    """An encoder's network blips: the connection drops, the publisher reconnects into
    the same session (its packager parked in the grace, its clock restarting at zero).
    The rung's playlist is paused, not ended, and carries on with the source's next
    segment: one rendition, every segment of the source from the first to the last, cut
    like the source's, with no end in between. At once (a takeover: the last session may
    still be flushing) or half a second later."""
    from delivery import transcoding
    from delivery.segment_store import SegmentStore
    from ingest.packaging import ReconnectGrace, packager_sink_factory

    index = MemoryLiveIndex()
    store = SegmentStore(FileSystemStorage(tmp_path, base_url="/media/"))
    monkeypatch.setattr(transcoding, "live_index", lambda: index)
    monkeypatch.setattr(transcoding, "segment_store", lambda: store)

    async def paced_from(started: float, timestamp: int) -> None:
        await asyncio.sleep(max(0.0, started + timestamp / 2000 - time.monotonic()))

    async def scenario() -> dict[str, Any]:
        async def never_over(_grant: Grant) -> bool:
            return False

        pool = transcoding.TranscodePool(1, LADDER, SETTINGS)
        grace = ReconnectGrace(30.0, never_over)
        factory = packager_sink_factory(pool.output_for, SETTINGS, grace=grace,
                                        tap=pool.tap_for)
        grant = Grant(995, "blip")
        sink = factory(grant)
        started = time.monotonic()
        for packet in packets(clip, until=4000):
            sink.media(packet)
            await paced_from(started, packet.timestamp)
        sink.end(EndReason.CONNECTION_LOST)
        output = grace._parked[grant.session_id][1].output
        await asyncio.sleep(back_after)
        paused = await index.snapshot("s995", "120p30")
        at_drop = await index.snapshot("s995", "source")
        again = factory(replace(grant, resumed=True))
        assert again._tap is output, "the reconnect's packets reach the ladder"
        # The new connection's clock starts again at zero, with its own headers.
        second = [*clip.headers(), *[
            replace(p, timestamp=p.timestamp - 4000) for p in packets(clip, since=4000)]]
        started = time.monotonic()
        for packet in second:
            again.media(packet)
            await paced_from(started, packet.timestamp)
        again.end(EndReason.PUBLISHER_STOPPED)  # parked again: it may still come back
        grace.end_all()  # it does not: its grace ends (as at a shutdown)
        for _ in range(500):
            if output.source.worker.done():
                break
            await asyncio.sleep(0.02)
        return {
            "paused": paused,
            "at_drop": at_drop,
            "source": await index.snapshot("s995", "source"),
            "rung": await index.snapshot("s995", "120p30"),
            "running": len(pool.running),
        }

    seen = asyncio.run(scenario())
    source, rung = seen["source"], seen["rung"]
    assert seen["paused"] is not None
    assert not seen["paused"].ended, "paused, not ended"
    assert rung is not None
    assert rung.ended
    assert source.ended
    source_msns = [s.msn for s in source.segments]
    rung_msns = [s.msn for s in rung.segments]
    assert rung_msns == source_msns, (rung_msns, source_msns)
    assert not any(s.gap for s in rung.segments)
    dropped_in = max(s.msn for s in seen["at_drop"].segments)
    assert max(rung_msns) > dropped_in + 1, "the rung carried on after the reconnect"
    for mine, theirs in zip(rung.segments, source.segments, strict=True):
        assert [p.index for p in mine.parts] == [p.index for p in theirs.parts], mine.msn
        assert abs(mine.duration - theirs.duration) < 1 / 30 + 0.002, mine.msn
        assert mine.parts[0].independent
    assert seen["running"] == 0
