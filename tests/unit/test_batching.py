"""The batch consumer's own logic: per-batch commit points and the fetch wait it configures."""

from __future__ import annotations

from typing import Any

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
    app, consumer = _consumer()
    generation = app.consumer_generation_id
    assert consumer.ack_batch(Batch([], {REVIEWS0: 10, REVIEWS1: 4}, generation))
    assert consumer.ack_batch(Batch([], {REVIEWS0: 7}, generation))  # an older point never moves it back
    assert (consumer._new_offset(REVIEWS0), consumer._new_offset(REVIEWS1)) == (10, 4)
    assert set(consumer._filter_tps_with_pending_acks()) == {REVIEWS0, REVIEWS1}
    assert list(consumer._filter_tps_with_pending_acks({"referrals"})) == []
    assert consumer._new_offset(TP("reviews", 2)) is None  # nothing stored: nothing to commit


async def test_a_batch_fetched_before_a_rebalance_is_not_acked() -> None:
    app, consumer = _consumer()
    stale = Batch([], {REVIEWS0: 50}, app.consumer_generation_id - 1)
    assert not consumer.ack_batch(stale)
    assert consumer._new_offset(REVIEWS0) is None


async def test_the_consumer_thread_uses_the_configured_fetch_wait() -> None:
    """Faust hard-codes 1500 ms; the thread's aiokafka consumer gets ADVOCACY_FETCH_MAX_WAIT_MS."""
    app, consumer = _consumer(fetch_max_wait_ms=123)
    kafka = consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    assert kafka._fetch_max_wait_ms == 123
