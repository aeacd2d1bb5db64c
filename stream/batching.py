"""Batches, not events, through Faust.

Faust's consumer hands every record to the conductor one at a time (two tasks per
record in ``wait_first``, a decode, a queue put, a stream step): about 70 us an event,
which caps a worker near 14k events/s whatever the agent does. This consumer keeps
Faust's group membership, flow control, rebalancing and commit timer, but hands each
fetch to the agents as one ``Batch`` per topic of aiokafka's own records, through an
in-memory Faust channel: nothing is built or tracked per event.

Where to read from is the state's business, not the group's: the state stores, in the
same atomic call as a batch's effect, each partition's position (the offset its next
unstored record has), and moves it only over a batch that starts at or before it. On an
assignment, after a dropped fetch, or when a commit finds the state's position behind the
batch (the state came back without its latest writes), a partition is read again from
the state's position; with no position (a new partition, an empty state) from the
earliest offset, so an empty state rebuilds itself. Re-reading is harmless: each
customer's record holds its event ids.

Kafka commits are still made, for lag monitoring and tools: an agent calls ``ack_batch``
after the batch is stored, which moves each partition's commit point to the batch's end.
A batch fetched before a rebalance is never acked (counted by assignments, since a broker
may report the same generation number twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.tables import TableManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

from stream import rejoin
from stream.positions import Positions, StatePositions

__all__ = ["Batch", "BatchApp", "BatchConsumer", "Deliver", "FetchTunedThread", "NoTableManager", "Positions"]

log = logging.getLogger("stream.batching")


@dataclass(slots=True)
class Batch:
    """Records of one topic from one fetch, and the commit point each partition reaches."""

    records: list[Any] = field(default_factory=list)  # aiokafka ConsumerRecords
    offsets: dict[Any, int] = field(default_factory=dict)  # TP -> last offset + 1
    epoch: int = 0  # the consumer's assignment count when it was fetched
    starts: dict[Any, int] = field(default_factory=dict)  # TP -> offset its fetch started from
    seeks: dict[Any, int] = field(default_factory=dict)  # TP -> the partition's seek count then


Deliver = Callable[[str, Batch], Awaitable[None]]


class FetchTunedThread(AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's consumer thread with our fetch wait instead of its hard-coded 1500 ms.

    Ours is ``ADVOCACY_FETCH_MAX_WAIT_MS``, 100 ms. Measured 2026-11-29 (2 shared cores), for two reasons:

    - tansu answers a fetch that found no data on its own schedule, not when data arrives:
      a record produced to an idle partition reached a waiting consumer after 297 ms (p50,
      max 538) at 1500 ms, 15 ms at 100 ms (freshness p99 2-3 s at 1500 ms, under 1 s at 100).
    - Apache Kafka answers on arrival (7 ms p50 at either wait), but a seek waits for the
      fetch in flight: records sought on a quiet partition arrived after 1138 ms (p50, max
      1291) at 1500 ms, 58 ms (max 110) at 100 ms. Every assignment's seek to the state's
      positions, rewind after a dropped fetch and gap re-read is one.

    The cost: an idle worker sends about ten empty fetches a second to each broker.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        rejoin.install()  # a stale-generation commit keeps the member (stream/rejoin.py)
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the argument here and hands it to its fetcher in start()
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # pragma: no cover - an aiokafka rename
            raise RuntimeError("aiokafka no longer has AIOKafkaConsumer._fetch_max_wait_ms")
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # noqa: SLF001 - checked in compat.members()
        return consumer


class BatchConsumer(StatePositions, AIOKafkaConsumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, delivering a fetch per topic instead of per record."""

    deliver: Deliver | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._durable: dict[Any, int] = {}  # TP -> offset up to which every record is stored
        self._next: dict[Any, int] = {}  # TP -> offset the next fetched records start from
        self._seeks: dict[Any, int] = {}  # TP -> seeks so far (a batch from before one is stale for it)
        self._delivered: dict[Any, int] = {}  # TP -> end of the last batch handed to an agent
        self._deliveries = 0  # batches being handed over right now
        self._rewind_pending = False
        # Assignments and revocations seen. Generation numbers cannot tell every rebalance
        # apart (a broker may report the same number twice), so a batch or fetch is stale
        # when this count moved since it was fetched.
        self.epoch = 0
        self.rewinds = 0
        self.resyncs = 0
        # partitions read again from their earliest offset because the state had no position
        # for them: TP -> (earliest offset, end offset then), until the state holds that end
        self.rebuilding: dict[Any, tuple[int, int]] = {}
        super().__init__(*args, **kwargs)

    def _new_consumer_thread(self) -> Any:
        return FetchTunedThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        deliver = self.deliver
        assert deliver is not None, "BatchConsumer.deliver must be set before the worker starts"
        consumer_should_stop = self._stopped.is_set
        # mode's Service._stopped (the fetcher is Faust's fetcher service)
        fetcher_should_stop = fetcher._stopped.is_set  # noqa: SLF001 - in compat.members()
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self._rewind_pending and self.flow_active:
                    await self._rewind()
                    continue
                epoch = self.epoch
                records, active = await self._wait_next_records(1.0)
                if records is None or self.should_stop:
                    continue
                if self._must_drop(records, active, epoch):
                    # a rebalance began or happened while fetching, or a partition was
                    # paused: these records may be stale, or the first ones of a new
                    # assignment. Drop them and rewind every partition to the first offset
                    # not known to be stored, so nothing between there and them is skipped.
                    if any(records.values()):
                        self._rewind_pending = True
                    continue
                for topic, batch in self._batches(records, epoch).items():
                    if not await self._hand_over(deliver, topic, batch):
                        break  # the rest of this fetch is dropped and every partition rewound
        except (*self.consumer_stopped_errors, asyncio.CancelledError):
            if self.transport.app.should_stop:
                return
            raise

    async def _hand_over(self, deliver: Deliver, topic: str, batch: Batch) -> bool:
        """Whether one batch reached the agents (False: a revocation cancelled the hand-over)."""
        await self.app.flow_control.acquire()
        self._deliveries += 1
        try:
            await deliver(topic, batch)
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            # Faust's revocation clears the agents' queues (flow_control.clear()),
            # which cancels a hand-over waiting for room in one. Re-raised, that
            # crashed Faust's fetcher, which has no supervisor, and with it the app
            # (seen on Apache Kafka, tests/integration/test_kafka_overrides.py).
            self._rewind_pending = True
            return False
        finally:
            self._deliveries -= 1
        return True

    def _must_drop(self, records: Mapping[Any, list[Any]], active: set[Any] | None, epoch: int) -> bool:
        """True when a fetch may not be delivered: see ``_drain_messages``."""
        return (self._rewind_pending or not self.flow_active or epoch != self.epoch
                or (active is not None and any(tp not in active and tp not in self._buffered_partitions
                                               for tp, fetched in records.items() if fetched)))

    def _batches(self, records: Mapping[Any, list[Any]], epoch: int) -> dict[str, Batch]:
        """One batch per topic of a fetch; each partition's part starts where its last one ended."""
        read_offset = self._read_offset
        batches: dict[str, Batch] = {}
        for tp, recs in records.items():
            if not recs:
                continue
            batch = batches.get(tp.topic)
            if batch is None:
                batch = batches[tp.topic] = Batch(epoch=epoch)
            batch.records.extend(recs)
            first, end = recs[0].offset, recs[-1].offset + 1
            start = self._next.get(tp, first)
            batch.starts[tp] = min(start, first)  # offsets between hold no records (markers, compaction)
            batch.offsets[tp] = end
            batch.seeks[tp] = self._seeks.get(tp, 0)
            self._next[tp] = end
            read_offset[tp] = end - 1
            if end > self._delivered.get(tp, -1):
                self._delivered[tp] = end
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        return batches

    def ack_batch(self, batch: Batch) -> bool:
        """Mark ``batch`` durable: its partitions may commit up to its end. False if stale."""
        if batch.epoch != self.epoch:
            return False
        durable = self._durable
        for tp, offset in batch.offsets.items():
            if offset > durable.get(tp, -1):
                durable[tp] = offset
        return True

    # Faust's committer asks these two which partitions have something to commit, and
    # up to where: answer from the per-batch commit points instead of per-record acks.
    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[Any]:
        return (tp for tp in list(self._durable)
                if topics is None or tp in topics or tp.topic in topics)

    def _new_offset(self, tp: Any) -> int | None:
        return self._durable.get(tp)

    async def _commit_offsets(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        """Faust's commit, except that a refused one is not remembered as made.

        Faust records the offsets in ``_committed_offset`` whether or not the broker took them,
        and commits a partition again only past that: after a commit refused for a stale
        generation, a partition with no new records kept its old commit (and tools a false lag)
        for as long as it stayed quiet (measured on Apache Kafka: 10 s to over a minute).
        """
        committed = self._committed_offset
        before = {tp: committed[tp] for tp in offsets}
        did_commit: bool = await super()._commit_offsets(offsets, start_new_transaction)
        if not did_commit:
            for tp, offset in before.items():
                if offset is None:
                    committed.pop(tp, None)
                else:
                    committed[tp] = offset
        return did_commit

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self.epoch += 1
        for tp in revoked:
            for table in (self._durable, self._delivered, self._next, self.rebuilding):
                table.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        self.epoch += 1
        await super().on_partitions_assigned(assigned, generation_id)


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not only a future it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class NoTableManager(TableManager):  # type: ignore[misc]
    """Faust's table manager without its one-second start-up sleep: this app has no tables
    (its state is in Redis), so there is nothing to wait for before joining the group."""

    async def on_start(self) -> None:  # pragma: no cover - exercised by every worker start
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class BatchApp(faust.App):  # type: ignore[misc]
    """A Faust app whose consumer delivers batches (see module docstring)."""

    deliver_batch: Deliver | None = None  # set by the adapter before the worker starts
    positions: Positions | None = None  # likewise
    fetch_max_wait_ms: int = 100  # set by the adapter from the settings

    def _new_consumer(self) -> Any:
        consumer = BatchConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )
        consumer.deliver = self.deliver_batch
        consumer.positions = self.positions
        return consumer
