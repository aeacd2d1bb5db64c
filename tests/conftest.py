"""Fixtures: a real tansu broker and a real redis-server on free loopback ports."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.embedded import free_port, start_broker, start_redis, stop, tansu_path

from .support import Worker, require_binary

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh broker and Redis per test module (tansu keeps everything in memory)."""
    require_binary("redis-server")
    try:
        tansu_path()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    workdir = tmp_path_factory.mktemp("stack")
    kafka_port, redis_port = free_port(), free_port()
    broker = start_broker(kafka_port, workdir / "tansu.log")
    redis = start_redis(redis_port, workdir)
    try:
        yield Stack(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", workdir)
    finally:
        stop(redis)
        stop(broker)


@pytest.fixture
def namespace(stack: Stack) -> Namespace:
    """Fresh app id (consumer group, Redis keys) and topic names for one test."""
    n = next(_ids)
    app_id = f"t{n}-{os.getpid()}"
    topics = {"review": f"{app_id}-reviews", "referral": f"{app_id}-referrals",
              "ticket": f"{app_id}-tickets-closed", "customer": f"{app_id}-customers",
              "dlq": f"{app_id}-advocacy-dlq"}
    env = dict(os.environ)
    env.update({
        "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "ADVOCACY_REDIS_URL": stack.redis_url,
        "ADVOCACY_APP_ID": app_id,
        "ADVOCACY_REVIEWS_TOPIC": topics["review"],
        "ADVOCACY_REFERRALS_TOPIC": topics["referral"],
        "ADVOCACY_TICKETS_TOPIC": topics["ticket"],
        "ADVOCACY_CUSTOMERS_TOPIC": topics["customer"],
        "ADVOCACY_DLQ_TOPIC": topics["dlq"],
        "ADVOCACY_SESSION_TIMEOUT_SECONDS": "6",
        "ADVOCACY_TOPIC_PARTITIONS": "4",
    })
    return Namespace(stack, app_id, topics, env)
