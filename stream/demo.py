"""Demo producer: a customer base, then a continuous, realistic flow of events.

Per segment, advocacy actions arrive at ``target x customers`` per hour, so the 1h
Advocacy Actions rate settles near the target (the last hour is backfilled at start).
``--collapse SEGMENT`` drops that segment to 20%, well under the 60% alert line.
The flow includes duplicates (re-sent event ids), unkeyed messages and a little
malformed input, as real producers do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.config import Settings
from stream.kafka import client_options
from stream.topics import ensure_topics

log = logging.getLogger("stream.demo")

SEGMENTS = {"enterprise": 0.92, "mid_market": 0.74, "smb": 0.63, "startup": 0.45}
TEAMS = {"billing": 0.35, "onboarding": 0.85, "technical": 0.65, "success": 0.9}
BAD_PAYLOADS = [b"{not json", b"[]", b'{"event_id": 1}', b"\xff\xfe",
                b'{"event_id":"x","customer_id":"c","occurred_at":"yesterday","kind":"social"}']


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Demo:
    """Generates events; ``publish`` is injected so tests can collect them."""

    def __init__(self, settings: Settings, customers: int, collapse: str | None, seed: int) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.targets = dict(SEGMENTS)
        if collapse:
            self.targets[collapse] = 0.2
        segments = list(self.targets)
        self.customers = {f"cust-{i:06d}": segments[i % len(segments)] for i in range(customers)}
        self.by_segment: dict[str, list[str]] = {s: [] for s in segments}
        for cid, seg in self.customers.items():
            self.by_segment[seg].append(cid)
        self.recent_tickets: deque[tuple[str, str, float]] = deque(maxlen=5000)
        self.sent: deque[tuple[str, bytes | None, bytes]] = deque(maxlen=1000)

    def _event(self, cid: str, at: float, **fields: Any) -> dict[str, Any]:
        return {"event_id": str(uuid.UUID(int=self.rng.getrandbits(128))), "customer_id": cid,
                "occurred_at": iso(at), **fields}

    def registrations(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for cid, seg in self.customers.items():
            status = "churned" if self.rng.random() < 0.04 else "active"
            at = now - self.rng.uniform(3600, 30 * 86400)
            out.append((self.settings.customers_topic, self._event(cid, at, segment=seg, status=status)))
        return out

    def second(self, at: float) -> list[tuple[str, dict[str, Any]]]:
        """The events of one second of event time."""
        out: list[tuple[str, dict[str, Any]]] = []
        s = self.settings
        for seg, target in self.targets.items():
            members = self.by_segment[seg]
            expected = target * len(members) / 3600
            for _ in range(self._poisson(expected)):
                out.append(self._action(self.rng.choice(members), at))
            for _ in range(self._poisson(expected * 0.4)):  # reviews that are not advocacy
                out.append((s.reviews_topic, self._event(self.rng.choice(members), at, kind="review",
                                                        rating=self.rng.randint(1, 3))))
        for _ in range(self._poisson(len(self.customers) * 0.15 / 3600)):
            cid = self.rng.choice(list(self.customers))
            team = self.rng.choice(list(TEAMS))
            out.append((s.tickets_topic, self._event(cid, at, ticket_id=f"T-{self.rng.getrandbits(32)}",
                                                     team=team, channel="email")))
            self.recent_tickets.append((cid, team, at))
        return out

    def _action(self, cid: str, at: float) -> tuple[str, dict[str, Any]]:
        if self.recent_tickets and self.rng.random() < 0.3:
            tcid, team, _ = self.rng.choice(self.recent_tickets)
            if self.rng.random() < TEAMS[team]:
                cid = tcid
        if self.rng.random() < 0.25:
            return self.settings.referrals_topic, self._event(cid, at, channel="link")
        kind = self.rng.choice(["review", "testimonial", "case_study", "survey", "social"])
        extra: dict[str, Any] = {"kind": kind}
        if kind == "review":
            extra["rating"] = self.rng.randint(4, 5)
        if kind == "survey":
            extra["nps"] = self.rng.randint(9, 10)
        return self.settings.reviews_topic, self._event(cid, at, **extra)

    def _poisson(self, mean: float) -> int:
        n, limit, p = 0, 2.718281828 ** -mean, self.rng.random()
        while p > limit:
            n += 1
            p *= self.rng.random()
        return n

    def wire(self, topic: str, event: dict[str, Any]) -> list[tuple[str, bytes | None, bytes]]:
        """Messages for one event: keyed (mostly), sometimes duplicated, sometimes broken."""
        key = None if self.rng.random() < 0.1 else event["customer_id"].encode()
        value = orjson.dumps(event)
        out = [(topic, key, value)]
        if self.sent and self.rng.random() < 0.03:
            out.append(self.rng.choice(self.sent))
        if self.rng.random() < 0.005:
            out.append((topic, None, self.rng.choice(BAD_PAYLOADS)))
        self.sent.append((topic, key, value))
        return out


async def run_demo(settings: Settings, *, customers: int, collapse: str | None,
                   seconds: float | None, seed: int) -> None:
    """Publish the customer base, backfill the last hour, then run live until stopped."""
    await ensure_topics(settings)
    demo = Demo(settings, customers, collapse, seed)
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=20)
    await producer.start()
    try:
        now = time.time()
        for topic, event in demo.registrations(now):
            await producer.send(topic, orjson.dumps(event), key=event["customer_id"].encode())
        for tick in range(3600, 0, -1):
            for topic, event in demo.second(now - tick):
                for t, k, v in demo.wire(topic, event):
                    await producer.send(t, v, key=k)
        await producer.flush()
        log.info("demo: %d customers registered, last hour backfilled; now live", customers)
        started = time.monotonic()
        while seconds is None or time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            for topic, event in demo.second(time.time()):
                for t, k, v in demo.wire(topic, event):
                    await producer.send(t, v, key=k)
    finally:
        await producer.stop()
