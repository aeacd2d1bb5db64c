"""Fixtures: a real Apache Kafka broker and a real redis-server on free loopback ports.

TEST_BROKER=tansu runs the same tests on the embedded tansu broker instead (make run's), to compare.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.config import TOPICS
from stream.embedded import free_port, start_broker, start_redis, stop, tansu_path
from stream.errors import AdvocacyError
from stream.kafka_node import check_installed
from stream.kafka_server import KafkaCluster
from stream.redis_cluster import RedisClusterServers

from .support import IN_CI, Worker, require_binary

_ids = itertools.count(1)


@dataclass(frozen=True)
class Stack:
    """A running broker and Redis."""

    bootstrap: str
    redis_url: str
    workdir: Path


@dataclass(frozen=True)
class Namespace:
    """One test's own app id and topic names on the shared stack."""

    stack: Stack
    app_id: str
    topics: dict[str, str]  # kind -> topic name
    env: dict[str, str]

    def worker(self, log_dir: Path, **extra: str) -> Worker:
        n = next(_ids)
        return Worker(env=dict(self.env, **extra), log=log_dir / f"worker-{n}.log")


BROKER = os.environ.get("TEST_BROKER", "kafka")


def require_kafka() -> None:
    """Java and the Kafka jars; in CI their absence fails the run, never skips it."""
    try:
        check_installed()
    except AdvocacyError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def require_tansu() -> None:
    try:
        tansu_path()
    except Exception as exc:  # noqa: BLE001 - whatever makes tansu unusable is a skip (a failure in CI)
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Apache Kafka node for the whole run (tests use their own topics and groups); its bootstrap."""
    if BROKER == "tansu":
        require_tansu()
        port = free_port()
        broker = start_broker(port, tmp_path_factory.mktemp("tansu") / "tansu.log")
        try:
            yield f"127.0.0.1:{port}"
        finally:
            stop(broker)
        return
    require_kafka()
    with KafkaCluster(tmp_path_factory.mktemp("kafka"), size=1, heap_mb=512) as cluster:
        yield cluster.bootstrap


@pytest.fixture(scope="module")
def stack(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shared broker and a fresh Redis per test module."""
    require_binary("redis-server")
    workdir = tmp_path_factory.mktemp("stack")
    redis_port = free_port()
    redis = start_redis(redis_port, workdir)
    try:
        yield Stack(kafka, f"redis://127.0.0.1:{redis_port}/0", workdir)
    finally:
        stop(redis)


@pytest.fixture
def namespace(stack: Stack) -> Namespace:
    """Fresh app id (consumer group, Redis keys) and topic names for one test."""
    n = next(_ids)
    app_id = f"t{n}-{os.getpid()}"
    topics = {t.kind: f"{app_id}-{t.default}" for t in TOPICS}
    env = dict(os.environ)
    env.update({
        "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "ADVOCACY_REDIS_URL": stack.redis_url,
        "ADVOCACY_APP_ID": app_id,
        **{f"ADVOCACY_{t.setting.upper()}": topics[t.kind] for t in TOPICS},
        "ADVOCACY_SESSION_TIMEOUT_SECONDS": "6",
        "ADVOCACY_TOPIC_PARTITIONS": "4",
    })
    return Namespace(stack, app_id, topics, env)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A Redis Cluster of the test's own: three masters, three replicas, on free loopback ports."""
    require_binary("redis-server")
    require_binary("redis-cli")
    cluster = RedisClusterServers(tmp_path / "redis-cluster")
    try:
        yield cluster.start()
    finally:
        cluster.stop()
