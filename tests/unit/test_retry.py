"""The one backoff of the worker's retry loops, and the one start-up wait policy (Kafka, Redis)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stream import retry
from stream.health import Problem
from stream.retry import Backoff, StartupWait


def test_pauses_double_up_to_the_cap_and_reset_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    backoff = Backoff(0.5, 5.0)

    async def run() -> None:
        for _ in range(6):
            await backoff.wait()
        backoff.reset()
        await backoff.wait()

    asyncio.run(run())
    assert slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 0.5]


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_a_backoff_that_would_never_wait_or_shrink_is_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first, cap)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


def startup_wait(monkeypatch: pytest.MonkeyPatch,
                 attempts: int) -> tuple[StartupWait, Recorder, list[str], list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    log = logging.getLogger(f"test.startup.{attempts}")
    log.propagate = False
    recorder = Recorder()
    log.handlers = [recorder]
    log.setLevel(logging.DEBUG)
    reported: list[str] = []
    return StartupWait(log, attempts, reported.append), recorder, reported, slept


def test_only_unreachable_attempts_count_and_the_last_one_gives_up_without_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    wait, recorder, reported, slept = startup_wait(monkeypatch, 3)
    denied = Problem("kafka: user 'w' is not authorized", "where")

    async def run() -> list[bool]:
        assert not wait.waited
        out = [await wait.unreachable("kafka at h:1 not reachable: E", "waiting for kafka")]
        for _ in range(5):  # refusals never use up attempts
            await wait.denied(denied)
        out.append(await wait.unreachable("kafka at h:1 not reachable: E", "waiting for kafka"))
        out.append(await wait.unreachable("kafka at h:1 not reachable: E", "waiting for kafka"))
        return out

    assert asyncio.run(run()) == [True, True, False]
    assert wait.waited
    assert recorder.lines == [("WARNING", "kafka at h:1 not reachable: E (attempt 1/3)"),
                              ("ERROR", "kafka: user 'w' is not authorized; not ready until it is fixed (where)"),
                              ("WARNING", "kafka at h:1 not reachable: E (attempt 2/3)"),
                              ("WARNING", "kafka at h:1 not reachable: E (attempt 3/3)")]
    assert reported == ["waiting for kafka", *[denied.reason] * 5, "waiting for kafka"]  # none for the last
    assert slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_a_refusal_is_logged_once_per_changed_reason_and_again_after_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    wait, recorder, reported, _ = startup_wait(monkeypatch, 60)
    first, second = Problem("no Write on 'dead'"), Problem("no Read on 'reviews'")

    async def run() -> None:
        for problem in (first, first, second, second, first):
            await wait.denied(problem)
        await wait.unreachable("redis unavailable", "redis unavailable")
        await wait.denied(first)

    asyncio.run(run())
    errors = [line for level, line in recorder.lines if level == "ERROR"]
    assert errors == [f"{p.reason}; not ready until it is fixed" for p in (first, second, first, first)]
    assert reported == [first.reason] * 2 + [second.reason] * 2 + [first.reason, "redis unavailable", first.reason]
