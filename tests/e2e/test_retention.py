"""Topic retention on the broker: what the worker creates, and what it says of topics made by others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stream.config import TOPICS, Settings, load_settings
from stream.retention import describe, required_ms
from tests.conftest import BROKER, Namespace
from tests.oracle import expected_kpis
from tests.reliability.harness import converge, log_text, metric_sum
from tests.scenario import ATTRIBUTION, WINDOWS, build
from tests.support import get_json, produce

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(BROKER == "tansu", reason="tansu reports only the configs set at creation")]

DAY_MS = 86_400_000


def _settings(namespace: Namespace) -> Settings:
    return load_settings(kafka_bootstrap_servers=namespace.stack.bootstrap,
                         **{t.setting: namespace.topics[t.kind] for t in TOPICS})


def test_topics_the_worker_creates_keep_events_for_the_windows_and_customers_is_compacted(
        namespace: Namespace, tmp_path: Path) -> None:
    """The broker reports retention.ms = 98 days on the event topics and the dead-letter topic,
    cleanup.policy=compact on customers; the worker is ready, not degraded, every topic's metric 0."""
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        settings = _settings(namespace)
        configs = asyncio.run(describe(settings, list(namespace.topics.values())))
        health = get_json(worker.url + "/health")
        flags = {t: metric_sum(worker, "advocacy_topic_retention_short", topic=t) for t in namespace.topics.values()}
    finally:
        worker.stop()
    assert required_ms(settings) == 98 * DAY_MS
    for kind in ("review", "referral", "ticket", "dlq"):
        got = configs[namespace.topics[kind]]
        assert (got["retention.ms"], got["cleanup.policy"]) == (str(98 * DAY_MS), "delete"), (kind, got)
    assert configs[namespace.topics["customer"]]["cleanup.policy"] == "compact"
    assert health["status"] == "ready", health
    assert "warnings" not in health, health
    assert flags == dict.fromkeys(namespace.topics.values(), 0), flags
    assert "retention too short" not in log_text(worker)


def test_existing_topics_with_short_retention_are_reported_and_the_worker_still_counts_exactly(
        namespace: Namespace, tmp_path: Path) -> None:
    """Topics made beforehand: reviews keeps 7 days, customers deletes after 30 days, referrals and tickets keep
    everything. The worker logs one line for each short one, sets their metric to 1 (others 0), answers /health
    200 'degraded' naming both, and counts exactly."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    t = namespace.topics
    # without retention.ms a topic gets the broker's log.retention.hours, 7 days by default: short too
    configs = {t["review"]: {"retention.ms": str(7 * DAY_MS)},
             t["customer"]: {"retention.ms": str(30 * DAY_MS), "cleanup.policy": "delete"},
             t["referral"]: {"retention.ms": "-1"}, t["ticket"]: {"retention.ms": str(98 * DAY_MS)}}

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=namespace.stack.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 4, 1, topic_configs=configs.get(name, {}))
                                       for name in t.values()])
        finally:
            await admin.close()

    asyncio.run(create())
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        scenario = build(time.time(), t, seed=71, customers=30)
        produce(namespace.stack.bootstrap, scenario.messages())
        took = converge([worker], lambda: expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION),
                        timeout=90)
        health = get_json(worker.url + "/health")
        flags = {name: metric_sum(worker, "advocacy_topic_retention_short", topic=name) for name in t.values()}
    finally:
        worker.stop()
    lines = [line for line in log_text(worker).splitlines() if "retention too short" in line]
    print(f"exact {took:.1f} s after publishing {len(scenario.messages())} messages; /health {health}; "
          f"log lines {lines}")
    assert health["status"] == "degraded", health
    assert len(health["warnings"]) == 2, health
    assert any(f"topic {t['review']} keeps events 7d" in w and "need 98d" in w for w in health["warnings"]), health
    assert any(f"topic {t['customer']} deletes records after 30d" in w for w in health["warnings"]), health
    assert flags == {t["review"]: 1, t["customer"]: 1, t["referral"]: 0, t["ticket"]: 0, t["dlq"]: 0}, flags
    assert len(lines) == 2, lines
    assert all('"level": "warning"' in line for line in lines), lines
