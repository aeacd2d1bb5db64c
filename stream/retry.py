"""One backoff for every retry loop of the worker: doubling pauses up to a cap.

Each loop keeps its own policy (what it retries, whether it ever gives up); the pause
between attempts is this one object, so the pauses are set in one place per loop.
"""

from __future__ import annotations

import asyncio

__all__ = ["Backoff"]


class Backoff:
    """Pauses of ``first`` seconds, doubling after each, at most ``cap``: ``await backoff.wait()``
    after each failed attempt."""

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap, got {first} and {cap}")
        self.first = first
        self.cap = cap
        self.delay = first

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self.delay = self.first
