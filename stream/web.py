"""HTTP: GET /kpis, /metrics, /health, the page. Bounded work per request; Faust serves them.

``/kpis`` and ``/metrics`` are served from one snapshot (``stream.snapshot``), taken by one
computation at a time whatever the number of clients (``stream.refresh.Refreshed``). While
clients keep polling, a snapshot is taken every ``ADVOCACY_WEB_REFRESH_SECONDS`` (0.1 s): it
reads each shard's mark (one command a shard) and reads the totals again only if a mark moved
(any worker stored a batch, or pruned) or a window now starts in another bucket; otherwise the
latest totals are current, and only ``generated_at`` moves on. A client gets the current
snapshot at once, at most 0.1 s plus one read behind any worker's batches. The /metrics body
(the registry, its histograms too) is built from the latest snapshot when asked for, at most
once a second (``Exposition``). Snapshots are spaced further when one takes more of the event
loop than 5% of the spacing (a read with many segments and teams), 1% while the worker is
behind (a backlog: the numbers are behind anyway, and catching up comes first). Nobody
polling: nothing is read; the first request after a quiet spell waits for a snapshot (a read
only if something changed meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.clock import Clock
from stream.errors import StateError, StateUnavailable
from stream.health import Health, redis_problem
from stream.kpi.totals import Totals
from stream.kpi.windows import Window
from stream.metrics import Metrics
from stream.refresh import BEHIND_SHARE, MAX_AGE_SECONDS, MAX_SHARE, REFRESH_SECONDS, Refreshed
from stream.snapshot import Exposition, LatestTotals, Snapshot, json_bytes, rfc3339
from stream.state import Store

__all__ = ["JSON_CONTENT_TYPE", "METRICS_CONTENT_TYPE", "NOSNIFF", "UNCAPPED", "Api", "accepts_gzip", "json_error",
           "middlewares", "static_file"]

log = logging.getLogger("stream.web")
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
UNCAPPED = frozenset({"/health"})  # an orchestrator's probe is never refused for load


def json_error(message: str) -> bytes:
    """The body of an error answer: ``{"error": message}``."""
    return json_bytes({"error": message})


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
        # a snapshot every refresh_seconds while polled (a read of the totals only if they changed)
        self.snapshots = Refreshed(self._snapshot, refresh_seconds, max_age=refresh_seconds, max_share=share)
        self.latest = LatestTotals(store, on_read=metrics.state_reads.inc)
        self.exposition = Exposition(lambda: generate_latest(self.metrics.registry), max_share=share)
        # /health: a Redis PING a second at most however many probes, none after them
        self.pings = Refreshed(self._ping, MAX_AGE_SECONDS, keep_warm=MAX_AGE_SECONDS)
        self._failing = ""
        self._previous: Snapshot | None = None
        self._read = False  # whether the previous snapshot read the totals

    async def _snapshot(self) -> Snapshot:
        if self._read:
            self.metrics.state_read_seconds.set(self.snapshots.took)  # the previous read's
        now = time.time()  # shown only if Redis's clock cannot be read either
        totals: Totals | None = None
        error = ""
        reads = self.latest.reads
        try:
            now_ms = await self.clock.now_ms()  # Redis's time: every worker sums the same buckets
            now = now_ms / 1000
            totals = await self.latest.at(now_ms)
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
        self._read = self.latest.reads != reads
        self.metrics.kpis.totals = totals  # never export stale KPIs as if current
        previous = self._previous
        if totals is not None and previous is not None and previous.totals is totals:  # nothing changed
            if rfc3339(previous.at) == rfc3339(now):
                return previous  # the same body, to the second
            snapshot = previous.moved(now)
        else:
            snapshot = Snapshot(now, totals, error, self.windows)
        self._previous = snapshot
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


def middlewares() -> list[Any]:
    """Aiohttp middlewares: ``nosniff`` on every response, errors too (the cap on requests in
    progress is the front's, ``stream.front``)."""

    @web.middleware
    async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(NOSNIFF)
            raise
        response.headers.update(NOSNIFF)
        return response

    return [headers]


STATIC = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file shipped in stream/static (no directories, no CDN), with its content type."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in CONTENT_TYPES or not path.is_file():
        return None
    return path.read_bytes(), CONTENT_TYPES[path.suffix]
