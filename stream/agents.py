"""The agents: one per source topic; each stores a batch, then acks it.

The consumer (``stream.batching``) hands each fetch to the topic's agent as one batch;
the agent acks the batch only after the pipeline has stored it, so a crash replays at
most the unacked batches and the state's per-customer event ids absorb the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import faust

from stream.config import Settings
from stream.pipeline import Pipeline, where
from stream.retry import Backoff
from stream.shards import partition_name
from stream.state import Store

__all__ = ["StatePositions", "add_agent"]

log = logging.getLogger("stream.agents")
T = TypeVar("T")


def add_agent(app: faust.App, settings: Settings, pipeline: Pipeline, store: Store, topic_name: str,
              kind: str) -> Any:
    """Subscribe to the topic; its batches reach the agent through an in-memory channel (returned)."""
    app.topics.add(app.topic(topic_name, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions))
    channel = app.channel(maxsize=2)  # backpressure: the fetcher waits while two batches queue

    async def consume(stream: Any) -> None:
        async for batch in stream:
            names = {partition_name(tp.topic, tp.partition): tp for tp in batch.offsets}
            progress = [(name, batch.starts[tp], batch.offsets[tp]) for name, tp in names.items()]
            stopping, behind = await _handle(pipeline, batch.records, progress)
            consumer = app.consumer
            consumer.ack_batch(batch)
            if behind and not stopping:
                store.lost_writes()
                await consumer.resync(batch, {names[name]: at for name, at in behind.items()})
            if stopping:
                raise asyncio.CancelledError

    consume.__name__ = f"{kind}_agent"
    app.agent(channel, name=f"{kind}-agent", concurrency=1)(consume)
    return channel


async def _handle(pipeline: Pipeline, messages: list[Any], progress: list[tuple[str, int, int]]
                  ) -> tuple[bool, dict[str, int | None]]:
    """Handle a batch until it succeeds. Never give up on it: Faust commits past offsets that
    were never acked once later ones are, so a skipped batch would be lost for good. A batch
    that keeps failing stalls its topic, which /health reports."""
    backoff = Backoff(0.1, 10.0)
    while True:
        try:
            return await _finish(pipeline.handle(messages, progress))
        except Exception:
            log.exception("batch of %d messages from %s failed; retrying it", len(messages), where(messages[0]))
            await backoff.wait()


async def _finish(handling: Coroutine[Any, Any, T], grace: float = 10.0) -> tuple[bool, T]:
    """Run a batch to the end even when the worker is stopping (SIGTERM), within ``grace``.

    Returns (stopping, result): when the worker is stopping, the caller acks the finished
    batch (so the final commit includes it) and then stops. A batch cut short is not
    acked: replayed.
    """
    task = asyncio.ensure_future(handling)
    try:
        return False, await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, grace)
        if task.done() and not task.cancelled() and task.exception() is None:
            return True, task.result()
        raise


class StatePositions:
    """The consumer's view of the positions the state stores (``positions.Positions``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self, tps: Sequence[Any]) -> dict[Any, int | None]:
        names = {partition_name(tp.topic, tp.partition): tp for tp in tps}
        stored = await self.store.positions(list(names))
        return {tp: stored.get(name) for name, tp in names.items()}

    async def floor(self, offsets: Mapping[Any, int]) -> None:
        await self.store.floor_positions({partition_name(tp.topic, tp.partition): at for tp, at in offsets.items()})
