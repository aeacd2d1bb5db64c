"""Dead letters under a flood: sent together, retried until out, logged within bounds, too_large cut."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from prometheus_client import CollectorRegistry

from stream.config import load_settings
from stream.dead_letters import CUT_BYTES, KafkaDeadLetters, dead_letter
from stream.health import Health
from stream.kpi.windows import Rules
from stream.logs import Throttle
from stream.metrics import Metrics
from stream.pipeline import DeadLetter, Pipeline
from stream.state import Store


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None


def _letter(offset: int, value: bytes = b"not json", reason: str = "invalid_json") -> DeadLetter:
    return DeadLetter(Message("reviews", 2, offset, b"k", value), reason, "detail text")


def test_a_dead_letter_is_the_value_unchanged_with_its_provenance() -> None:
    value, headers = dead_letter(_letter(41, b"x" * (CUT_BYTES + 10)))
    assert value == b"x" * (CUT_BYTES + 10)
    assert headers == [("source_topic", b"reviews"), ("source_partition", b"2"), ("source_offset", b"41"),
                       ("reason", b"invalid_json"), ("detail", b"detail text")]


def test_a_too_large_value_is_cut_with_its_original_size_in_a_header() -> None:
    big = bytes(range(256)) * 4000  # 1,024,000 bytes
    value, headers = dead_letter(_letter(7, big, "too_large"))
    assert value == big[:CUT_BYTES]
    assert dict(headers)["original_size"] == b"1024000"
    assert dict(headers)["reason"] == b"too_large"
    assert dict(headers)["source_offset"] == b"7"


class Producer:
    """Records what is queued; deliveries resolve when the test says, or fail as configured."""

    def __init__(self, refuse: set[int] | None = None, fail: set[int] | None = None) -> None:
        self.queued: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []
        self.deliveries: list[asyncio.Future[Any]] = []
        self.refuse = refuse or set()  # offsets refused as too large unless cut
        self.fail = fail or set()  # offsets whose delivery fails once
        self.auto = True

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: list[tuple[str, bytes]] | None) -> asyncio.Future[Any]:
        assert headers is not None
        offset = int(dict(headers)["source_offset"])
        if offset in self.refuse and "original_size" not in dict(headers):
            raise ProducerSendError("Error while sending") from MessageSizeTooLargeError()
        self.queued.append((topic, value, headers))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if offset in self.fail:
            self.fail.discard(offset)
            delivery.set_exception(KafkaTimeoutError())
        elif self.auto:
            delivery.set_result(offset)
        self.deliveries.append(delivery)
        return delivery


async def test_a_batch_of_dead_letters_is_queued_at_once_then_awaited_together() -> None:
    """Every letter is queued before any delivery is awaited: one round trip for the batch."""
    producer = Producer()
    producer.auto = False
    sink = KafkaDeadLetters(lambda: producer, "dlq")
    sending = asyncio.ensure_future(sink.send([_letter(i) for i in range(500)]))
    await asyncio.sleep(0.01)
    assert len(producer.queued) == 500
    assert not sending.done()
    for i, delivery in enumerate(producer.deliveries):
        delivery.set_result(i)
    assert await sending == []
    assert {topic for topic, _, _ in producer.queued} == {"dlq"}


async def test_a_letter_refused_as_too_large_is_sent_again_cut_and_failures_are_returned() -> None:
    producer = Producer(refuse={3}, fail={5})
    sink = KafkaDeadLetters(lambda: producer, "dlq")
    big = b"y" * (CUT_BYTES * 3)
    letters = [_letter(i, big if i == 3 else b"{") for i in range(8)]
    unsent = await sink.send(letters)
    assert [letter.message.offset for letter in unsent] == [5]
    cut = [(value, dict(headers)) for _, value, headers in producer.queued if dict(headers)["source_offset"] == b"3"]
    assert cut == [(big[:CUT_BYTES], {**dict(cut[0][1]), "original_size": str(len(big)).encode()})]
    assert len(producer.queued) == 8


class FlakySink:
    """Fails each letter's first attempt when its offset is odd; remembers what went out."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.calls = 0
        self.tried: set[int] = set()

    async def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        self.calls += 1
        unsent = []
        for letter in letters:
            offset = letter.message.offset
            if offset % 2 and offset not in self.tried:
                self.tried.add(offset)
                unsent.append(letter)
            else:
                self.sent.append(offset)
        return unsent


class WallClock:
    """The host's clock (stream.clock.Clock): no Redis behind this test's store."""

    async def now_ms(self) -> int:
        return int(time.time() * 1000)

    def invalidate(self) -> None:
        pass


async def test_a_batch_returns_only_once_every_dead_letter_is_out_each_counted_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """300 bad messages, half of them failing their first send: handle() returns after the retry has
    sent those (never skipped, none sent twice); the metric counts each once; the log has 10 lines."""
    settings = load_settings(reviews_topic="reviews")
    metrics = Metrics(CollectorRegistry())
    client = aioredis.Redis()  # never used: no valid event, no progress to store
    store = Store(client, "t", Rules(settings.windows, settings.attribution_window * 1000))
    sink = FlakySink()
    pipeline = Pipeline(settings, store, metrics, sink, Health(), WallClock())
    messages = [Message("reviews", 0, i, None, b"{oops") for i in range(300)]
    with caplog.at_level(logging.WARNING, logger="stream.pipeline"):
        await pipeline.handle(messages)
    assert sorted(sink.sent) == list(range(300))
    assert sink.calls == 2  # the batch, then the 150 that failed, together
    assert metrics.dead_letters.labels("reviews", "invalid_json")._value.get() == 300
    assert metrics.events.labels("reviews", "dead_letter")._value.get() == 300
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead-lettered")]
    assert len(lines) == 10
    assert lines[0] == "dead-lettered reviews[0]@0: invalid_json: " + lines[0].split(": ", 2)[2]
    await client.aclose()


def test_the_throttle_logs_a_burst_then_counts_and_reports_what_it_held_back(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = Throttle(logging.getLogger("t.throttle"), "dead letters", burst=3, period=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.throttle"):
        for i in range(20):
            throttle.log("reviews too_old" if i % 4 else "referrals invalid_json", logging.WARNING, "line %d", i)
        throttle.flush()  # the period is not over: nothing yet
        assert [r.getMessage() for r in caplog.records] == ["line 0", "line 1", "line 2"]
        now[0] = 10.5
        throttle.flush()
        throttle.flush()  # once
        summary = [r.getMessage() for r in caplog.records][3:]
        assert summary == [("17 more dead letters not logged in the last 10 s "
                           "(reviews too_old 13, referrals invalid_json 4)")]
        throttle.log("k", logging.WARNING, "again")  # a new period: lines again
        assert caplog.records[-1].getMessage() == "again"
