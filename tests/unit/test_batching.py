"""The batch consumer's own logic: per-batch commit points and the fetch wait it configures."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from stream.app import create_app
from stream.batching import Batch, BatchConsumer
from stream.config import load_settings

REVIEWS0, REVIEWS1 = TP("reviews", 0), TP("reviews", 1)


def _consumer(**settings: Any) -> tuple[Any, BatchConsumer]:
    app = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1", **settings))
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    return app, consumer


async def test_acked_batches_move_each_partition_commit_point_forward_only() -> None:
    _app, consumer = _consumer()
    epoch = consumer.epoch
    assert consumer.ack_batch(Batch([], {REVIEWS0: 10, REVIEWS1: 4}, epoch))
    assert consumer.ack_batch(Batch([], {REVIEWS0: 7}, epoch))  # an older point never moves it back
    assert (consumer._new_offset(REVIEWS0), consumer._new_offset(REVIEWS1)) == (10, 4)
    assert set(consumer._filter_tps_with_pending_acks()) == {REVIEWS0, REVIEWS1}
    assert list(consumer._filter_tps_with_pending_acks({"referrals"})) == []
    assert consumer._new_offset(TP("reviews", 2)) is None  # nothing stored: nothing to commit


async def test_a_batch_fetched_before_a_rebalance_is_not_acked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Revocation and assignment each make earlier batches stale, even when the broker reports the
    same generation number for two generations (tansu does)."""
    app, consumer = _consumer()

    async def faust_callback(self: Any, *args: Any) -> None:
        return None

    monkeypatch.setattr(AIOKafkaConsumer, "on_partitions_revoked", faust_callback)
    monkeypatch.setattr(AIOKafkaConsumer, "on_partitions_assigned", faust_callback)
    fetched = Batch([], {REVIEWS0: 50}, consumer.epoch)
    await consumer.on_partitions_assigned({REVIEWS0}, app.consumer_generation_id)  # same generation number
    assert not consumer.ack_batch(fetched)
    assert consumer._new_offset(REVIEWS0) is None
    current = Batch([], {REVIEWS0: 60}, consumer.epoch)
    assert consumer.ack_batch(current)
    assert consumer._new_offset(REVIEWS0) == 60
    await consumer.on_partitions_revoked({REVIEWS0})
    assert consumer._new_offset(REVIEWS0) is None  # the new owner commits it
    assert not consumer.ack_batch(current)


async def test_the_consumer_thread_uses_the_configured_fetch_wait() -> None:
    """Faust hard-codes 1500 ms; the thread's aiokafka consumer gets ADVOCACY_FETCH_MAX_WAIT_MS."""
    app, consumer = _consumer(fetch_max_wait_ms=123)
    kafka = consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    assert kafka._fetch_max_wait_ms == 123


# --- the fetch loop, on a scripted fetcher (positions, commits, earliest offsets) -----------

@dataclass
class Rec:
    topic: str
    partition: int
    offset: int


@dataclass
class State:
    """Stands in for the state's positions (``stream.app.StatePositions`` over Redis)."""

    stored: dict[TP, int]
    fail: list[Exception] = field(default_factory=list)  # raised by the next reads, one each

    async def read(self, tps: Any) -> dict[TP, int | None]:
        if self.fail:
            raise self.fail.pop()
        return {tp: self.stored.get(tp) for tp in tps}

    async def floor(self, offsets: dict[TP, int]) -> None:
        for tp, offset in offsets.items():
            self.stored[tp] = max(self.stored.get(tp, offset), offset)

    def store(self, batch: Batch) -> dict[TP, int | None]:
        """What the commit script does with a batch's positions; returns those behind."""
        behind: dict[TP, int | None] = {}
        for tp, end in batch.offsets.items():
            cur = self.stored.get(tp)
            if cur is None or batch.starts[tp] > cur:
                behind[tp] = cur
            elif end > cur:
                self.stored[tp] = end
        return behind


@dataclass
class Fetcher:
    """Stands in for aiokafka's fetcher: a position per partition, records up to ``ends``."""

    consumer: BatchConsumer
    ends: dict[TP, int]
    committed: dict[TP, int | None]  # the group's commits: aiokafka starts an assignment there
    earliest: dict[TP, int]
    state: State = field(default_factory=lambda: State({}))
    during_fetch: list[Callable[[], None]] = field(default_factory=list)  # one per fetch, then none
    position: dict[TP, int] = field(default_factory=dict)
    fetches: int = 0

    def __post_init__(self) -> None:
        for tp in self.ends:  # no commit: the reset policy (earliest)
            committed = self.committed.get(tp)
            self.position[tp] = committed if committed is not None else self.earliest[tp]
        c = self.consumer
        c.positions = self.state
        c._wait_next_records = self.wait_next_records
        c.assignment = lambda: set(self.ends)
        c.highwater = self.ends.__getitem__
        c.earliest_offsets = self.earliest_offsets
        c.highwaters = self.highwaters
        c._thread.seek_wait = self.seek_wait

    async def wait_next_records(self, timeout: float) -> tuple[dict[TP, list[Rec]], None]:  # noqa: ASYNC109
        while not self.consumer.flow_active:  # noqa: ASYNC110 - as Faust: wait for the flow to resume first
            await asyncio.sleep(0.005)
        self.fetches += 1
        if self.during_fetch:
            self.during_fetch.pop(0)()
        out = {tp: [Rec(tp.topic, tp.partition, o) for o in range(self.position[tp], end)]
               for tp, end in self.ends.items() if self.position[tp] < end}
        for tp in out:
            self.position[tp] = self.ends[tp]
        await asyncio.sleep(0)
        return out, None

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest[tp] for tp in tps}

    async def seek_wait(self, targets: dict[TP, int]) -> None:  # as Faust's thread: read offsets too
        for tp, offset in targets.items():
            self.position[tp] = offset
            if offset > 0:
                self.consumer._read_offset[tp] = offset
            else:
                self.consumer._read_offset.pop(tp, None)


async def _drain(consumer: BatchConsumer, fetcher: Fetcher, until: Callable[[list[Batch]], bool],
                 fetches: int = 20, cancelled: int = 0) -> list[Batch]:
    """Run the real fetch loop until ``until(delivered)`` or ``fetches`` fetches; every delivered
    batch is stored (positions as the commit script moves them) and acked, as the agent does.
    The first ``cancelled`` hand-overs are cancelled instead, as a revocation clearing the agents'
    queues cancels a put waiting for room."""
    delivered: list[Batch] = []
    stop = types.SimpleNamespace(_stopped=asyncio.Event())
    refused = [cancelled]

    async def deliver(topic: str, batch: Batch) -> None:
        if refused[0]:
            refused[0] -= 1
            waiting = asyncio.get_running_loop().create_future()
            waiting.cancel()
            await waiting  # raises CancelledError in the fetch loop, which itself is not cancelled
        delivered.append(batch)
        behind = fetcher.state.store(batch)
        consumer.ack_batch(batch)
        if behind:
            await consumer.resync(batch, behind)
        if until(delivered):
            stop._stopped.set()

    consumer.deliver = deliver
    consumer.app.flow_control.resume()
    task = asyncio.ensure_future(consumer._drain_messages(stop))
    while not task.done() and fetcher.fetches < fetches:  # noqa: ASYNC110 - polls a scripted loop
        await asyncio.sleep(0.01)
    stop._stopped.set()
    await asyncio.wait_for(task, 5)
    return delivered


def _offsets(batches: list[Batch], tp: TP) -> list[int]:
    return [r.offset for b in batches for r in b.records if (r.topic, r.partition) == (tp.topic, tp.partition)]


async def test_a_dropped_first_fetch_of_a_partition_with_no_commit_is_read_again_from_its_start() -> None:
    """Issue 10: the first fetch after an assignment spans the rebalance and is dropped; the partition
    has no commit, so a seek "to the committed offset" does nothing: it must rewind to the earliest offset."""
    _app, consumer = _consumer()
    uncommitted, committed = TP("reviews", 3), TP("reviews", 2)
    fetcher = Fetcher(consumer, ends={uncommitted: 10, committed: 8}, committed={committed: 5},
                      earliest={uncommitted: 0, committed: 0}, state=State({committed: 5}))
    # the assignment lands while the first fetch is in flight (the generation number may not move)
    fetcher.during_fetch.append(lambda: setattr(consumer, "epoch", consumer.epoch + 1))
    delivered = await _drain(consumer, fetcher, until=lambda got: bool(_offsets(got, uncommitted)))
    assert _offsets(delivered, uncommitted) == list(range(10))
    assert _offsets(delivered, committed) == [5, 6, 7]
    assert consumer.rewinds == 1
    assert fetcher.state.stored == {uncommitted: 10, committed: 8}


async def test_a_dropped_fetch_rewinds_to_what_the_state_stored_not_to_the_group_commit() -> None:
    """A partition paused mid-fetch: the fetch is dropped and the partition re-read from the state's
    position (the end of its last stored batch, ahead of the group's commit); nothing is skipped."""
    _app, consumer = _consumer()
    tp = TP("reviews", 0)
    fetcher = Fetcher(consumer, ends={tp: 4}, committed={tp: 1}, earliest={tp: 0}, state=State({tp: 1}))
    first = await _drain(consumer, fetcher, until=lambda got: len(got) == 1)
    assert _offsets(first, tp) == [1, 2, 3]
    assert fetcher.state.stored[tp] == 4
    fetcher.ends[tp] = 9
    fetcher.during_fetch.append(lambda: consumer._rewind_pending or setattr(consumer, "flow_active", False))
    resume = asyncio.get_running_loop().call_later(0.05, lambda: setattr(consumer, "flow_active", True))
    second = await _drain(consumer, fetcher, until=lambda got: bool(_offsets(got, tp)))
    resume.cancel()
    assert _offsets(second, tp) == [4, 5, 6, 7, 8]
    assert fetcher.position[tp] == 9
    assert consumer.rewinds == 1


async def test_a_failed_rewind_is_retried_before_anything_is_fetched_again() -> None:
    """The seek back fails (the broker is away): no fetch is delivered until a rewind succeeds."""
    _app, consumer = _consumer()
    tp = TP("reviews", 1)
    fetcher = Fetcher(consumer, ends={tp: 6}, committed={}, earliest={tp: 0})
    fetcher.during_fetch.append(lambda: setattr(consumer, "epoch", consumer.epoch + 1))
    fetcher.state.fail.append(RuntimeError("redis away"))
    delivered = await _drain(consumer, fetcher, until=lambda got: bool(_offsets(got, tp)))
    assert _offsets(delivered, tp) == list(range(6))
    assert not fetcher.state.fail
    assert consumer.rewinds == 1


async def test_an_assignment_starts_each_partition_at_the_state_position_even_behind_the_group_commit() -> None:
    """Redis came back from an older snapshot: the group committed offset 7, the state holds only up to 3.
    The partition is read from 3, so the records the state lost are stored again."""
    _app, consumer = _consumer()
    tp, fresh = TP("reviews", 0), TP("reviews", 1)
    fetcher = Fetcher(consumer, ends={tp: 9, fresh: 2}, committed={tp: 7}, earliest={tp: 0, fresh: 0},
                      state=State({tp: 3}))
    await consumer.perform_seek()  # as Faust's recovery does after an assignment
    assert fetcher.position == {tp: 3, fresh: 0}
    # the group may commit what the state holds at once (not only after the next record arrives)
    assert (consumer._new_offset(tp), consumer._new_offset(fresh)) == (3, 0)
    delivered = await _drain(consumer, fetcher, until=lambda got: bool(_offsets(got, tp)))
    assert _offsets(delivered, tp) == [3, 4, 5, 6, 7, 8]
    assert _offsets(delivered, fresh) == [0, 1]
    assert fetcher.state.stored == {tp: 9, fresh: 2}


async def test_a_state_that_lost_writes_mid_stream_is_caught_by_the_next_commit_and_read_again() -> None:
    """The state's position drops (a replica promoted before it caught up) while the worker reads on:
    the next batch's commit finds the position behind its start, and the partition is re-read from it."""
    _app, consumer = _consumer()
    tp = TP("reviews", 0)
    fetcher = Fetcher(consumer, ends={tp: 5}, committed={}, earliest={tp: 0}, state=State({tp: 0}))
    await consumer.perform_seek()
    first = await _drain(consumer, fetcher, until=lambda got: len(got) == 1)
    assert _offsets(first, tp) == [0, 1, 2, 3, 4]
    assert fetcher.state.stored[tp] == 5
    fetcher.state.stored[tp] = 2  # the writes of offsets 2-4 are lost
    fetcher.ends[tp] = 8
    again = await _drain(consumer, fetcher, until=lambda got: fetcher.state.stored[tp] == 8)
    assert _offsets(again, tp) == [5, 6, 7, 2, 3, 4, 5, 6, 7]
    assert consumer.resyncs == 1


async def test_positions_missing_or_below_the_earliest_offset_start_at_the_earliest_offset() -> None:
    """An empty state rebuilds from the earliest offset; a position retention has passed is raised to it."""
    _app, consumer = _consumer()
    empty, expired = TP("reviews", 0), TP("reviews", 1)
    fetcher = Fetcher(consumer, ends={empty: 3, expired: 20}, committed={empty: 3, expired: 20},
                      earliest={empty: 0, expired: 12}, state=State({expired: 5}))
    await consumer.perform_seek()
    assert fetcher.position == {empty: 0, expired: 12}
    assert fetcher.state.stored == {empty: 0, expired: 12}
    assert consumer.rebuilding == {empty: (0, 3)}  # /health reports how far the rebuild got
    assert consumer.rebuilt({empty: 1}) == (1, 3)
    assert consumer.rebuilt({empty: 3}) == (0, 0)
    assert consumer.rebuilding == {}


async def test_a_hand_over_cancelled_by_a_revocation_drops_the_fetch_and_the_loop_goes_on() -> None:
    """Faust's revocation clears the agents' queues, cancelling a put that waits for room: the fetch loop
    survives (re-raised, it crashed Faust's fetcher and the app), drops the fetch and reads it again."""
    _app, consumer = _consumer()
    tp, other = TP("reviews", 0), TP("referrals", 0)
    fetcher = Fetcher(consumer, ends={tp: 5, other: 3}, committed={}, earliest={tp: 0, other: 0})
    delivered = await _drain(consumer, fetcher, cancelled=1,
                             until=lambda got: bool(_offsets(got, tp)) and bool(_offsets(got, other)))
    assert _offsets(delivered, tp) == list(range(5))
    assert _offsets(delivered, other) == [0, 1, 2]
    assert consumer.rewinds == 1
    assert fetcher.state.stored == {tp: 5, other: 3}
