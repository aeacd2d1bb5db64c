"""The one backoff of the worker's retry loops."""

from __future__ import annotations

import asyncio

import pytest

from stream import retry
from stream.retry import Backoff


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
