"""The surge simulator's parts: what a virtual viewer reads from a playlist, the ramp
shapes, percentiles, what a publisher reads from a refusal, and the HTTP client's framing
against a real socket."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from ingest.gatekeeper import Grant, PublishRequest, Refusal
from surge import publishers
from surge.http import open_connection
from surge.playlist import parse_media, parse_multivariant
from surge.report import percentiles
from surge.run import ViewerRun, split_probes
from surge.shapes import schedule
from surge.viewers import Target
from tests.ingest.harness import FakeGatekeeper
from transcoder.hls.playlist import MediaPlaylist as Rendered
from transcoder.hls.playlist import Part, Segment, render_media_playlist


def live_playlist() -> str:
    segments = tuple(
        Segment(msn=m, duration=2.0, uri=f"seg-{m}.m4s", program_date_time=1000.0 + 2 * m,
                parts=tuple(Part(1 / 3, f"part-{m}.{i}.m4s", i == 0) for i in range(6)))
        for m in range(5, 10)
    )
    return render_media_playlist(Rendered(
        target_duration=2, part_target=0.334, init_uri="init-0.mp4", segments=segments,
        partial=(Part(1 / 3, "part-10.0.m4s", True), Part(1 / 3, "part-10.1.m4s", False)),
        partial_program_date_time=1020.0, preload_uri="part-10.2.m4s", media_sequence=5,
    ))


def test_a_viewer_reads_the_next_directives_the_hint_and_each_parts_date() -> None:
    playlist = parse_media(live_playlist())
    assert (playlist.next_msn, playlist.next_part) == (10, 2)
    assert playlist.hint_uri == "part-10.2.m4s"
    assert playlist.init_uri == "init-0.mp4"
    assert playlist.by_uri["part-10.1.m4s"].program_date_time == pytest.approx(1020 + 1 / 3)
    assert playlist.by_uri["part-9.5.m4s"].program_date_time == pytest.approx(1018 + 5 / 3)
    assert not playlist.ended


def test_after_a_segment_ends_the_next_directive_is_the_next_segments_first_part() -> None:
    text = live_playlist().replace('#EXT-X-PART:DURATION=0.33333,URI="part-10.0.m4s",'
                                   "INDEPENDENT=YES\n", "")
    text = text.replace('#EXT-X-PART:DURATION=0.33333,URI="part-10.1.m4s"\n', "")
    playlist = parse_media(text)
    assert (playlist.next_msn, playlist.next_part) == (10, 0)


def test_variants_come_with_their_bandwidth() -> None:
    text = (
        '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS="avc1.64001f"\n'
        "1/source/index.m3u8\n"
    )
    assert [(v.uri, v.bandwidth) for v in parse_multivariant(text)] == [
        ("1/source/index.m3u8", 3_000_000)
    ]


def test_a_viewer_never_leaves_the_address_it_was_given() -> None:
    target = Target.from_url("http://127.0.0.1:8000/live/c/master.m3u8")
    assert target.local_path("/live/c/master.m3u8", "7/source/index.m3u8") == (
        "/live/c/7/source/index.m3u8"
    )
    assert target.local_path("/live/c/7/source/index.m3u8", "https://s3.example/b/init.mp4") is None
    with pytest.raises(ValueError, match="http://"):
        Target.from_url("rtmp://127.0.0.1/live")


def test_the_shapes_arrive_at_the_launch_rate_lose_half_at_a_relaunch_and_hold_a_plateau() -> None:
    surge = schedule("surge", 1000, 60, rate=500)
    assert surge[-1].join == pytest.approx(2.0, abs=0.01)
    relaunch = schedule("relaunch", 100, 60)
    assert sum(s.leave == 30 for s in relaunch) == 100
    assert sum(s.join == 30 for s in relaunch) == 50
    plateau = schedule("plateau", 10, 60, ramp=5)
    assert max(s.join for s in plateau) < 5
    assert all(s.leave is None for s in plateau)


def test_runs_are_bounded_in_count_time_and_address() -> None:
    for bad in (dict(viewers=0), dict(viewers=10**6), dict(seconds=10**5),
                dict(url="ftp://x/y")):
        run = ViewerRun(**{"url": "http://127.0.0.1:1/m.m3u8", "viewers": 1, "seconds": 1,
                           **bad})
        with pytest.raises(ValueError, match=r"must be|http://"):
            run.check()


def test_percentiles_are_nearest_rank() -> None:
    figures = percentiles([float(n) for n in range(1, 101)])
    assert (figures["p50"], figures["p95"], figures["p99"], figures["max"]) == (50, 95, 99, 100)
    assert percentiles([])["p50"] is None


@pytest.mark.parametrize(("sentence", "reason", "wait"), [
    ("golive is at capacity (100 streams live). Try again in about 5 minutes.", "capacity", 300),
    ("golive is at capacity (1 stream live). Try again in about a minute.", "capacity", 60),
    ("golive is at capacity: the last 10 slots are kept for partner channels. Try again in "
     "about an hour.", "partner_reserve", 3600),
    ("golive is at capacity (3 streams live). No stream has ended in the last 30 minutes: "
     "try again later.", "capacity", None),
    ("Unknown or revoked stream key: copy the current key.", "unknown_key", None),
])
def test_a_publisher_reads_the_reason_and_the_wait_from_a_refusal(
    sentence: str, reason: str, wait: int | None
) -> None:
    assert publishers.reason_of(sentence) == reason
    assert publishers.wait_of(sentence) == wait


def test_the_client_reads_lengths_and_chunks_and_stamps_each_answer() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nAge: 3\r\n\r\nhello",
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 2\r\n\r\n"
        b"4\r\nbusy\r\n1\r\n!\r\n0\r\n\r\n",
    ]

    async def scenario() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await reader.readuntil(b"\r\n\r\n")
                for i in range(0, len(answer), 7):  # in pieces, as a network delivers
                    writer.write(answer[i : i + 7])
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = await open_connection("127.0.0.1", port)
        first = await connection.get("/a")
        second = await connection.get("/b")
        assert (first.status, first.body, first.headers["age"]) == (200, b"hello", "3")
        assert (second.status, second.body, second.headers["retry-after"]) == (503, b"busy!", "2")
        assert first.sent_at <= first.first_byte_at <= first.done_at
        connection.close()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_the_probes_are_taken_evenly_from_the_schedule_and_the_crowd_keeps_the_rest() -> None:
    slots = schedule("plateau", 1000, 60, ramp=10)
    probes, crowd = split_probes(slots, 20)
    assert len(probes) == 20
    assert len(crowd) == 980
    assert sorted(probes + crowd, key=lambda s: s.join) == slots  # each slot once
    joins = sorted(s.join for s in probes)
    assert joins[0] == 0
    assert 9 < joins[-1] < 10
    assert split_probes(slots[:1], 20) == (slots[:1], [])
    assert split_probes(slots, 0) == ([], slots)
    with pytest.raises(ValueError, match="probes"):
        ViewerRun("http://127.0.0.1:8000/live/c/master.m3u8", 10, 10, probes=-1).check()


@dataclass
class AddressBook(FakeGatekeeper):
    addresses: list[str] = field(default_factory=list)

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        self.addresses.append(request.peer_ip)
        return await super().admit(request)


def test_publishes_come_from_loopback_addresses_in_turn(start_ingest) -> None:
    keys = [f"key-{i}" for i in range(4)]
    gatekeeper = AddressBook(keys={key: f"channel-{i}" for i, key in enumerate(keys)})
    ingest = start_ingest(gatekeeper)
    url = f"rtmp://{ingest.host}:{ingest.port}/live"
    attempts = asyncio.run(publishers.surge([url], keys, 4, 0, hold=0, addresses=3))
    assert [a.admitted for a in attempts] == [True] * 4
    assert sorted(gatekeeper.addresses) == ["127.1.0.1", "127.1.0.1", "127.1.0.2", "127.1.0.3"]
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(publishers.surge(["rtmp://192.0.2.1/live"], keys, 1, 0, addresses=2))


def test_a_request_on_a_connection_the_edge_closed_while_idle_is_sent_again_once() -> None:
    """As a browser does (RFC 9110, 9.2.2): the edge's idle timeout can close a kept-alive
    connection as the next request goes out; that is no viewer error. A connection that
    closes on its first request is one."""
    import random

    from surge.playlist import PlaylistCache
    from surge.viewers import Figures, Viewer, _Failed

    async def scenario() -> None:
        answered_first_only = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal answered_first_only
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next one: closed unanswered
            answered_first_only += 1
            writer.close()

        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        for handler, expect_failure in ((serve, False), (refuse, True)):
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            figures = Figures()
            viewer = Viewer(Target("127.0.0.1", port, "/m.m3u8"), figures, PlaylistCache(),
                            measure_from=0.0, switch_every=0.0, rng=random.Random(1))
            if expect_failure:
                with pytest.raises(_Failed, match="connection master"):
                    await viewer._get("playlist", "/m.m3u8", "master", 2.0)
                assert figures.requests["sent again"] == 0
            else:
                first = await viewer._get("playlist", "/m.m3u8", "master", 2.0)
                second = await viewer._get("playlist", "/m.m3u8", "master", 2.0)
                assert (first.body, second.body) == (b"ok", b"ok")
                assert figures.requests["sent again"] == 1
                assert answered_first_only == 1
            for connection in (viewer._playlist_conn, viewer._part_conn):
                if connection is not None:
                    connection.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
