"""Prometheus metrics, defined once, on an injected registry (see docs/metrics.md).

Worker-local series (events, dead letters, latency, lag) are summed across workers by
the recording rules. KPI series come from the shared state, so every worker exports
the same values: the recording rules take ``max`` across workers, never ``sum``.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream import __version__
from stream.kpi.totals import Totals, ratio

__all__ = ["LATENCY_BUCKETS", "OUTCOMES", "RECORD_PERIOD_SECONDS", "FrontMetrics", "KpiCollector", "Metrics",
           "kpi_families", "observe_many"]

OUTCOMES = ("applied", "duplicate", "ignored", "dead_letter")
RECORD_PERIOD_SECONDS = 300.0  # advocacy_record_events_max: the largest of this period and the last
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The worker's own metrics plus a collector of the KPI totals."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "advocacy_events_processed", "Messages consumed and handled, per topic and outcome "
            "(applied, duplicate, ignored, dead_letter).", ["topic", "outcome"], registry=registry)
        self.dead_letters = Counter(
            "advocacy_dead_letters", "Messages sent to the dead-letter topic, per source topic "
            "and reason.", ["topic", "reason"], registry=registry)
        self.latency = Histogram(
            "advocacy_processing_latency_seconds", "From the broker timestamp of a message to "
            "its effect being stored in the shared state.", ["topic"], buckets=LATENCY_BUCKETS,
            registry=registry)
        self.batch_duration = Histogram(
            "advocacy_batch_duration_seconds", "Time to validate and store one batch.",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.lag = Gauge(
            "advocacy_consumer_lag_messages", "Messages behind the end of each assigned "
            "partition.", ["topic", "partition"], registry=registry)
        self.gaps = Counter(
            "advocacy_partition_gaps", "Ranges of records fetched but never stored, found by the "
            "per-partition check and read again, per topic.", ["topic"], registry=registry)
        self.unstored = Gauge(
            "advocacy_unstored_offsets", "Offsets fetched but not stored in an open gap, per "
            "partition (0 when none).", ["topic", "partition"], registry=registry)
        self.folded = Counter(
            "advocacy_labels_folded", "Events whose segment or team name was over the cardinality "
            "cap and was counted under '_other'.", ["topic"], registry=registry)
        self.record_events = Gauge(
            "advocacy_record_events_max", "Most actions and tickets held by one customer record "
            "this worker wrote in the last 5 to 10 minutes (capped by ADVOCACY_MAX_EVENTS_PER_CUSTOMER).",
            registry=registry)
        self.evicted = Counter(
            "advocacy_record_evictions", "Held actions and tickets pushed out of a full customer record "
            "by ones that expire later (ADVOCACY_MAX_EVENTS_PER_CUSTOMER); no longer counted.",
            registry=registry)
        self._record_period = (0.0, 0, 0)  # period start (monotonic), largest in it, largest in the one before
        self.conflicts = Counter(
            "advocacy_state_conflicts", "Optimistic updates retried because another worker "
            "changed the same customer.", registry=registry)
        self.state_reads = Counter(
            "advocacy_state_reads", "Reads of the KPI totals from the shared state for /kpis and "
            "/metrics, whatever the number of clients: while they poll, once a worker stored a batch "
            "or a window starts in another bucket, ADVOCACY_WEB_REFRESH_SECONDS apart at least (0.1 s); "
            "none while nothing changes.", registry=registry)
        self.state_read_seconds = Gauge(
            "advocacy_state_read_seconds", "The event loop's time the latest read of the KPI totals for "
            "/kpis and /metrics took (with building the /kpis body); reads are at least "
            "ADVOCACY_WEB_REFRESH_SECONDS apart, and at least 20 times this.", registry=registry)
        self.clock_skew = Gauge(
            "advocacy_clock_skew_seconds", "Redis's clock (TIME) minus this worker's wall clock, at the "
            "last measurement. The worker takes its time from Redis; this says how far the host's clock "
            "is off.", registry=registry)
        self.redis_up = Gauge(
            "advocacy_redis_up", "1 when the last Redis call succeeded.", registry=registry)
        self.timer_failures = Counter(
            "advocacy_timer_failures", "Runs of a periodic job (lag, redis, agents, gaps, kafka, janitor, "
            "dead-letter-log) that raised an unexpected error (logged with the timer's name), per timer.",
            ["timer"], registry=registry)
        self.retention_short = Gauge(
            "advocacy_topic_retention_short", "1 when a source topic keeps events for less than the "
            "KPIs need (longest window + attribution window + 1 day; customers compacted), read at "
            "start-up.", ["topic"], registry=registry)
        self.ready = Gauge(
            "advocacy_worker_ready", "1 when the worker is consuming and Redis answers.",
            registry=registry)
        self.build = Gauge(
            "advocacy_build_info", "Version of the running worker.", ["version", "python"],
            registry=registry)
        self.build.labels(__version__, platform.python_version()).set(1)
        self.kpis = KpiCollector()
        registry.register(self.kpis)

    def declare(self, topics: list[str], reasons: tuple[str, ...]) -> None:
        """Create every labelled series at zero, so rate() sees the first increase."""
        for topic in topics:
            for outcome in OUTCOMES:
                self.events.labels(topic, outcome)
            for reason in reasons:
                self.dead_letters.labels(topic, reason)
            self.latency.labels(topic)
            self.folded.labels(topic)
            self.gaps.labels(topic)

    def record_size(self, events: int, now: float) -> None:
        """A batch wrote a record of ``events`` actions and tickets at its largest (``Tally.largest``)."""
        start, current, previous = self._record_period
        if now - start >= RECORD_PERIOD_SECONDS:
            start, current, previous = now, 0, current if now - start < 2 * RECORD_PERIOD_SECONDS else 0
        current = max(current, events)
        self._record_period = (start, current, previous)
        self.record_events.set(max(current, previous))

    def read_health(self, ready: Callable[[], bool], redis_ok: Callable[[], bool]) -> None:
        """``advocacy_worker_ready`` and ``advocacy_redis_up`` read the health's facts when scraped."""
        self.ready.set_function(lambda: 1 if ready() else 0)
        self.redis_up.set_function(lambda: 1 if redis_ok() else 0)


class KpiCollector(Collector):
    """Exports the latest KPI totals read from the shared state."""

    def __init__(self) -> None:
        self.totals: Totals | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals = self.totals
        if totals is None:
            return
        yield from kpi_families(totals)


def kpi_families(totals: Totals) -> Iterator[GaugeMetricFamily]:
    actions = _family("advocacy_actions", "Advocacy actions in the window, per segment.",
                      ["segment", "window"], totals.actions)
    yield actions
    customers = GaugeMetricFamily("advocacy_customers_active",
                                  "Customers whose latest status is active, per segment.",
                                  labels=["segment"])
    for segment, n in sorted(totals.active.items()):
        customers.add_metric([segment], max(0, n))
    yield customers
    rate = GaugeMetricFamily("advocacy_actions_ratio", "Advocacy actions / active customers "
                             "(absent when there are no customers).", labels=["segment", "window"])
    for (segment, window), n in sorted(totals.actions.items()):
        value = ratio(n, max(0, totals.active.get(segment, 0)))
        if value is not None:
            rate.add_metric([segment, window], value)
    yield rate
    yield _family("advocacy_support_interactions", "Closed support tickets in the window, per "
                  "team.", ["team", "window"], totals.interactions)
    yield _family("advocacy_advocates_created", "Distinct customers who took an advocacy "
                  "action within the attribution window after a ticket of the team.",
                  ["team", "window"], totals.advocates)
    creation = GaugeMetricFamily("advocacy_creation_ratio", "Advocates created / support "
                                 "interactions, 0-1 (absent without interactions).",
                                 labels=["team", "window"])
    for (team, window), n in sorted(totals.interactions.items()):
        value = ratio(totals.advocates.get((team, window), 0), n)
        if value is not None:
            creation.add_metric([team, window], value)
    yield creation
    newest = GaugeMetricFamily("advocacy_last_event_timestamp_seconds", "Newest event time "
                               "(occurred_at) stored, per topic; freshness is time() minus this.",
                               labels=["topic"])
    for topic, at_ms in sorted(totals.newest.items()):
        newest.add_metric([topic], at_ms / 1000)
    yield newest


def _family(name: str, doc: str, labels: list[str], values: Mapping[tuple[str, str], int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, n in sorted(values.items()):
        family.add_metric(list(key), n)
    return family


def observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """``observe`` each amount, one bucket increment per bucket rather than per amount.

    Uses the child's bucket bounds and counters (prometheus_client's ``_upper_bounds``,
    ``_buckets``, ``_sum``); falls back to ``observe`` if a release renames them.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1
    for bucket, n in zip(buckets, counts, strict=True):
        if n:
            bucket.inc(n)
    total.inc(sum(amounts))


class FrontMetrics:
    """The web front's own series (``stream.front``), appended to the worker's /metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_rejected = Counter(
            "advocacy_http_rejected", "Requests answered 503 at once because ADVOCACY_WEB_MAX_REQUESTS "
            "requests were in progress.", registry=registry)
