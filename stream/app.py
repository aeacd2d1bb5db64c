"""The Faust adapter: the app, one agent per topic, the web routes, timers.

The consumer (``stream.batching``) hands each fetch to the topic's agent as one batch;
the agent acks the batch only after the pipeline has stored it, so a
crash replays at most the unacked batches and the state's per-customer event ids
absorb the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

import faust
from aiohttp import web
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from stream.batching import Batch, BatchApp, NoTableManager
from stream.clock import Clock, SharedClock, redis_time
from stream.config import Settings
from stream.dead_letters import KafkaDeadLetters
from stream.errors import StateError
from stream.events import REASONS
from stream.gaps import GapWatch
from stream.health import Health
from stream.kafka import faust_credentials
from stream.kpi.windows import Rules
from stream.metrics import Metrics
from stream.pipeline import Pipeline, where
from stream.retention import install as install_retention_check
from stream.retry import Backoff
from stream.state import Store, partition_name, redis_client
from stream.topics import KafkaProbe
from stream.web import JSON_CONTENT_TYPE, METRICS_CONTENT_TYPE, Api, accepts_gzip, middlewares, static_file

log = logging.getLogger("stream.app")
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:"}
GZIPPED = {"Content-Encoding": "gzip"}
T = TypeVar("T")


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    """Build a worker app; nothing connects until the worker starts."""
    metrics = Metrics(registry or CollectorRegistry())
    app = BatchApp(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host="127.0.0.1" if settings.web_bind in ("0.0.0.0", "::") else settings.web_bind,
        # Faust's own views (table routing, table contents, statistics, graph) are not served
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        web_application_options={"middlewares": middlewares(metrics, settings.web_max_requests)},
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds / 10),
        broker_rebalance_timeout=settings.session_timeout_seconds * 2,
        broker_commit_interval=1.0,
        broker_max_poll_records=settings.batch_max_events,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        # a dead letter is the original value plus headers: room for the largest message
        producer_max_request_size=max(settings.max_message_bytes, 1_048_576) + 65_536,
        stream_wait_empty=False,
        TableManager=NoTableManager,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    health = Health(stall_seconds=settings.stall_seconds, namespace=settings.app_id)
    rules = Rules(settings.windows, settings.attribution_window * 1000, settings.max_events_per_customer)
    client = redis_client(settings)
    store = Store(client, settings.app_id, rules, settings.max_segments, settings.max_teams,
                  settings.state_cache_customers, settings.state_shards)
    clock = SharedClock(redis_time(client), on_sync=lambda reading: metrics.clock_skew.set(reading.skew))
    pipeline = Pipeline(settings, store, metrics, KafkaDeadLetters(lambda: app.producer, settings.dlq_topic), health,
                        clock)
    # behind: more than ten fetches' worth of messages to read (health.lag, every 2 s)
    api = Api(store, metrics, health, settings.windows, clock, refresh_seconds=settings.web_refresh_seconds,
              behind=lambda: health.lag > 10 * settings.batch_max_events)
    pipeline.on_commit = api.snapshots.changed  # a stored batch: /kpis and /metrics are read again soon
    metrics.declare(list(settings.source_kinds()), REASONS)
    app.advocacy = {"health": health, "metrics": metrics, "store": store, "pipeline": pipeline, "clock": clock}

    deliveries = {}
    for topic_name, kind in settings.source_kinds().items():
        deliveries[topic_name] = _add_agent(app, settings, pipeline, store, topic_name, kind)

    async def deliver_batch(topic: str, batch: Batch) -> None:
        await deliveries[topic].put(batch)

    app.deliver_batch = deliver_batch
    app.positions = StatePositions(store)
    _add_routes(app, api)
    _add_housekeeping(app, settings, store, pipeline, metrics, health, clock)
    install_retention_check(app, settings, health, metrics)
    return app


def _add_agent(app: faust.App, settings: Settings, pipeline: Pipeline, store: Store, topic_name: str,
               kind: str) -> Any:
    """Subscribe to the topic; its batches reach the agent through an in-memory channel."""
    app.topics.add(app.topic(topic_name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions))
    channel = app.channel(maxsize=2)  # backpressure: the fetcher waits while two batches queue

    async def consume(stream: Any) -> None:
        async for batch in stream:
            names = {partition_name(tp.topic, tp.partition): tp for tp in batch.offsets}
            progress = [(name, batch.starts[tp], batch.offsets[tp]) for name, tp in names.items()]
            stopping, behind = await _handle(pipeline, batch.records, progress)
            consumer = app.consumer
            consumer.ack_batch(batch)
            if behind and not stopping:
                store.lost_writes()
                await consumer.resync(batch, {names[name]: at for name, at in behind.items()})
            if stopping:
                raise asyncio.CancelledError

    consume.__name__ = f"{kind}_agent"
    app.agent(channel, name=f"{kind}-agent", concurrency=1)(consume)
    return channel


async def _handle(pipeline: Pipeline, messages: list[Any], progress: list[tuple[str, int, int]]
                  ) -> tuple[bool, dict[str, int | None]]:
    """Handle a batch until it succeeds. Never give up on it: Faust commits past offsets that
    were never acked once later ones are, so a skipped batch would be lost for good. A batch
    that keeps failing stalls its topic, which /health reports."""
    backoff = Backoff(0.1, 10.0)
    while True:
        try:
            return await _finish(pipeline.handle(messages, progress))
        except Exception:
            log.exception("batch of %d messages from %s failed; retrying it", len(messages), where(messages[0]))
            await backoff.wait()


async def _finish(handling: Coroutine[Any, Any, T], grace: float = 10.0) -> tuple[bool, T]:
    """Run a batch to the end even when the worker is stopping (SIGTERM), within ``grace``.

    Returns (stopping, result): when the worker is stopping, the caller acks the finished
    batch (so the final commit includes it) and then stops. A batch cut short is not
    acked: replayed.
    """
    task = asyncio.ensure_future(handling)
    try:
        return False, await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, grace)
        if task.done() and not task.cancelled() and task.exception() is None:
            return True, task.result()
        raise


class StatePositions:
    """The consumer's view of the positions the state stores (``batching.Positions``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, tps: Sequence[Any]) -> dict[Any, int | None]:
        names = {partition_name(tp.topic, tp.partition): tp for tp in tps}
        stored = await self.store.positions(list(names))
        return {tp: stored.get(name) for name, tp in names.items()}

    async def floor(self, offsets: Mapping[Any, int]) -> None:
        await self.store.floor_positions({partition_name(tp.topic, tp.partition): at for tp, at in offsets.items()})


def _add_routes(app: faust.App, api: Api) -> None:
    # /kpis and /metrics, the endpoints polled by many: plain aiohttp handlers on Faust's own server,
    # without a Faust view's dispatch and sensors around each request (a tenth of a request's time)
    async def kpis(request: web.Request) -> web.Response:
        status, body, gzipped = await api.kpis(request.query.get("window"),
                                               accepts_gzip(request.headers.get("Accept-Encoding")))
        headers = {"Content-Type": JSON_CONTENT_TYPE, "Cache-Control": "no-store", "Vary": "Accept-Encoding"}
        return web.Response(body=body, status=status, headers={**headers, **GZIPPED} if gzipped else headers)

    async def metrics(request: web.Request) -> web.Response:
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding"))
        headers = {"Content-Type": METRICS_CONTENT_TYPE, "Vary": "Accept-Encoding"}
        body = await api.metrics_text(gzipped)
        return web.Response(body=body, headers={**headers, **GZIPPED} if gzipped else headers)

    router = cast(Any, app.web).web_app.router
    router.add_get("/kpis", kpis)
    router.add_get("/metrics", metrics)

    class HealthView(View):
        async def get(self, request: Request) -> Response:
            status, body = await api.health_report()
            return self.bytes(body, status=status, headers={"Content-Type": JSON_CONTENT_TYPE,
                                                            "Cache-Control": "no-store"})

    class Page(View):
        async def get(self, request: Request, name: str = "index.html") -> Response:
            found = static_file(name)
            if found is None:
                return self.text("not found", status=404)
            body, content_type = found
            return self.bytes(body, headers={"Content-Type": content_type, **PAGE_HEADERS})

    app.page("/")(Page)
    app.page("/static/{name}")(Page)
    app.page("/health")(HealthView)


def _add_kafka_probe(app: faust.App, settings: Settings, health: Health) -> None:
    probe = KafkaProbe(settings)

    @app.timer(3.0)
    async def _kafka() -> None:
        problem = await probe.check()
        if problem is not None and problem.reason != health.kafka_error:
            log.error("%s", problem.logged("not ready until it answers"))  # /health: the reason only
        elif health.kafka_error and problem is None:
            log.info("kafka answers again")
        health.kafka_error = problem.reason if problem is not None else ""


def _add_gap_check(app: faust.App, sources: set[str], store: Store, metrics: Metrics, health: Health) -> None:
    """Compare, per partition, what was stored with where the fetcher is (see ``stream.gaps``)."""
    watch: GapWatch[Any] = GapWatch()

    @app.timer(2.0)
    async def _gaps() -> None:
        consumer = app.consumer
        try:
            readings = await consumer.readings(sources)
        except Exception as exc:  # the broker away, a rebalance: the next check tries again
            log.debug("gap check skipped: %r", exc)
            return
        found = watch.update(readings) if readings else {}
        for tp, (stored, position) in found.items():
            log.error("%s[%d]: offsets %d-%d were fetched but never stored; reading them again",
                      tp.topic, tp.partition, stored, position - 1)
            metrics.gaps.labels(tp.topic).inc()
        if found:
            store.lost_writes()  # the state may have lost them: cached records may be ahead of it
            await consumer.reread(found)
        metrics.unstored.clear()
        for tp, (stored, position) in watch.open.items():
            metrics.unstored.labels(tp.topic, str(tp.partition)).set(position - stored)
        health.gaps = [f"{tp.topic}[{tp.partition}]: offsets {stored}-{position - 1} fetched but not stored; "
                       "reading them again" for tp, (stored, position) in sorted(watch.open.items())]
        _report_rebuild(consumer, readings, health)


def _report_rebuild(consumer: Any, readings: dict[Any, Any], health: Health) -> None:
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


def _add_housekeeping(app: faust.App, settings: Settings, store: Store, pipeline: Pipeline, metrics: Metrics,
                      health: Health, clock: Clock) -> None:
    @app.on_rebalance_complete.connect
    async def _rebalanced(sender: Any, **kwargs: Any) -> None:
        health.rebalancing = False

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        health.rebalancing = True

    @app.task
    async def _started() -> None:
        health.started = True

    sources = set(settings.source_kinds())
    _add_kafka_probe(app, settings, health)
    _add_gap_check(app, sources, store, metrics, health)

    @app.timer(2.0)
    async def _lag() -> None:
        consumer = app.consumer
        total = 0
        metrics.lag.clear()
        for tp in consumer.assignment():
            if tp.topic not in sources:  # Faust's own internal topics
                continue
            read = consumer._read_offset.get(tp)
            committed = consumer._committed_offset.get(tp)
            position = read if read is not None else (committed - 1 if committed else -1)
            try:
                high = consumer.highwater(tp)
            except Exception:  # highwater is unknown before the first fetch
                log.debug("no highwater yet for %s", tp)
                continue
            lag = max(0, (high or 0) - position - 1)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
        health.lag = total
        health.rebalancing = bool(app.rebalancing)
        try:
            await store.ping()
            await clock.now_ms()  # measures Redis's time when due, even while no batch comes
        except StateError as exc:
            clock.invalidate()  # Redis may come back on another host, with another clock
            health.redis(ok=False, error=str(exc))
        else:
            health.redis(ok=True)
        metrics.redis_state(health.redis_ok)
        metrics.ready.set(0 if health.reasons() else 1)
        crashed = {name: agent.crash_reason for name, agent in app.agents.items() if getattr(agent, "crashed", False)}
        for name in sorted(set(crashed) - set(health.crashed)):
            log.error("agent %s crashed: %r", name, crashed[name])  # /health names the agent only
        health.crashed = sorted(crashed)
        pipeline.dead_letter_log.flush()  # the count of dead-letter lines not logged, once the flood is over

    @app.timer(settings.janitor_interval_seconds)
    async def _janitor() -> None:
        try:
            removed = await store.prune(await clock.now_ms())
        except StateError as exc:
            log.warning("pruning skipped: %s", exc)
            return
        if removed:
            log.info("pruned %d expired buckets and advocates", removed)
