"""Kafka admin: create the topics the service reads and writes when they are missing.

Each is created with the retention the KPIs need (stream/retention.py); ``customers`` is compacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from stream.config import Settings
from stream.errors import BrokerUnavailable
from stream.health import KAFKA_UNREACHABLE, Problem
from stream.kafka import AccessDenied, client_options, describe, login_problem
from stream.kafka_access import check_access
from stream.retention import creation_configs
from stream.retry import StartupWait

__all__ = ["KafkaProbe", "ensure_topics", "partitions", "topic_configs"]

log = logging.getLogger("stream.topics")


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Configs of the topics the service creates, by name (``stream.retention.creation_configs``)."""
    return {name: creation_configs(settings, name) for name in settings.topic_names()}


async def ensure_topics(settings: Settings, attempts: int = 60,
                        report: Callable[[str], None] | None = None, access: bool = False) -> None:
    """Create missing topics; waits for the broker, logging each failed attempt.

    ``access`` (the worker): also check that its principal may Describe its group, Read its source
    topics and Write the dead-letter topic (``stream.kafka_access``).

    A refused login, an untrusted certificate or a missing ACL is logged once (again only when
    the reason changes) and passed to ``report`` (the interim /health); it is retried for as long
    as it lasts, without giving up (an operator can fix an ACL or a credential at the broker).
    Only an unreachable broker counts towards ``attempts`` (``stream.retry.StartupWait``).
    """
    wait = StartupWait(log, attempts, report)
    while True:
        options = client_options(settings)
        admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in settings.topic_names() if name not in existing]
            if missing:
                new = [NewTopic(name, settings.topic_partitions, settings.topic_replication,
                                topic_configs=creation_configs(settings, name)) for name in missing]
                response = await admin.create_topics(new)
                _check_created(response)
                log.info("created topics %s with %d partitions", ", ".join(missing),
                         settings.topic_partitions)
            await admin.find_coordinator(settings.app_id)  # needs Describe on the group
            if access and (lacking := await check_access(settings, options)):
                raise AccessDenied(f"it lacks {'; '.join(lacking)}; grant it on the broker "  # noqa: TRY301 - handled below like a refused login
                                   "(deploy/kafka/init.sh lists the worker's ACLs)")
        except (KafkaError, OSError, AccessDenied) as exc:
            problem = describe(settings, exc)
            if problem.reason == KAFKA_UNREACHABLE:
                problem = await login_problem(settings) or problem
            if problem.reason != KAFKA_UNREACHABLE:
                await wait.denied(problem)
            elif not await wait.unreachable(f"kafka at {settings.kafka_bootstrap_servers} not reachable: "
                                            f"{type(exc).__name__}", "waiting for kafka"):
                break  # no address on /health ("waiting for kafka"): the log line has it
        else:
            if wait.waited:
                log.info("kafka at %s accepts this worker now", settings.kafka_bootstrap_servers)
            return
        finally:
            await admin.close()
    raise BrokerUnavailable(f"kafka at {settings.kafka_bootstrap_servers} did not answer; check "
                  "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS")


def _check_created(response: Any) -> None:
    """Raise for a topic the broker did not create (another worker's creation is fine)."""
    for name, code, *_ in response.topic_errors:
        error = for_code(code)
        if code == 0 or error is TopicAlreadyExistsError:
            continue
        if error is TopicAuthorizationFailedError:
            raise AccessDenied(f"may not create topic {name!r}; create it beforehand or grant Create on it")
        raise error(f"creating topic {name!r}")


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
        self._settings = settings
        self._options = client_options(settings)
        self._client: Any = None  # created on the worker's loop, at the first check

    async def check(self) -> Problem | None:
        """None when Kafka answered within 4 s, else why not."""
        from aiokafka.client import AIOKafkaClient

        try:
            async with asyncio.timeout(4.0):
                if self._client is None:
                    client = AIOKafkaClient(request_timeout_ms=3000, **self._options)
                    await client.bootstrap()
                    self._client = client
                await self._client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            return describe(self._settings, exc)
        return None
