"""One backoff for every retry loop of the worker: doubling pauses up to a cap; and the one
policy of the start-up waits for Kafka and Redis (``StartupWait``).

Each loop keeps its own policy (what it retries, whether it ever gives up); the pause
between attempts is this one object, so the pauses are set in one place per loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stream.health import Problem

__all__ = ["Backoff", "StartupWait"]


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


class StartupWait:
    """How the worker waits at start-up for a service it cannot run without (Kafka, Redis).

    After each failed attempt the caller says which kind it was. ``unreachable``: the service did
    not answer; it counts towards ``attempts`` (after the last one the caller gives up), with one
    warning line each. ``denied``: it answered but refuses this worker (a login, a certificate, an
    ACL); one error line, again only when the reason changes, and retried without giving up, for an
    operator can fix it at the service. Either way ``report`` (the interim /health) gets the reason,
    then the backoff waits.
    """

    def __init__(self, log: logging.Logger, attempts: int, report: Callable[[str], None] | None = None,
                 backoff: Backoff | None = None) -> None:
        self.log = log
        self.attempts = attempts
        self.report = report
        self.backoff = backoff or Backoff(0.5, 5.0)
        self.failures = 0  # unreachable attempts so far
        self.last = ""  # the latest failure's reason ("" before any)

    @property
    def waited(self) -> bool:
        """Whether any attempt failed."""
        return bool(self.last)

    async def unreachable(self, line: str, reason: str) -> bool:
        """Log ``line`` with the attempt's number; False when that was the last attempt (no wait),
        else report ``reason``, wait and return True."""
        self.failures += 1
        self.log.warning("%s (attempt %d/%d)", line, self.failures, self.attempts)
        self.last = reason
        if self.failures >= self.attempts:
            return False
        await self._wait(reason)
        return True

    async def denied(self, problem: Problem) -> None:
        """Log ``problem`` unless it is the reason already logged; report it and wait."""
        if problem.reason != self.last:
            self.log.error("%s", problem.logged("not ready until it is fixed"))
        self.last = problem.reason
        await self._wait(problem.reason)

    async def _wait(self, reason: str) -> None:
        if self.report is not None:
            self.report(reason)
        await self.backoff.wait()
