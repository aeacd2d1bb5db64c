"""Topics the service creates keep their events as long as they can matter (CONTRACT.md section 2)."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream.config import Settings, load_settings
from stream.topics import topic_configs

DAY_MS = 86_400_000


def test_event_topics_keep_the_longest_window_plus_the_attribution_window_plus_a_day() -> None:
    """Issue 11 (retention edge): reviews, referrals and tickets-closed keep 90 d + 7 d + 1 d by default, and
    follow ADVOCACY_WINDOWS and ADVOCACY_ATTRIBUTION_WINDOW; customers is compacted."""
    defaults = topic_configs(load_settings())
    for name in ("reviews", "referrals", "tickets-closed"):
        assert defaults[name] == {"retention.ms": str(98 * DAY_MS)}
    assert defaults["customers"] == {"cleanup.policy": "compact", "retention.ms": "-1"}
    other = topic_configs(load_settings(windows="1h,7d", attribution_window="14d"))
    assert other["tickets-closed"] == {"retention.ms": str(22 * DAY_MS)}


def test_created_topics_carry_their_retention_on_the_broker(settings: Settings) -> None:
    """The broker reports the retention the service set when it created the topics (the fixture creates them)."""

    async def describe() -> dict[str, dict[str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            names = [settings.tickets_topic, settings.customers_topic]
            replies = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            await admin.close()
        found: dict[str, dict[str, str]] = {}
        for reply in replies:
            for resource in reply.resources:
                _, _, _, name, entries = resource[:5]
                found[name] = {entry[0]: entry[1] for entry in entries}
        return found

    configs = asyncio.run(describe())
    assert configs[settings.tickets_topic]["retention.ms"] == str(98 * DAY_MS), configs
    assert configs[settings.customers_topic]["cleanup.policy"] == "compact", configs
