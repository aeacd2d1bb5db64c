"""Fixtures of the tooling tests: settings naming one test's own topics, created on the broker."""

from __future__ import annotations

import asyncio

import pytest

from stream.config import TOPICS, Settings, load_settings
from stream.topics import ensure_topics
from tests.conftest import Namespace


@pytest.fixture
def settings(namespace: Namespace) -> Settings:
    """Settings for this test's namespace; its topics exist before the test publishes."""
    topics = namespace.topics
    result = load_settings(
        kafka_bootstrap_servers=namespace.stack.bootstrap, redis_url=namespace.stack.redis_url,
        app_id=namespace.app_id, topic_partitions=2, **{t.setting: topics[t.kind] for t in TOPICS})
    asyncio.run(ensure_topics(result))
    return result
