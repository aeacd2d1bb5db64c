"""HTTP: GET /kpis, /metrics, /health. Plain functions of the state; Faust serves them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.clock import Clock
from stream.errors import StateError, StateUnavailable
from stream.health import Health
from stream.kpi.totals import Totals, report
from stream.kpi.windows import Window
from stream.metrics import Metrics
from stream.state import Store


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """The three endpoints, as (status, body, content type) triples."""

    def __init__(self, store: Store, metrics: Metrics, health: Health, windows: tuple[Window, ...],
                 clock: Clock) -> None:
        self.store = store
        self.metrics = metrics
        self.health = health
        self.windows = windows
        self.clock = clock

    async def _totals(self) -> tuple[float, Totals]:
        now_ms = await self.clock.now_ms()  # Redis's time: every worker sums the same buckets
        totals = await self.store.totals(now_ms)
        self.metrics.kpis.totals = totals
        return now_ms / 1000, totals

    async def kpis(self, window: str | None) -> tuple[int, dict[str, Any]]:
        if window is not None and window not in {w.name for w in self.windows}:
            names = ", ".join(w.name for w in self.windows)
            return 400, {"error": f"unknown window {window!r}; configured: {names}"}
        try:
            now, totals = await self._totals()
        except StateError as exc:
            return 503, {"error": str(exc)}
        lists = report(totals, self.windows)  # all windows, so ?window= lists the same names
        if window is not None:
            lists = {k: [row for row in v if row["window"] == window] for k, v in lists.items()}
        return 200, {"generated_at": rfc3339(now), **lists}

    async def metrics_text(self) -> bytes:
        try:
            await self._totals()
            self._redis(ok=True)
        except StateError as exc:
            self.metrics.kpis.totals = None  # never export stale KPIs as if current
            self._redis(ok=not isinstance(exc, StateUnavailable), error=str(exc))
        self.metrics.ready.set(0 if self.health.reasons() else 1)
        return generate_latest(self.metrics.registry)

    def _redis(self, ok: bool, error: str = "") -> None:
        self.health.redis(ok, error)
        self.metrics.redis_state(ok)

    async def health_report(self) -> tuple[int, dict[str, Any]]:
        try:
            await self.store.ping()
            self._redis(ok=True)
        except StateError as exc:
            self._redis(ok=False, error=str(exc))
        reasons = self.health.reasons()
        self.metrics.ready.set(0 if reasons else 1)
        warnings = self.health.degraded()
        status = "not ready" if reasons else "degraded" if warnings else "ready"
        body: dict[str, Any] = {"status": status, "reasons": reasons, "lag": self.health.lag}
        if warnings:  # still ready: the worker counts, but something should be fixed
            body["warnings"] = warnings
        return (200 if not reasons else 503), body


METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
STATIC = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file shipped in stream/static (no directories, no CDN), with its content type."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in CONTENT_TYPES or not path.is_file():
        return None
    return path.read_bytes(), CONTENT_TYPES[path.suffix]
