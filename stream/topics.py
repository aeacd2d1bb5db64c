"""Kafka admin: create the topics the service reads and writes when they are missing.

Each is created with the retention the KPIs need (stream/retention.py); ``customers`` is compacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stream.config import Settings
from stream.errors import BrokerUnavailable
from stream.kafka import client_options
from stream.retention import creation_configs

log = logging.getLogger("stream.topics")


def topic_names(settings: Settings) -> list[str]:
    return [settings.reviews_topic, settings.referrals_topic, settings.tickets_topic,
            settings.customers_topic, settings.dlq_topic]


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Configs of the topics the service creates, by name (``stream.retention.creation_configs``)."""
    return {name: creation_configs(settings, name) for name in topic_names(settings)}


async def ensure_topics(settings: Settings, attempts: int = 60) -> None:
    """Create missing topics; waits for the broker, logging each failed attempt."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in topic_names(settings) if name not in existing]
            if missing:
                new = [NewTopic(name, settings.topic_partitions, settings.topic_replication,
                                topic_configs=creation_configs(settings, name)) for name in missing]
                with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                    await admin.create_topics(new)
                log.info("created topics %s with %d partitions", ", ".join(missing),
                         settings.topic_partitions)
            return
        except (KafkaError, OSError) as exc:
            log.warning("kafka at %s not reachable (attempt %d/%d): %s",
                        settings.kafka_bootstrap_servers, attempt, attempts, type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        finally:
            await admin.close()
    raise BrokerUnavailable(f"kafka at {settings.kafka_bootstrap_servers} did not answer; check "
                  "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS")


async def partitions(settings: Settings, names: list[str]) -> list[TopicPartition]:
    """The partitions of those of ``names`` that exist.

    Asked of the cluster: a new consumer knows no topic's partitions until it has fetched them
    (Apache Kafka answers a client's first metadata request with no topic at all).
    """
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics()  # all of them: naming a missing one would create it
    finally:
        await admin.close()
    found = {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described if not t["error_code"]}
    return [TopicPartition(name, p) for name in names for p in found.get(name, ())]


class KafkaProbe:
    """Asks the cluster for metadata, to tell /health whether Kafka answers."""

    def __init__(self, settings: Settings) -> None:
        self._options = client_options(settings)
        self._client: Any = None  # created on the worker's loop, at the first check

    async def check(self) -> str:
        """Empty when Kafka answered within 4 s, else why not."""
        from aiokafka.client import AIOKafkaClient

        try:
            async with asyncio.timeout(4.0):
                if self._client is None:
                    client = AIOKafkaClient(request_timeout_ms=3000, **self._options)
                    await client.bootstrap()
                    self._client = client
                await self._client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            return f"kafka unreachable at {self._options['bootstrap_servers']}: {type(exc).__name__}"
        return ""
