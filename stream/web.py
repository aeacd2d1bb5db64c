"""HTTP: GET /kpis, /metrics, /health, the page. Bounded work per request; Faust serves them.

``/kpis`` and ``/metrics`` are served from one snapshot: the totals read from the shared
state and the bodies built from them, by one read at a time whatever the number of
clients (``Refreshed``). While clients keep polling, the snapshot is refreshed in the
background as soon as this worker has stored a batch and ``ADVOCACY_WEB_REFRESH_SECONDS``
(0.1 s) has passed since the previous read began, and at least once a second otherwise
(other workers' batches, windows moving on): a client gets the current snapshot at once,
at most 0.1 s plus one read behind. The /metrics body (the registry, its histograms too)
is built from the latest snapshot when asked for, at most once a second (``Exposition``).
Reads are spaced further when one takes more of the event loop than 5% of the spacing
(many segments and teams), 1% while the worker is behind (a backlog: the numbers are
behind anyway, and catching up comes first). Nobody polling: no reads; the first request
after a quiet spell waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import math
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.clock import Clock
from stream.errors import StateError, StateUnavailable
from stream.health import Health, redis_problem
from stream.kpi.totals import Totals, report
from stream.kpi.windows import Window
from stream.metrics import Metrics
from stream.state import Store

log = logging.getLogger("stream.web")
T = TypeVar("T")
REFRESH_SECONDS = 0.1  # ADVOCACY_WEB_REFRESH_SECONDS: the least time between two reads of the state
MAX_AGE_SECONDS = 1.0  # a read at least this often while polled, changed or not (other workers, windows)
KEEP_WARM_SECONDS = 10.0  # reads go on this long after the latest request
MAX_SHARE = 0.05  # of the worker's time spent reading the state for /kpis and /metrics, at most
BEHIND_SHARE = 0.01  # the same while the worker is behind: its numbers are behind anyway
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
GZIP_LEVEL = 5  # once per snapshot and body: a tenth of the bytes to write for each client that accepts it
UNCAPPED = frozenset({"/health"})  # an orchestrator's probe is never refused for load


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Refreshed(Generic[T]):
    """The latest result of ``compute``, kept fresh in the background while callers keep asking.

    One computation at a time, on its own task (a caller that goes away cancels nothing),
    whatever the number of callers. The first caller after a quiet spell (nobody asked for
    ``keep_warm`` seconds, or never) starts a background task and waits for its first result.
    While callers keep coming, the task computes again as soon as ``spacing`` has passed
    since the latest computation started and either ``changed()`` was called since (this
    worker stored a batch) or ``max_age`` has passed (other workers' batches, windows moving
    on); callers get the latest result at once. So a result served is at most ``spacing``
    plus one computation behind this worker's batches, ``max_age`` plus one computation
    behind anything else; with no change, a computation per ``max_age``.

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
            except BaseException as exc:  # thrown in by the task (a cancellation): into the coroutine
                send, error = None, exc


@dataclass
class Snapshot:
    """The KPI totals as read at ``at`` (or why they could not be), with the /kpis bodies built from
    them: each body is built once per snapshot, and gzip-compressed once for the clients that accept it."""

    at: float
    totals: Totals | None
    error: str  # public text, when totals is None
    windows: tuple[Window, ...]
    _bodies: dict[tuple[str, str | None, bool], bytes] = field(default_factory=dict)
    _report: dict[str, list[dict[str, Any]]] | None = None

    def kpis(self, window: str | None, gzipped: bool = False) -> bytes:
        """The /kpis body for ``window`` (every window when None)."""
        key = ("kpis", window, gzipped)
        body = self._bodies.get(key)
        if body is None:
            if gzipped:
                body = gzip.compress(self.kpis(window), GZIP_LEVEL)
            else:
                assert self.totals is not None
                if self._report is None:
                    self._report = report(self.totals, self.windows)  # all windows: ?window= lists the same names
                lists = self._report
                if window is not None:
                    lists = {k: [row for row in v if row["window"] == window] for k, v in lists.items()}
                body = json_bytes({"generated_at": rfc3339(self.at), **lists})
            self._bodies[key] = body
        return body



class Exposition:
    """The /metrics body: the registry (the latest snapshot's KPI totals, the worker's own metrics)
    in the text format, built when asked for, at most once per ``spacing`` whatever the number of
    scrapers, and gzip-compressed once for those that accept it.

    It is not rebuilt with every snapshot: with its histograms it costs several times a read of
    the totals (9 ms of 28 kB with 4 segments and 4 teams, 90 ms with 100 of each), and
    Prometheus scrapes every 15 s. ``spacing`` is a second, or the time the latest build took
    divided by ``max_share()`` if that is longer. The build has no await: concurrent requests
    never build twice.
    """

    def __init__(self, build: Callable[[], bytes], interval: float = MAX_AGE_SECONDS,
                 max_share: Callable[[], float] = lambda: MAX_SHARE) -> None:
        self.build = build
        self.interval = interval
        self.max_share = max_share
        self.took = 0.0
        self.builds = 0
        self._built = -math.inf
        self._source: object = None
        self._bodies: dict[bool, bytes] = {}

    def body(self, source: object, gzipped: bool = False) -> bytes:
        """The body, rebuilt if ``source`` (the snapshot) is newer than the one it was built from and
        the spacing has passed."""
        now = time.monotonic()
        if not self._bodies or (source is not self._source
                                and now - self._built >= max(self.interval, self.took / self.max_share())):
            started = time.perf_counter()
            self._bodies = {False: self.build()}
            self.took = time.perf_counter() - started
            self._built, self._source = now, source
            self.builds += 1
        body = self._bodies.get(gzipped)
        if body is None:
            body = self._bodies[gzipped] = gzip.compress(self._bodies[False], GZIP_LEVEL)
        return body


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip`` or ``*``, not with ``q=0``)."""
    for part in (accept_encoding or "").lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            q = params.strip()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


class Api:
    """The endpoints, as (status, body) pairs; bodies are bytes."""

    def __init__(self, store: Store, metrics: Metrics, health: Health, windows: tuple[Window, ...],
                 clock: Clock, refresh_seconds: float = REFRESH_SECONDS,
                 behind: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.metrics = metrics
        self.health = health
        self.windows = windows
        self.clock = clock
        share = lambda: BEHIND_SHARE if behind() else MAX_SHARE  # noqa: E731
        self.snapshots = Refreshed(self._snapshot, refresh_seconds, max_share=share)
        self.exposition = Exposition(lambda: generate_latest(self.metrics.registry), max_share=share)
        # /health: a Redis PING a second at most however many probes, none after them
        self.pings = Refreshed(self._ping, MAX_AGE_SECONDS, keep_warm=MAX_AGE_SECONDS)
        self._failing = ""

    async def _snapshot(self) -> Snapshot:
        now = time.time()  # shown only if Redis's clock cannot be read either
        totals: Totals | None = None
        error = ""
        self.metrics.state_reads.inc()
        try:
            now_ms = await self.clock.now_ms()  # Redis's time: every worker sums the same buckets
            now = now_ms / 1000
            totals = await self.store.totals(now_ms)
        except StateError as exc:
            unavailable = isinstance(exc, StateUnavailable)
            error = redis_problem(str(exc), unavailable, self.health.namespace)  # no address, no exception text
            self._redis(ok=not unavailable, error=str(exc))
            if str(exc) != self._failing:
                log.warning("KPI totals not read: %s", exc)
            self._failing = str(exc)
        else:
            self._redis(ok=True)
            self._failing = ""
        self.metrics.kpis.totals = totals  # never export stale KPIs as if current
        self.metrics.state_read_seconds.set(self.snapshots.took)  # the previous read's
        snapshot = Snapshot(now, totals, error, self.windows)
        if totals is not None:
            await asyncio.sleep(0)  # let batches run between the read and building the body
            snapshot.kpis(None, gzipped=True)  # the body most clients ask for, built in the read's time
        return snapshot

    async def kpis(self, window: str | None, gzipped: bool = False) -> tuple[int, bytes, bool]:
        """(status, body, whether the body is gzip-compressed); ``gzipped``: the client accepts it."""
        if window is not None and window not in {w.name for w in self.windows}:
            names = ", ".join(w.name for w in self.windows)
            return 400, json_bytes({"error": f"unknown window {window!r}; configured: {names}"}), False
        snapshot = await self.snapshots.get()
        if snapshot.totals is None:
            return 503, json_bytes({"error": snapshot.error}), False
        return 200, snapshot.kpis(window, gzipped), gzipped

    async def metrics_text(self, gzipped: bool = False) -> bytes:
        return self.exposition.body(await self.snapshots.get(), gzipped)

    def _redis(self, ok: bool, error: str = "") -> None:
        self.health.redis(ok, error)

    async def _ping(self) -> None:
        try:
            await self.store.ping()
            self._redis(ok=True)
        except StateError as exc:
            self._redis(ok=False, error=str(exc))

    async def health_report(self) -> tuple[int, bytes]:
        await self.pings.get()
        status, body = self.health.report()  # the health's answer, computed now
        return status, json_bytes(body)


def middlewares(metrics: Metrics, max_requests: int) -> list[Any]:
    """aiohttp middlewares: ``nosniff`` on every response (errors too), and at most
    ``max_requests`` requests in progress (``/health`` apart); over that, 503 at once."""
    in_progress = 0

    @web.middleware
    async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(NOSNIFF)
            raise
        response.headers.update(NOSNIFF)
        return response

    @web.middleware
    async def cap(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal in_progress
        if request.path in UNCAPPED:
            return await handler(request)  # type: ignore[no-any-return]
        if in_progress >= max_requests:
            metrics.http_rejected.inc()
            return web.Response(body=json_bytes({"error": "too many requests in progress; retry in a second"}),
                                status=503, headers={"Retry-After": "1", "Content-Type": JSON_CONTENT_TYPE})
        in_progress += 1
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            in_progress -= 1

    return [headers, cap]


STATIC = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file shipped in stream/static (no directories, no CDN), with its content type."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in CONTENT_TYPES or not path.is_file():
        return None
    return path.read_bytes(), CONTENT_TYPES[path.suffix]
