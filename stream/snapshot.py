"""The snapshot behind ``/kpis`` and ``/metrics``: the shared totals, read again only when they may
have changed, and the bodies built from them once per snapshot.

The totals as read at a time depend on two things only: what the workers stored, and which bucket
each window starts in (a window sums its buckets from the one holding ``now - window``, and its
advocates from that bucket's start). So ``LatestTotals`` reads the state again only when either
moved since its latest read: a shard's mark (``Store.changes``: one command a shard, set by every
commit that writes, by a prune that removed something, missing after a restart empty) differs,
or a window starts in another bucket (every 150 s for a 1 h window). Otherwise the latest totals
are the current ones, exactly, and only ``generated_at`` moves on. A worker's reads then follow
the batches stored by any worker, and the windows' buckets, not the clients.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream.kpi.totals import Totals, report
from stream.kpi.windows import Window
from stream.refresh import MAX_AGE_SECONDS, MAX_SHARE
from stream.state import Store

__all__ = ["GZIP_LEVEL", "Exposition", "LatestTotals", "Snapshot", "json_bytes", "rfc3339"]

GZIP_LEVEL = 5  # once per snapshot and body: a tenth of the bytes to write for each client that accepts it


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class LatestTotals:
    """The shared totals at a given time, read from the state only when they may differ from the
    latest read: a shard's mark changed, or a window starts in another bucket (module docstring).

    The marks are read first, then the totals: a batch stored between the two is in the totals
    and not in the marks kept, so it is read again next time (once more than needed, never missed).
    """

    def __init__(self, store: Store, on_read: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.windows = store.rules.windows  # the windows the store sums
        self.on_read = on_read
        self.checks = 0
        self.reads = 0
        self._key: tuple[tuple[bytes | str | None, ...], tuple[int, ...]] | None = None
        self._totals: Totals | None = None

    def buckets(self, now_ms: int) -> tuple[int, ...]:
        """What the totals depend on of ``now_ms``: the bucket each window starts in."""
        return tuple(w.first_bucket(now_ms) for w in self.windows)

    async def at(self, now_ms: int) -> Totals:
        """The totals as read at ``now_ms``: the latest read's if nothing they depend on moved since."""
        self.checks += 1
        key = (await self.store.changes(), self.buckets(now_ms))
        if key == self._key and self._totals is not None:
            return self._totals
        self.reads += 1
        self.on_read()
        self._key = None  # while reading: a failed read leaves nothing to reuse
        totals = await self.store.totals(now_ms)
        self._key, self._totals = key, totals
        return totals


@dataclass
class Snapshot:
    """The KPI totals as current at ``at`` (or why they could not be read), with the /kpis bodies built
    from them: each body is built once per snapshot, and gzip-compressed once for the clients that
    accept it."""

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

    def moved(self, at: float) -> Snapshot:
        """The same totals as current at ``at`` (nothing they depend on changed since): the same
        rows, its bodies built again for their ``generated_at``."""
        return Snapshot(at, self.totals, self.error, self.windows, _report=self._report)


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
