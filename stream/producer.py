"""A small typed helper for Python producers: validated, keyed events on the configured topics.

    async with Producer("kafka:9092") as producer:
        await producer.publish_customer("c-1", "enterprise", "active")
        await producer.publish_review("c-1", "review", rating=5)

Every event is checked with ``stream.events.parse`` (the worker's own validation) before
it is sent, so a bad event raises ``InvalidEvent`` here instead of landing in the
dead-letter topic. Messages are keyed by ``customer_id``; ``event_id`` is a new uuid4 and
``occurred_at`` now, unless given (pass the same ``event_id`` again when retrying).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream.config import SOURCES, Settings, load_settings
from stream.errors import BrokerUnavailable, InvalidEvent
from stream.event import Event
from stream.events import parse
from stream.kafka import client_options
from stream.schemas import TOPIC_KINDS

__all__ = ["Producer", "Receipt", "ReviewKind", "Status", "Timestamp", "rfc3339", "topic_name", "validate"]

ReviewKind = Literal["review", "testimonial", "case_study", "survey", "social"]
Status = Literal["active", "churned"]
Timestamp = datetime | str | None
_TOPIC = {t.default: t for t in SOURCES}


def rfc3339(value: datetime | float) -> str:
    """An aware datetime, or epoch seconds -> RFC 3339 in UTC with microseconds (all a datetime holds,
    and the precision the service compares at), e.g. 2026-11-23T14:03:00.000250Z."""
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent("invalid_timestamp", "occurred_at datetime has no timezone")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def topic_name(settings: Settings, topic: str) -> str:
    """Logical topic (reviews, referrals, tickets-closed, customers) -> configured topic name."""
    if topic not in TOPIC_KINDS:
        raise ValueError(f"unknown topic {topic!r}; one of {', '.join(TOPIC_KINDS)}")
    return settings.topic_name(_TOPIC[topic])


def validate(settings: Settings, topic: str, value: bytes, now: float | None = None) -> Event:
    """Check one encoded message value of a logical topic exactly as a worker would."""
    if topic not in TOPIC_KINDS:
        raise ValueError(f"unknown topic {topic!r}; one of {', '.join(TOPIC_KINDS)}")
    now_ms = int((time.time() if now is None else now) * 1000)
    return parse(TOPIC_KINDS[topic], value, now_ms,
                 longest_window_ms=settings.longest_window_seconds * 1000,
                 attribution_ms=settings.attribution_window * 1000,
                 future_tolerance_ms=settings.future_tolerance_seconds * 1000,
                 max_bytes=settings.max_message_bytes)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where one published event was stored."""

    event_id: str
    topic: str
    partition: int
    offset: int


class Producer:
    """Async context manager around an aiokafka producer that only sends valid events."""

    def __init__(self, bootstrap_servers: str | None = None, *, settings: Settings | None = None,
                 clock: Callable[[], float] = time.time, linger_ms: int = 10) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.bootstrap_servers = bootstrap_servers or self.settings.kafka_bootstrap_servers
        self.clock = clock
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None

    @property
    def _kafka(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("use the Producer as `async with Producer(...) as producer:`")
        return self._producer

    async def __aenter__(self) -> Self:
        options = dict(client_options(self.settings), bootstrap_servers=self.bootstrap_servers)  # TLS, SASL
        self._producer = AIOKafkaProducer(**options, acks="all", linger_ms=self.linger_ms,
                                          request_timeout_ms=15_000)
        try:
            await self._kafka.start()
        except (KafkaError, OSError) as exc:
            await self._kafka.stop()
            raise BrokerUnavailable(f"kafka at {self.bootstrap_servers} did not answer ({type(exc).__name__}); "
                                    "check ADVOCACY_KAFKA_BOOTSTRAP_SERVERS") from None
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._kafka.stop()  # flushes what is still queued

    # --- low level: encoded values ----------------------------------------------------------

    def validate(self, topic: str, value: bytes) -> Event:
        """``validate`` with this producer's settings and clock."""
        return validate(self.settings, topic, value, self.clock())

    async def send(self, topic: str, value: bytes) -> asyncio.Future[Any]:
        """Validate one encoded value and queue it, keyed by its customer_id.

        Returns the delivery future (it resolves to aiokafka's RecordMetadata); raises
        InvalidEvent, and sends nothing, when the value breaks the contract, and
        BrokerUnavailable when the broker cannot take it.
        """
        event = self.validate(topic, value)
        name = topic_name(self.settings, topic)
        try:
            future: asyncio.Future[Any] = await self._kafka.send(name, value, key=event.customer_id.encode())
        except KafkaError as exc:  # e.g. the topic does not exist and the broker does not create it
            raise BrokerUnavailable(f"cannot send to topic {name} at {self.bootstrap_servers}: "
                                    f"{type(exc).__name__}; workers create their topics at start-up") from exc
        return future

    async def flush(self) -> None:
        await self._kafka.flush()

    # --- high level: one event, delivered -----------------------------------------------------

    async def publish(self, topic: str, fields: Mapping[str, Any]) -> Receipt:
        """Fill in event_id and occurred_at when absent, validate, send, wait for the broker."""
        event = {k: v for k, v in fields.items() if v is not None}
        event.setdefault("event_id", str(uuid.uuid4()))
        when = event.get("occurred_at")
        if when is None:
            event["occurred_at"] = rfc3339(datetime.fromtimestamp(self.clock(), UTC))
        elif isinstance(when, datetime):
            event["occurred_at"] = rfc3339(when)
        future = await self.send(topic, orjson.dumps(event))
        meta = await future
        return Receipt(str(event["event_id"]), meta.topic, meta.partition, meta.offset)

    async def publish_review(self, customer_id: str, kind: ReviewKind, *, occurred_at: Timestamp = None,
                             rating: int | None = None, nps: int | None = None, segment: str | None = None,
                             source: str | None = None, event_id: str | None = None) -> Receipt:
        """A review, testimonial, case study, survey answer or social endorsement."""
        return await self.publish("reviews", {
            "event_id": event_id, "customer_id": customer_id, "occurred_at": occurred_at,
            "segment": segment, "kind": kind, "rating": rating, "nps": nps, "source": source})

    async def publish_referral(self, customer_id: str, *, occurred_at: Timestamp = None,
                               referee_id: str | None = None, channel: str | None = None,
                               segment: str | None = None, event_id: str | None = None) -> Receipt:
        """A referral: always an advocacy action."""
        return await self.publish("referrals", {
            "event_id": event_id, "customer_id": customer_id, "occurred_at": occurred_at,
            "segment": segment, "referee_id": referee_id, "channel": channel})

    async def publish_ticket_closed(self, customer_id: str, ticket_id: str, team: str, *,
                                    occurred_at: Timestamp = None, agent_id: str | None = None,
                                    channel: str | None = None, segment: str | None = None,
                                    event_id: str | None = None) -> Receipt:
        """A closed support ticket: one support interaction of ``team``."""
        return await self.publish("tickets-closed", {
            "event_id": event_id, "customer_id": customer_id, "occurred_at": occurred_at,
            "segment": segment, "ticket_id": ticket_id, "team": team, "agent_id": agent_id,
            "channel": channel})

    async def publish_customer(self, customer_id: str, segment: str, status: Status, *,
                               occurred_at: Timestamp = None, event_id: str | None = None) -> Receipt:
        """A customer's registration; the record with the latest occurred_at wins."""
        return await self.publish("customers", {
            "event_id": event_id, "customer_id": customer_id, "occurred_at": occurred_at,
            "segment": segment, "status": status})
