"""HTTP: GET /kpis, /metrics, /health, the page. Bounded work per request; Faust serves them.

``/kpis`` and ``/metrics`` are served from one snapshot: the totals read from the shared
state and the bodies built from them. The state is read at most once a second, by one
read at a time, whatever the number of clients (``Coalesced``); reads are spaced further
when one takes more than 50 ms (many segments and teams), so that they never take more
than 5% of the worker's time, 1% while it is behind (a backlog: the numbers are behind
anyway, and catching up comes first). Under steady polling nobody waits for a read.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.errors import StateError, StateUnavailable
from stream.health import Health
from stream.kpi import Totals, Window, report
from stream.metrics import Metrics
from stream.state import Store

log = logging.getLogger("stream.web")
T = TypeVar("T")
REFRESH_SECONDS = 1.0
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


class Coalesced(Generic[T]):
    """The result of ``compute``, shared by every caller: computed by one computation at a time,
    on its own task (a caller that goes away does not cancel it), at most once per ``spacing``.

    ``spacing`` is ``interval``, or the event loop's time that the latest computation took
    (``Timed``) divided by ``max_share()`` if that is longer: computing never takes more
    than that share of the worker's time, however costly it becomes (a large state).

    A caller gets the latest result while it is younger than ``spacing``. Then the first
    caller starts a new computation; if the latest result was younger than twice
    ``spacing`` at that moment (callers keep coming), it and every caller until the
    computation ends still get the latest result, waiting for nothing; if it was older
    (nobody asked for a while), they wait for the new one. Ages count from the start of a
    computation.
    """

    def __init__(self, compute: Callable[[], Coroutine[Any, Any, T]], interval: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 max_share: Callable[[], float] = lambda: MAX_SHARE) -> None:
        self._compute = compute
        self.interval = interval
        self.max_share = max_share
        self.clock = clock
        self.took = 0.0  # the event loop's time the latest computation took
        self._latest: tuple[float, T] | None = None
        self._running: asyncio.Future[T] | None = None
        self._serve_latest = False  # while the running computation runs
        self.runs = 0

    @property
    def spacing(self) -> float:
        return max(self.interval, self.took / self.max_share())

    async def get(self) -> T:
        latest = self._latest
        age = self.clock() - latest[0] if latest is not None else float("inf")
        spacing = self.spacing
        if latest is not None and age < spacing:
            return latest[1]
        if self._running is None:
            self._serve_latest = age < 2 * spacing
            self._running = asyncio.ensure_future(self._run())
        if latest is not None and self._serve_latest:
            return latest[1]
        return await asyncio.shield(self._running)

    async def _run(self) -> T:
        self.runs += 1
        started = self.clock()
        try:
            timed = Timed(self._compute())
            value = await timed
            self._latest = (started, value)
            self.took = timed.busy
            return value
        finally:
            self._running = None


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
    """The KPI totals as read at ``at`` (or why they could not be), with the bodies built from them:
    each body is built once per snapshot, and gzip-compressed once for the clients that accept it."""

    at: float
    totals: Totals | None
    error: str  # public text, when totals is None
    metrics: bytes
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

    def metrics_body(self, gzipped: bool = False) -> bytes:
        """The /metrics body."""
        if not gzipped:
            return self.metrics
        body = self._bodies.get(("metrics", None, True))
        if body is None:
            body = self._bodies["metrics", None, True] = gzip.compress(self.metrics, GZIP_LEVEL)
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
                 clock: Callable[[], float] = time.time, refresh_seconds: float = REFRESH_SECONDS,
                 behind: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.metrics = metrics
        self.health = health
        self.windows = windows
        self.clock = clock
        self.snapshots = Coalesced(self._snapshot, refresh_seconds,
                                   max_share=lambda: BEHIND_SHARE if behind() else MAX_SHARE)
        self.pings = Coalesced(self._ping, refresh_seconds)
        self._failing = ""

    async def _snapshot(self) -> Snapshot:
        now = self.clock()
        totals: Totals | None = None
        error = ""
        self.metrics.state_reads.inc()
        try:
            totals = await self.store.totals(int(now * 1000))
        except StateError as exc:
            unavailable = isinstance(exc, StateUnavailable)
            error = "redis unavailable" if unavailable else "state read failed (details in the worker's log)"
            self._redis(ok=not unavailable, error=str(exc))
            if str(exc) != self._failing:
                log.warning("KPI totals not read: %s", exc)
            self._failing = str(exc)
        else:
            self._redis(ok=True)
            self._failing = ""
        self.metrics.kpis.totals = totals  # never export stale KPIs as if current
        self.metrics.ready.set(0 if self.health.reasons() else 1)
        self.metrics.state_read_seconds.set(self.snapshots.took)  # the previous read's
        snapshot = Snapshot(now, totals, error, generate_latest(self.metrics.registry), self.windows)
        await asyncio.sleep(0)  # let batches run between the read and building the bodies
        snapshot.metrics_body(gzipped=True)  # the bodies most clients ask for, built in the read's time
        if totals is not None:
            snapshot.kpis(None, gzipped=True)
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
        return (await self.snapshots.get()).metrics_body(gzipped)

    def _redis(self, ok: bool, error: str = "") -> None:
        self.health.redis(ok, error)
        self.metrics.redis_state(ok)

    async def _ping(self) -> None:
        try:
            await self.store.ping()
            self._redis(ok=True)
        except StateError as exc:
            self._redis(ok=False, error=str(exc))

    async def health_report(self) -> tuple[int, bytes]:
        await self.pings.get()
        reasons = self.health.reasons()
        self.metrics.ready.set(0 if reasons else 1)
        warnings = self.health.degraded()
        status = "not ready" if reasons else "degraded" if warnings else "ready"
        body: dict[str, Any] = {"status": status, "reasons": reasons, "lag": self.health.lag}
        if warnings:  # still ready: the worker counts, but something should be fixed
            body["warnings"] = warnings
        return (200 if not reasons else 503), json_bytes(body)


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
