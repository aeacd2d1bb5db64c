"""Replay: rebuild the KPI state from the retained topics into a fresh namespace.

``python -m stream replay --into NEW_APP_ID`` reads every retained message of the four
topics from the earliest offset, applies it through the same pipeline as a worker, and
commits the consumer group ``NEW_APP_ID`` as it goes. It never touches the live
namespace, so it is safe while live workers run. When it has caught up, start (or
restart) the workers with ``ADVOCACY_APP_ID=NEW_APP_ID``: they continue from the
replay's positions. Invalid messages are counted, not dead-lettered again (the live run
already did).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from stream.clock import SharedClock, redis_time
from stream.config import Settings
from stream.errors import StateError
from stream.health import Health
from stream.kafka import client_options
from stream.kpi.windows import Rules
from stream.metrics import Metrics
from stream.pipeline import DeadLetter, Pipeline
from stream.redis_client import redis_client
from stream.shards import partition_name
from stream.state import Store
from stream.topics import partitions as topic_partitions

__all__ = ["CountingSink", "Summary", "replay"]

log = logging.getLogger("stream.replay")


@dataclass
class CountingSink:
    """Dead-letter sink of a replay: counts reasons, sends nothing."""

    reasons: dict[str, int] = field(default_factory=dict)

    async def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        for letter in letters:
            self.reasons[letter.reason] = self.reasons.get(letter.reason, 0) + 1
        return []


@dataclass
class Summary:
    messages: int = 0
    seconds: float = 0.0
    dead_letters: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        rate = self.messages / self.seconds if self.seconds else 0.0
        dead = sum(self.dead_letters.values())
        return (f"replayed {self.messages} messages in {self.seconds:.1f} s ({rate:,.0f}/s); "
                f"{dead} invalid ({', '.join(f'{k}={v}' for k, v in sorted(self.dead_letters.items())) or 'none'})")


async def replay(settings: Settings, into: str, *, idle_seconds: float = 3.0, progress: bool = True) -> Summary:
    """Rebuild state under app id ``into``; refuses a namespace that already has state."""
    target = settings.model_copy(update={"app_id": into})
    client = redis_client(settings)  # the worker's: a single Redis or Redis Cluster, TLS alike
    rules = Rules(settings.windows, settings.attribution_window * 1000, settings.max_events_per_customer)
    store = Store(client, into, rules,
                  settings.max_segments, settings.max_teams, settings.state_cache_customers, settings.state_shards)
    if await store.has_state():
        raise StateError(f"app id {into!r} already has state in Redis: replay needs a fresh one")
    await store.check_rules()
    sink = CountingSink()
    pipeline = Pipeline(target, store, Metrics(CollectorRegistry()), sink, Health(), SharedClock(redis_time(client)))
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=into, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=settings.batch_max_events)
    await consumer.start()
    summary = Summary()
    started = time.monotonic()
    try:
        partitions = await topic_partitions(settings, list(settings.source_kinds()))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        nexts = await consumer.beginning_offsets(partitions)  # the state's positions, as a worker keeps them
        await store.floor_positions({partition_name(tp.topic, tp.partition): at for tp, at in nexts.items()})
        total = sum(ends.values())
        last_data = time.monotonic()
        last_report = 0.0
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.batch_max_events)
            if not batches:
                positions = [await consumer.position(tp) for tp in partitions]
                caught_up = all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True))
                if caught_up and time.monotonic() - last_data > idle_seconds:
                    break
                continue
            last_data = time.monotonic()
            commits = {}
            for tp, records in batches.items():
                end = records[-1].offset + 1
                await pipeline.handle(records, [(partition_name(tp.topic, tp.partition), nexts[tp], end)])
                nexts[tp] = end
                summary.messages += len(records)
                commits[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
            await consumer.commit(commits)
            if progress and time.monotonic() - last_report > 1:
                last_report = time.monotonic()
                print(f"\r  {summary.messages:,}/{total:,} messages", end="", file=sys.stderr, flush=True)
    finally:
        await consumer.stop()
        await client.aclose()
    if progress:
        print(file=sys.stderr)
    return Summary(summary.messages, time.monotonic() - started, dict(sink.reasons))

