"""Topic retention: the source topics must keep events as long as they can matter.

Contract section 2: longest window + attribution window + 1 day (98 days with the default
windows), ``customers`` compacted. The service creates its topics that way; at start-up a
worker reads the retention of the topics as they are (DescribeConfigs) and, where one is
shorter, says so in a log line, in ``advocacy_topic_retention_short`` and on /health
(degraded: the worker still counts, but rebuilding the state from the topics would miss events).
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from stream.config import Settings
from stream.kafka import client_options
from stream.retry import Backoff

__all__ = ["DAY_MS", "check", "creation_configs", "describe", "install", "required_ms", "shortfall"]

log = logging.getLogger("stream.retention")

DAY_MS = 86_400_000


def required_ms(settings: Settings) -> int:
    """How long the event topics must keep events: longest window + attribution window + 1 day."""
    return (settings.longest_window_seconds + settings.attribution_window) * 1000 + DAY_MS


def creation_configs(settings: Settings, name: str) -> dict[str, str]:
    """Topic configs for a topic the service creates."""
    if settings.compacted(name):
        return {"cleanup.policy": "compact", "retention.ms": "-1"}  # every latest record, kept for good
    return {"retention.ms": str(required_ms(settings))}


def _days(ms: int) -> str:
    return f"{ms / DAY_MS:g}d"


def shortfall(settings: Settings, name: str, configs: dict[str, str]) -> str:
    """Why topic ``name`` with these configs does not keep what the KPIs need; empty when it does."""
    policy = configs.get("cleanup.policy", "delete")
    retention = int(configs.get("retention.ms", "-1"))  # -1: no time limit
    if settings.compacted(name):  # every customer's latest record matters, however old
        if "delete" not in policy or retention < 0:
            return ""
        return (f"topic {name} deletes records after {_days(retention)} (retention.ms={retention}, "
                f"cleanup.policy={policy}); customers must be compacted (cleanup.policy=compact)")
    if "compact" in policy:
        return f"topic {name} is compacted (cleanup.policy={policy}): it keeps one event per key, events are lost"
    need = required_ms(settings)
    if retention < 0 or retention >= need:
        return ""
    return (f"topic {name} keeps events {_days(retention)} (retention.ms={retention}); the KPIs need "
            f"{_days(need)} (longest window {_days(settings.longest_window_seconds * 1000)} + attribution window "
            f"{_days(settings.attribution_window * 1000)} + 1d)")


async def describe(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    """The configs of existing topics ``names`` (a missing topic is left out)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n in existing]
        if not wanted:
            return {}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted])
    finally:
        await admin.close()
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, _message, _type, name, entries, *_ in response.resources:
            if error_code == 0:
                out[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return out


async def check(settings: Settings) -> dict[str, str]:
    """Topic -> why its retention is short, for every source topic that falls short."""
    found = await describe(settings, list(settings.source_kinds()))
    return {name: why for name, configs in found.items() if (why := shortfall(settings, name, configs))}


def install(app: Any, settings: Settings, health: Any, metrics: Any) -> None:
    """At worker start: check the source topics once; log, set the metric and /health's warnings."""

    @app.task  # type: ignore[untyped-decorator]
    async def _check_retention() -> None:
        backoff = Backoff(2.0, 2.0)
        for attempt in range(5):
            try:
                short = await check(settings)
                break
            except (KafkaError, OSError) as exc:
                log.info("could not read topic retention (attempt %d/5): %s", attempt + 1, type(exc).__name__)
                await backoff.wait()
        else:
            return
        for name in list(settings.source_kinds()):
            metrics.retention_short.labels(name).set(1 if name in short else 0)
        for why in short.values():
            log.warning("retention too short: %s; rebuilding the state from the topics would miss events", why)
        health.warnings = sorted(short.values())
