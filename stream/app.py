"""The Faust adapter: the worker app, built from its parts (``Services``).

``create_app`` builds the parts once, attaches them as ``app.services``, and wires them
to Faust: one agent per source topic (``stream.agents``), the HTTP routes
(``stream.routes``), the named timers and signals that record /health's facts
(``stream.timers``), and the retention check at start-up (``stream.retention``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stream.agents import StatePositions, add_agent
from stream.batching import Batch, BatchApp, NoTableManager
from stream.clock import SharedClock, redis_time
from stream.config import Settings
from stream.contract import REASONS
from stream.dead_letters import KafkaDeadLetters
from stream.health import Health
from stream.kafka import faust_credentials
from stream.kpi.windows import Rules
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.redis_client import redis_client
from stream.retention import install as install_retention_check
from stream.routes import add_routes
from stream.services import Services
from stream.state import Store
from stream.timers import install as install_timers
from stream.web import Api, middlewares

__all__ = ["WorkerApp", "create_app"]


class WorkerApp(BatchApp):
    """The worker's Faust app, carrying its parts."""

    services: Services  # set once by create_app, before the worker starts


def create_app(settings: Settings, registry: CollectorRegistry | None = None,
               web_socket: str | None = None) -> WorkerApp:
    """Build a worker app; nothing connects until the worker starts.

    ``web_socket``: serve HTTP on this Unix socket, for the front (``stream.front``) that owns
    the web port; without it (tests), on ``ADVOCACY_WEB_BIND:ADVOCACY_WEB_PORT``.
    """
    metrics = Metrics(registry or CollectorRegistry())
    app = WorkerApp(
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
        web_application_options={"middlewares": middlewares()},
        **({"web_transport": f"unix://{web_socket}"} if web_socket else {}),
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
    metrics.read_health(health.ready, lambda: health.redis_ok)  # computed when scraped
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
    metrics.declare(list(settings.source_kinds()), REASONS)
    app.services = services = Services(settings, metrics, health, store, clock, pipeline, api)

    deliveries = {topic: add_agent(app, settings, pipeline, store, topic, kind)
                  for topic, kind in settings.source_kinds().items()}

    async def deliver_batch(topic: str, batch: Batch) -> None:
        await deliveries[topic].put(batch)

    app.deliver_batch = deliver_batch
    app.positions = StatePositions(store)
    add_routes(app, api)
    install_timers(app, services)
    install_retention_check(app, settings, health, metrics)
    return app
