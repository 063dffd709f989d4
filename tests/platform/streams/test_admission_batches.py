"""Publishes that arrive while others are being decided are decided together
(`streams.gatekeeper.Batches`): a lone publish goes at once and alone; a surge forms
batches of what arrived meanwhile; every publish gets its own answer, or its batch's error."""

from __future__ import annotations

import asyncio

import pytest

from ingest.gatekeeper import Grant, PublishRequest, Refusal, RefusalCode
from streams.gatekeeper import Batches


def request(n: int) -> PublishRequest:
    return PublishRequest("live", f"key-{n}", "198.51.100.7", "ingest-a")


class Decider:
    """Answers each publish with a grant numbered after its key; holds each batch until
    let go (``hold``), and fails a batch holding a key in ``failing``."""

    def __init__(self, hold: bool = False, failing: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.hold = hold
        self.failing = failing
        self.go = asyncio.Event()

    async def __call__(self, requests: list[PublishRequest]) -> list[Grant | Refusal]:
        self.batches.append([r.key for r in requests])
        if self.hold:
            await self.go.wait()
        if self.failing & {r.key for r in requests}:
            raise RuntimeError("the database went away")
        return [Grant(int(r.key.removeprefix("key-")), r.key) for r in requests]


def test_a_lone_publish_is_decided_at_once_and_alone() -> None:
    async def scenario() -> None:
        decider = Decider()
        batches = Batches(decider, lanes=2)
        answer = await asyncio.wait_for(batches.admit(request(7)), 1)
        assert answer == Grant(7, "key-7")
        assert decider.batches == [["key-7"]]
        assert batches.sizes == {1: 1}

    asyncio.run(scenario())


def test_publishes_that_arrive_while_the_lanes_are_busy_go_together_each_with_its_answer(
) -> None:
    async def scenario() -> None:
        decider = Decider(hold=True)
        batches = Batches(decider, lanes=2)
        tasks = [asyncio.ensure_future(batches.admit(request(n))) for n in range(12)]
        await asyncio.sleep(0.01)
        # Two went at once, one per lane; the other ten wait for a lane, together.
        assert decider.batches == [["key-0"], ["key-1"]]
        decider.go.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 1)
        assert [a.session_id for a in answers if isinstance(a, Grant)] == list(range(12))
        assert decider.batches[2] == [f"key-{n}" for n in range(2, 12)]
        assert batches.sizes == {1: 2, 10: 1}

    asyncio.run(scenario())


def test_a_batch_is_at_most_the_largest_asked() -> None:
    async def scenario() -> None:
        decider = Decider(hold=True)
        batches = Batches(decider, lanes=1, most=4)
        tasks = [asyncio.ensure_future(batches.admit(request(n))) for n in range(10)]
        await asyncio.sleep(0.01)
        decider.go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 1)
        assert [len(batch) for batch in decider.batches] == [1, 4, 4, 1]

    asyncio.run(scenario())


def test_a_batch_that_fails_fails_its_own_publishes_only_and_the_next_batch_goes_on() -> None:
    async def scenario() -> None:
        decider = Decider(hold=True, failing=frozenset({"key-3"}))
        batches = Batches(decider, lanes=1, most=3)
        tasks = [asyncio.ensure_future(batches.admit(request(n))) for n in range(7)]
        await asyncio.sleep(0.01)
        decider.go.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1)
        assert decider.batches == [["key-0"], ["key-1", "key-2", "key-3"],
                                   ["key-4", "key-5", "key-6"]]
        assert answers[0] == Grant(0, "key-0")
        assert all(isinstance(a, RuntimeError) for a in answers[1:4])
        assert [a.session_id for a in answers[4:] if isinstance(a, Grant)] == [4, 5, 6]
        # The lane was given back: a publish after all that is decided at once.
        assert await asyncio.wait_for(batches.admit(request(9)), 1) == Grant(9, "key-9")

    asyncio.run(scenario())


def test_a_refusal_reaches_its_own_publisher() -> None:
    async def decide(requests: list[PublishRequest]) -> list[Grant | Refusal]:
        return [Refusal(RefusalCode.REJECTED, "capacity", r.key) for r in requests]

    async def scenario() -> list[Grant | Refusal]:
        batches = Batches(decide, lanes=1)
        return list(await asyncio.gather(*(batches.admit(request(n)) for n in range(5))))

    answers = asyncio.run(scenario())
    assert [a.description for a in answers if isinstance(a, Refusal)] == [
        f"key-{n}" for n in range(5)]


@pytest.mark.parametrize("lanes", [0, -1])
def test_batches_need_a_lane(lanes: int) -> None:
    async def decide(requests: list[PublishRequest]) -> list[Grant | Refusal]:
        return []

    with pytest.raises(ValueError, match="lane"):
        Batches(decide, lanes=lanes)
