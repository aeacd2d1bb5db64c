"""A result kept fresh in the background while callers keep asking: one computation at a time
whatever the number of callers, spaced so that it takes at most a share of the event loop.

``/kpis`` and ``/metrics`` use it for their snapshot (``stream.snapshot``), ``/health`` for its
Redis PING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["BEHIND_SHARE", "KEEP_WARM_SECONDS", "MAX_AGE_SECONDS", "MAX_SHARE", "REFRESH_SECONDS", "Refreshed",
           "Timed"]

log = logging.getLogger("stream.web")
T = TypeVar("T")
REFRESH_SECONDS = 0.1  # ADVOCACY_WEB_REFRESH_SECONDS: the least time between two snapshots
MAX_AGE_SECONDS = 1.0  # Refreshed's default: a computation at least this often while polled, changed or not
KEEP_WARM_SECONDS = 10.0  # computations go on this long after the latest request
MAX_SHARE = 0.05  # of the worker's time spent on the snapshot for /kpis and /metrics, at most
BEHIND_SHARE = 0.01  # the same while the worker is behind: its numbers are behind anyway


class Refreshed(Generic[T]):
    """The latest result of ``compute``, kept fresh in the background while callers keep asking.

    One computation at a time, on its own task (a caller that goes away cancels nothing),
    whatever the number of callers. The first caller after a quiet spell (nobody asked for
    ``keep_warm`` seconds, or never) starts a background task and waits for its first result.
    While callers keep coming, the task computes again as soon as ``spacing`` has passed
    since the latest computation started and either ``changed()`` was called since or
    ``max_age`` has passed; callers get the latest result at once. So a result served is at
    most ``spacing`` plus one computation behind a change ``changed()`` signals, ``max_age``
    plus one computation behind anything else; with no change, a computation per ``max_age``.
    (The /kpis snapshot computes every ``interval``, ``max_age`` being the same: a computation
    that finds nothing changed is cheap, ``stream.snapshot.LatestTotals``.)

    ``spacing`` is ``interval``, or the event loop's time that the latest computation took
    (``Timed``) divided by ``max_share()`` if that is longer: computing never takes more
    than that share of the worker's time, however costly it becomes (a large state).
    """

    def __init__(self, compute: Callable[[], Coroutine[Any, Any, T]], interval: float = REFRESH_SECONDS,
                 max_age: float = MAX_AGE_SECONDS, keep_warm: float = KEEP_WARM_SECONDS,
                 max_share: Callable[[], float] = lambda: MAX_SHARE) -> None:
        self._compute = compute
        self.interval = interval
        self.max_age = max(max_age, interval)
        self.keep_warm = keep_warm
        self.max_share = max_share
        self.took = 0.0  # the event loop's time the latest computation took
        self.runs = 0
        self._latest: tuple[T] | None = None  # a tuple: a result may be None
        self._started = -math.inf  # when the latest computation started (time.monotonic)
        self._asked = -math.inf
        self._dirty = True
        self._wake = asyncio.Event()
        self._next: asyncio.Future[T] | None = None  # the running computation's result, for the cold
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def spacing(self) -> float:
        return max(self.interval, self.took / self.max_share())

    @property
    def warm(self) -> bool:
        """Whether the background task runs (and so the latest result is current)."""
        return self._task is not None

    def changed(self) -> None:
        """The state changed (this worker stored a batch): compute again once the spacing allows."""
        self._dirty = True
        self._wake.set()

    async def get(self) -> T:
        self._asked = time.monotonic()
        if self._task is None:  # cold: the latest result may be old; wait for a new one
            self._latest = None
            self._next = asyncio.get_running_loop().create_future()
            self._task = asyncio.ensure_future(self._refresh())
            return await asyncio.shield(self._next)
        if self._latest is None:
            assert self._next is not None
            return await asyncio.shield(self._next)
        return self._latest[0]

    async def _refresh(self) -> None:
        try:
            while True:
                await self._run()
                if not await self._due():
                    return
        finally:
            self._task = None
            if self._next is not None and not self._next.done():  # failing for longer than keep_warm
                self._next.set_exception(RuntimeError("no snapshot computed"))
                self._next.exception()

    async def _due(self) -> bool:
        """Wait until the next computation is due; False when nobody asked for ``keep_warm`` s."""
        while True:
            now = time.monotonic()
            if now - self._asked > self.keep_warm:
                return False
            wait = self._started + self.spacing - now
            if wait <= 0:
                if self._dirty:
                    return True
                wait = self._started + self.max_age - now
                if wait <= 0:
                    return True
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, self._asked + self.keep_warm - now))
            else:
                await asyncio.sleep(wait)

    async def _run(self) -> None:
        self.runs += 1
        self._started = time.monotonic()
        self._dirty = False
        waiting = self._next
        timed = Timed(self._compute())
        try:
            value = await timed
        except asyncio.CancelledError:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            raise
        except Exception as exc:
            self._dirty = True  # try again once the spacing allows (or with the next caller)
            if waiting is not None and not waiting.done():
                waiting.set_exception(exc)
                waiting.exception()  # retrieved: no "never retrieved" warning when nobody waits
            if self._latest is None:
                self._next = asyncio.get_running_loop().create_future()
            if not self._failing:
                log.exception("computing a snapshot failed; trying again")
            self._failing = True
            return
        finally:
            self.took = timed.busy
        self._latest, self._failing = (value,), False
        if waiting is not None and not waiting.done():
            waiting.set_result(value)
        self._next = None


class Timed(Generic[T]):
    """Awaits a coroutine and measures ``busy``: the time the event loop spent running it, between
    its suspensions, not the time it waited (for Redis, or while the loop ran batches)."""

    def __init__(self, coroutine: Coroutine[Any, Any, T]) -> None:
        self.coroutine = coroutine
        self.busy = 0.0

    def __await__(self) -> Generator[Any, Any, T]:
        steps = self.coroutine.__await__()
        send: Any = None
        error: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                suspended = steps.throw(error) if error is not None else steps.send(send)
            except StopIteration as done:
                self.busy += time.perf_counter() - started
                return done.value  # type: ignore[no-any-return]
            except BaseException:
                self.busy += time.perf_counter() - started
                raise
            self.busy += time.perf_counter() - started
            try:
                send, error = (yield suspended), None
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task (a cancellation): into the coroutine
                send, error = None, exc

