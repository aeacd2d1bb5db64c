"""The worker's periodic jobs: one named Faust timer per job, each guarded.

A Faust timer that raises stops the worker. Each job here runs inside ``guarded``: an
unexpected exception is logged with the timer's name, counted
(``advocacy_timer_failures{timer}``) and shown on /health until a later run ends cleanly;
the timer runs again in its next period. A job whose facts /health relies on blocks
readiness while it fails (its facts are stale); a housekeeping job only degrades.

The jobs record facts on ``Health``; none of them decides readiness (``Health.reasons``
does, when asked).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from stream.errors import StateError
from stream.gaps import GapWatch
from stream.health import Health
from stream.metrics import Metrics
from stream.services import Services
from stream.topics import KafkaProbe

__all__ = ["BLOCKING", "HOUSEKEEPING", "every", "guarded", "install", "report_rebuild"]

log = logging.getLogger("stream.timers")
Job = Callable[[], Awaitable[None]]
BLOCKING = ("lag", "redis", "agents", "gaps", "kafka")  # /health's facts: not ready while one fails
HOUSEKEEPING = ("janitor", "dead-letter-log")  # degraded while one fails


def guarded(name: str, job: Job, health: Health, metrics: Metrics, *, blocking: bool = True) -> Job:
    """``job``, never raising (but for cancellation): a failure is logged, counted and shown on /health."""

    async def run() -> None:
        try:
            await job()
        except Exception:
            log.exception("timer %s failed; it runs again in its next period", name)
            metrics.timer_failures.labels(name).inc()
            health.timer_failed(name, blocking)
        else:
            health.timer_ran(name)

    run.__name__ = name  # Faust names the timer's task after it
    return run


def every(app: faust.App, seconds: float, name: str, job: Job, health: Health, metrics: Metrics) -> None:
    """Run ``job`` every ``seconds`` on a Faust timer named ``name``, guarded."""
    metrics.timer_failures.labels(name)  # the series exists at zero: rate() sees the first failure
    app.timer(seconds, name=name)(guarded(name, job, health, metrics, blocking=name not in HOUSEKEEPING))


def install(app: faust.App, services: Services) -> None:
    """Register the timers and the signals that record /health's facts."""
    settings, health, metrics = services.settings, services.health, services.metrics

    def every_(seconds: float, name: str, job: Job) -> None:
        every(app, seconds, name, job, health, metrics)

    health.group_rebalancing = lambda: bool(app.rebalancing)  # Faust's: from revocation to "Worker ready"

    @app.on_rebalance_complete.connect  # type: ignore[untyped-decorator]
    async def _joined(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001 - mode's signal receiver signature
        health.joined = True

    @app.task  # type: ignore[untyped-decorator]
    async def _started() -> None:
        health.started = True

    sources = set(settings.source_kinds())
    every_(2.0, "lag", lambda: _lag(app, sources, health, metrics))
    every_(2.0, "redis", lambda: _redis(services))
    every_(2.0, "agents", lambda: _agents(app, health))
    watch: GapWatch[Any] = GapWatch()
    every_(2.0, "gaps", lambda: _gaps(app, sources, watch, services))
    probe = KafkaProbe(settings)
    every_(3.0, "kafka", lambda: _kafka(probe, health))
    every_(settings.janitor_interval_seconds, "janitor", lambda: _janitor(services))
    every_(2.0, "dead-letter-log", lambda: _flush(services))


async def _lag(app: faust.App, sources: set[str], health: Health, metrics: Metrics) -> None:
    """Messages behind the end of each assigned source partition (per partition and in all)."""
    consumer = app.consumer
    total = 0
    metrics.lag.clear()
    for tp in consumer.assignment():
        if tp.topic not in sources:  # Faust's own internal topics
            continue
        read = consumer._read_offset.get(tp)  # noqa: SLF001 - in compat.members()
        committed = consumer._committed_offset.get(tp)  # noqa: SLF001 - in compat.members()
        position = read if read is not None else (committed - 1 if committed else -1)
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - highwater is unknown before the first fetch (its error type varies)
            log.debug("no highwater yet for %s", tp)
            continue
        lag = max(0, (high or 0) - position - 1)
        metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        total += lag
    health.lag = total


async def _redis(services: Services) -> None:
    """Does Redis answer; and its time, measured when due even while no batch comes."""
    try:
        await services.store.ping()
        await services.clock.now_ms()
    except StateError as exc:
        services.clock.invalidate()  # Redis may come back on another host, with another clock
        services.health.redis(ok=False, error=str(exc))
    else:
        services.health.redis(ok=True)


async def _agents(app: faust.App, health: Health) -> None:
    """Agents that crashed: named on /health, logged once with the reason."""
    crashed = {name: agent.crash_reason for name, agent in app.agents.items() if getattr(agent, "crashed", False)}
    for name in sorted(set(crashed) - set(health.crashed)):
        log.error("agent %s crashed: %r", name, crashed[name])  # /health names the agent only
    health.crashed = sorted(crashed)


async def _kafka(probe: KafkaProbe, health: Health) -> None:
    problem = await probe.check()
    if problem is not None and problem.reason != health.kafka_error:
        log.error("%s", problem.logged("not ready until it answers"))  # /health: the reason only
    elif health.kafka_error and problem is None:
        log.info("kafka answers again")
    health.kafka_error = problem.reason if problem is not None else ""


async def _gaps(app: faust.App, sources: set[str], watch: GapWatch[Any], services: Services) -> None:
    """Compare, per partition, what was stored with where the fetcher is (see ``stream.gaps``)."""
    consumer, metrics, health = app.consumer, services.metrics, services.health
    try:
        readings = await consumer.readings(sources)
    except Exception as exc:  # noqa: BLE001 - the broker away, a rebalance: the next check tries again
        log.debug("gap check skipped: %r", exc)
        return
    found = watch.update(readings) if readings else {}
    for tp, (stored, position) in found.items():
        log.error("%s[%d]: offsets %d-%d were fetched but never stored; reading them again",
                  tp.topic, tp.partition, stored, position - 1)
        metrics.gaps.labels(tp.topic).inc()
    if found:
        services.store.lost_writes()  # the state may have lost them: cached records may be ahead of it
        await consumer.reread(found)
    metrics.unstored.clear()
    for tp, (stored, position) in watch.open.items():
        metrics.unstored.labels(tp.topic, str(tp.partition)).set(position - stored)
    health.gaps = [f"{tp.topic}[{tp.partition}]: offsets {stored}-{position - 1} fetched but not stored; "
                   "reading them again" for tp, (stored, position) in sorted(watch.open.items())]
    report_rebuild(consumer, readings, health)


def report_rebuild(consumer: Any, readings: dict[Any, Any], health: Health) -> None:
    """/health and the log: how far partitions that the state had no position for were read again."""
    was = health.rebuilding
    done, total = consumer.rebuilt({tp: r.stored for tp, r in readings.items()})
    if total:
        health.rebuilding = (f"rebuilding the state from the topics: {100 * done // total}% re-read "
                             f"({done} of {total} messages)")
        if not was:
            log.warning("%s", health.rebuilding)
    elif was and not consumer.rebuilding:
        health.rebuilding = ""
        log.info("the state is rebuilt from the topics")


async def _flush(services: Services) -> None:
    """Log the count of dead-letter lines left out, once a flood of them is over."""
    services.pipeline.dead_letter_log.flush()


async def _janitor(services: Services) -> None:
    try:
        removed = await services.store.prune(await services.clock.now_ms())
    except StateError as exc:
        log.warning("pruning skipped: %s", exc)
        return
    if removed:
        log.info("pruned %d expired buckets and advocates", removed)
