"""The join coalescer: one script call in flight per event, the joins that arrive
meanwhile in the next one, in the order they came."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import gateway.joiner
from gateway.joiner import JoinCoalescer
from waitroom.tickets import JoinCode, JoinResult


class _Script:
    """A stand-in for join_batch: numbers clients in order; each call waits for release."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        self.fail_next = False
        self.seq = 0

    async def __call__(
        self, scripts: Any, event_id: str, clients: Sequence[str], *args: Any
    ) -> list[JoinResult]:
        self.calls.append((event_id, list(clients)))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            if self.fail_next:
                self.fail_next = False
                raise ConnectionError("redis went away")
        finally:
            self.in_flight -= 1
        results = []
        for _ in clients:
            self.seq += 1
            results.append(JoinResult(JoinCode.ISSUED, self.seq, False, 0, 0))
        return results


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_joins_that_come_during_a_call_go_together_in_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = _Script()
    monkeypatch.setattr(gateway.joiner, "join_batch", script)
    joiner = JoinCoalescer(None, 10, 1000)  # type: ignore[arg-type]
    first = [asyncio.ensure_future(joiner.join("camp", f"a{i}")) for i in range(3)]
    await _settle()
    assert script.calls == [("camp", ["a0", "a1", "a2"])]
    # While that call is under way, more come, over several turns of the loop.
    later = []
    for i in range(4):
        later.append(asyncio.ensure_future(joiner.join("camp", f"b{i}")))
        await _settle()
    other = asyncio.ensure_future(joiner.join("pool", "c0"))  # another event is not held
    await _settle()
    assert script.calls[1] == ("pool", ["c0"])
    assert len(script.calls) == 2
    script.release.set()
    results = await asyncio.gather(*first, *later, other)
    assert script.calls[2] == ("camp", ["b0", "b1", "b2", "b3"])
    camp = [r.arrival for r in results[:7]]
    assert camp == sorted(camp)  # in the order they reached the gateway
    assert script.most_in_flight == 2  # one per event
    await joiner.drain()


async def test_a_failed_call_fails_its_joins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    script = _Script()
    script.fail_next = True
    monkeypatch.setattr(gateway.joiner, "join_batch", script)
    joiner = JoinCoalescer(None, 10, 1000)  # type: ignore[arg-type]
    doomed = asyncio.ensure_future(joiner.join("camp", "a"))
    await _settle()
    waiting = asyncio.ensure_future(joiner.join("camp", "b"))
    await _settle()
    script.release.set()
    with pytest.raises(ConnectionError):
        await doomed
    assert (await waiting).code is JoinCode.ISSUED  # sent after the failure, not lost
    assert [clients for _, clients in script.calls] == [["a"], ["b"]]


async def test_a_batch_never_exceeds_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    script = _Script()
    script.release.set()
    monkeypatch.setattr(gateway.joiner, "join_batch", script)
    joiner = JoinCoalescer(None, 10, 1000)  # type: ignore[arg-type]
    n = gateway.joiner.MAX_BATCH * 2 + 5
    results = await asyncio.gather(*(joiner.join("camp", str(i)) for i in range(n)))
    assert [len(clients) for _, clients in script.calls] == [256, 256, 5]
    assert [r.arrival for r in results] == list(range(1, n + 1))


async def test_a_short_answer_fails_its_joins_and_frees_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = _Script()
    script.release.set()
    answers: Iterator[list[JoinResult] | None] = iter([[], None])

    async def short_once(*args: Any) -> list[JoinResult]:
        answer = next(answers)
        return answer if answer is not None else await script(*args)

    monkeypatch.setattr(gateway.joiner, "join_batch", short_once)
    joiner = JoinCoalescer(None, 10, 1000)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await joiner.join("camp", "a")
    assert (await joiner.join("camp", "b")).code is JoinCode.ISSUED
