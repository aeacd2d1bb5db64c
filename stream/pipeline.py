"""One batch of messages: validate, dead-letter the bad ones, store the rest, measure.

Knows nothing of Faust: the adapter hands it records (``Record``) and acks them
only after ``handle`` returns, i.e. after their effect is stored in Redis.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stream.clock import Clock
from stream.config import Settings
from stream.errors import InvalidEvent, StateError, StateUnavailable
from stream.event import Event
from stream.events import parse
from stream.health import Health
from stream.logs import Throttle
from stream.metrics import Metrics, observe_many
from stream.retry import Backoff
from stream.state import Store

__all__ = ["DeadLetter", "DeadLetterSink", "Pipeline", "Record", "where"]

log = logging.getLogger("stream.pipeline")
FOLDED_LOG_SECONDS = 60  # at most one "over the cap" warning a minute


class Record(Protocol):
    """A consumed Kafka record as the pipeline reads it (aiokafka's ``ConsumerRecord``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int | None: ...  # broker/producer timestamp, epoch ms (as aiokafka's)


def where(record: Record) -> str:
    """How logs name a record: topic[partition]@offset (never a customer id)."""
    return f"{record.topic}[{record.partition}]@{record.offset}"


@dataclass(frozen=True)
class DeadLetter:
    """A bad message and why it is bad."""

    message: Record
    reason: str
    detail: str


class DeadLetterSink(Protocol):
    async def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Send the letters together; return those that were not sent (to be sent again)."""
        ...


class Pipeline:
    """Handles batches from any topic; safe to call from several agents."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics, dead_letters: DeadLetterSink,
                 health: Health, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.health = health
        self.clock = clock
        self.kinds = settings.source_kinds()
        self._limits = (settings.longest_window_seconds * 1000, settings.attribution_window * 1000,
                        settings.future_tolerance_seconds * 1000, settings.max_message_bytes)
        self._folded_logged = 0.0
        # a flood of bad input must not flood the log: 10 lines per 10 s, then a count
        self.dead_letter_log = Throttle(log, "dead letters and validation errors")

    async def handle(self, messages: Sequence[Record],
                     progress: Sequence[tuple[str, int, int]] = ()) -> dict[str, int | None]:
        """Process a batch of one topic; returns once every effect is durable (retries Redis).

        ``progress`` (partition, start, end) moves the state's positions in the same atomic
        call; returns the partitions whose stored position was behind the batch (see
        ``Store.commit``), to be read again from there.
        """
        started = time.perf_counter()
        now_ms = await self._now_ms()  # Redis's time (stream.clock), whatever this host's clock says
        valid: list[Event] = []
        stored: list[Record] = []
        longest, attribution, tolerance, max_bytes = self._limits
        kind = self.kinds[messages[0].topic] if messages else ""
        bad: list[DeadLetter] = []
        for message in messages:
            try:
                event = parse(kind, message.value, now_ms, longest_window_ms=longest, attribution_ms=attribution,
                              future_tolerance_ms=tolerance, max_bytes=max_bytes)
            except InvalidEvent as exc:
                bad.append(DeadLetter(message, exc.reason, exc.detail))
            except Exception as exc:  # noqa: BLE001 - a validation bug must not stop the partition
                self.dead_letter_log.log(f"{message.topic} unprocessable", logging.ERROR, "could not validate %s",
                                         where(message), exc_info=True)
                bad.append(DeadLetter(message, "unprocessable", type(exc).__name__))
            else:
                valid.append(event)
                stored.append(message)
        if bad:
            await self._dead_letter(bad)
        behind: dict[str, int | None] = {}
        if valid or progress:
            outcomes, behind = await self._store(valid, stored[0].topic if stored else "", progress,
                                                 self._capped(valid, stored))
            if stored:
                self._measure(stored, outcomes, await self._now_ms())
        self.metrics.batch_duration.observe(time.perf_counter() - started)
        self.health.progress()
        return behind

    def _capped(self, valid: list[Event], stored: list[Record]) -> Callable[[list[Event]], Awaitable[None]]:
        """Dead-letters the events the per-customer cap turns away, each once per batch, before the
        state is written without them (``Store.commit``): at least once, never lost."""
        by_event: dict[int, Record] | None = None  # built only when the cap turns something away
        detail = "the customer holds ADVOCACY_MAX_EVENTS_PER_CUSTOMER events that expire later"

        async def send(events: list[Event]) -> None:
            nonlocal by_event
            if by_event is None:
                by_event = {id(e): m for e, m in zip(valid, stored, strict=True)}
            fresh = [by_event.pop(id(e)) for e in events if id(e) in by_event]
            if fresh:
                await self._dead_letter([DeadLetter(m, "customer_cap", detail) for m in fresh])
        return send

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """Send a batch's dead letters together; the batch is acked only when every one is out:
        those not sent are sent again, with backoff, never skipped."""
        pending, backoff = letters, Backoff(0.1, 5.0)
        while True:
            try:
                pending = await self.dead_letters.send(pending)
            except Exception:
                log.exception("%d dead letters from %s not sent; retrying", len(pending), where(pending[0].message))
            else:
                if not pending:
                    break
                log.error("%d of %d dead letters from %s not sent; retrying them", len(pending), len(letters),
                          where(pending[0].message))
            await backoff.wait()
        for letter in letters:
            self.dead_letter_log.log(f"{letter.message.topic} {letter.reason}", logging.WARNING,
                                     "dead-lettered %s: %s: %s", where(letter.message), letter.reason, letter.detail)
        for (topic, reason), n in Counter((letter.message.topic, letter.reason) for letter in letters).items():
            self.metrics.dead_letters.labels(topic, reason).inc(n)
            self.metrics.events.labels(topic, "dead_letter").inc(n)

    async def _now_ms(self) -> int:
        """The shared clock's now; waits while Redis cannot be asked (only before its first answer,
        or when the last one is too old to use)."""
        backoff = Backoff(0.05, self.settings.redis_retry_max_seconds)
        while True:
            try:
                return await self.clock.now_ms()
            except StateUnavailable as exc:
                self._redis_down(str(exc))
            except StateError as exc:
                log.error("could not read Redis's time, retrying: %s", exc)  # noqa: TRY400 - expected: no traceback
            await backoff.wait()

    async def _store(self, events: list[Event], topic: str, progress: Sequence[tuple[str, int, int]],
                     capped: Callable[[list[Event]], Awaitable[None]]) -> tuple[dict[str, int], dict[str, int | None]]:
        backoff = Backoff(0.05, self.settings.redis_retry_max_seconds)
        while True:
            try:
                outcomes = await self.store.commit(events, await self.clock.now_ms(), topic, progress, capped)
            except StateUnavailable as exc:
                self._redis_down(str(exc))
            except StateError as exc:
                log.error("state update failed, retrying: %s", exc)  # noqa: TRY400 - expected: no traceback
                self.health.redis(ok=False, error=str(exc), unavailable=False)
            except Exception as exc:  # a bug: keep the batch unacked, retry, and let /health say so
                log.exception("state update of %s events failed, retrying", len(events))
                self.health.redis(ok=False, error=type(exc).__name__, unavailable=False)
            else:
                self.health.redis(ok=True)
                return outcomes
            await backoff.wait()

    def _redis_down(self, error: str) -> None:
        self.clock.invalidate()  # Redis may come back on another host, with another clock
        if self.health.redis_ok or not self.health.redis_error:
            log.error("%s; holding commits and retrying with backoff", error)
        self.health.redis(ok=False, error=error)

    def _measure(self, messages: list[Record], outcomes: dict[str, int], now_ms: int) -> None:
        topic = messages[0].topic
        for outcome in ("applied", "duplicate", "ignored"):
            if outcomes[outcome]:
                self.metrics.events.labels(topic, outcome).inc(outcomes[outcome])
        if outcomes.get("evicted"):
            self.metrics.evicted.inc(outcomes["evicted"])
        self.metrics.record_size(outcomes.get("largest", 0), time.monotonic())
        if outcomes["conflicts"]:
            self.metrics.conflicts.inc(outcomes["conflicts"])
        if outcomes["folded"]:
            self.metrics.folded.labels(topic).inc(outcomes["folded"])
            now = time.monotonic()
            if now - self._folded_logged > FOLDED_LOG_SECONDS:
                self._folded_logged = now
                log.warning("%d events of %s had a segment or team over the cap (ADVOCACY_MAX_SEGMENTS/"
                            "ADVOCACY_MAX_TEAMS) and count under '_other'", outcomes["folded"], where(messages[0]))
        observe_many(self.metrics.latency.labels(topic),
                     [max(0.0, now_ms - m.timestamp) / 1000 for m in messages if m.timestamp])
