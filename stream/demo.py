"""Demo producer: a customer base, weeks of history, then a continuous, realistic flow.

Per segment, advocacy actions arrive at ``target x customers`` per hour, so the 1h
Advocacy Actions rate settles near the target. Before going live the demo backfills
``--history-days`` of events (two weeks by default), hour by hour, so that every window
has its own numbers: the longer windows hold more actions per customer, and a dip in
the past (``DIP``: one segment's advocacy fell to 30% for a day, five days ago, and one
team's for the same day) shows in the 7d and 30d rows.
``--collapse SEGMENT`` drops that segment to 20%, well under the 60% alert line, from an
hour before now on: the 1h rate is low at once, so the alert fires as soon as its `for:`
allows. The flow includes duplicates (re-sent event ids), unkeyed messages and a little
malformed input, as real producers do.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
import uuid
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.config import Settings
from stream.kafka import client_options
from stream.producer import rfc3339
from stream.topics import ensure_topics

__all__ = [
    "ADVOCATES",
    "BAD_PAYLOADS",
    "COLLAPSE_HOURS",
    "DIP",
    "FOLLOW_UP_HOURS",
    "SEGMENTS",
    "TEAMS",
    "TICKETS_PER_CUSTOMER_HOUR",
    "Demo",
    "run_demo",
]

log = logging.getLogger("stream.demo")

SEGMENTS = {"enterprise": 0.92, "mid_market": 0.74, "smb": 0.63, "startup": 0.45}
TEAMS = {"billing": 0.35, "onboarding": 0.85, "technical": 0.65, "success": 0.9}
# (segment, team, starts hours ago, lasts hours, advocacy target meanwhile)
DIP = ("mid_market", "onboarding", 5 * 24, 24, 0.3)
COLLAPSE_HOURS = 1  # a collapsed segment has been low this long when the demo goes live
ADVOCATES = 0.1  # share of each segment whose members take the everyday advocacy actions
TICKETS_PER_CUSTOMER_HOUR = 0.02  # support tickets of the other customers
FOLLOW_UP_HOURS = 48  # a helped customer who becomes an advocate acts within this long
BAD_PAYLOADS = [b"{not json", b"[]", b'{"event_id": 1}', b"\xff\xfe",
                b'{"event_id":"x","customer_id":"c","occurred_at":"yesterday","kind":"social"}']


class Demo:
    """Generates events; ``publish`` is injected so tests can collect them."""

    def __init__(self, settings: Settings, customers: int, collapse: str | None, seed: int) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.targets = dict(SEGMENTS)
        self.collapse = collapse
        if collapse:
            self.targets.setdefault(collapse, SEGMENTS.get(collapse, 0.7))
        segments = list(self.targets)
        self.customers = {f"cust-{i:06d}": segments[i % len(segments)] for i in range(customers)}
        self.by_segment: dict[str, list[str]] = {s: [] for s in segments}
        for cid, seg in self.customers.items():
            self.by_segment[seg].append(cid)
        # the everyday advocates of each segment, and the customers who open tickets
        self.advocates = {seg: ids[: max(1, int(len(ids) * ADVOCATES))] for seg, ids in self.by_segment.items()}
        pool = {cid for ids in self.advocates.values() for cid in ids}
        self.helped = [cid for cid in self.customers if cid not in pool] or list(self.customers)
        self.follow_ups: list[tuple[float, str]] = []  # (time, customer): actions after a ticket
        self.sent: deque[tuple[str, bytes | None, bytes]] = deque(maxlen=1000)
        self.now = time.time()  # "now" of the history: the dip and the collapse are placed from it

    def target(self, segment: str, at: float) -> float:
        """The segment's advocacy target at event time ``at``: its own, the past dip, or the collapse."""
        ago = (self.now - at) / 3600
        if segment == self.collapse and ago <= COLLAPSE_HOURS:
            return 0.2
        dip_segment, _, start, hours, low = DIP
        if segment == dip_segment and start - hours < ago <= start:
            return low
        return self.targets[segment]

    def team_rate(self, team: str, at: float) -> float:
        ago = (self.now - at) / 3600
        _, dip_team, start, hours, low = DIP
        if team == dip_team and start - hours < ago <= start:
            return low
        return TEAMS[team]

    def _event(self, cid: str, at: float, **fields: Any) -> dict[str, Any]:
        return {"event_id": str(uuid.UUID(int=self.rng.getrandbits(128))), "customer_id": cid,
                "occurred_at": rfc3339(at), **fields}

    def registrations(self, now: float, history_seconds: float = 0) -> list[tuple[str, dict[str, Any]]]:
        """Each customer's registration, older than the history (a few join during it)."""
        out = []
        for cid, seg in self.customers.items():
            status = "churned" if self.rng.random() < 0.04 else "active"
            if self.rng.random() < 0.05 and history_seconds > 3600:
                at = now - self.rng.uniform(3600, history_seconds)
            else:
                at = now - history_seconds - self.rng.uniform(3600, 30 * 86400)
            out.append((self.settings.customers_topic, self._event(cid, at, segment=seg, status=status)))
        return out

    def second(self, at: float) -> list[tuple[str, dict[str, Any]]]:
        """The events of one second of event time."""
        return self.span(at, 1.0)

    def span(self, start: float, seconds: float) -> list[tuple[str, dict[str, Any]]]:
        """The events of ``seconds`` of event time from ``start``, in time order.

        Everyday actions come from each segment's advocates, at the segment's target per
        member and hour; tickets come from the other customers, and a helped customer
        becomes an advocate (one action within FOLLOW_UP_HOURS) with the team's rate.
        """
        out: list[tuple[float, tuple[str, dict[str, Any]]]] = []
        s, rng, middle, end = self.settings, self.rng, start + seconds / 2, start + seconds

        def when() -> float:
            return start + rng.random() * seconds

        for _ in range(self._poisson(len(self.helped) * TICKETS_PER_CUSTOMER_HOUR * seconds / 3600)):
            cid, team, at = rng.choice(self.helped), rng.choice(list(TEAMS)), when()
            out.append((at, (s.tickets_topic, self._event(cid, at, ticket_id=f"T-{rng.getrandbits(32)}",
                                                           team=team, channel="email"))))
            if rng.random() < self.team_rate(team, at):
                heapq.heappush(self.follow_ups, (at + rng.uniform(60, FOLLOW_UP_HOURS * 3600), cid))
        while self.follow_ups and self.follow_ups[0][0] < end:
            at, cid = heapq.heappop(self.follow_ups)
            at = max(at, start)
            out.append((at, self._action(cid, at)))
        for seg in self.targets:
            members, advocates = self.by_segment[seg], self.advocates[seg]
            expected = self.target(seg, middle) * len(members) * seconds / 3600
            for _ in range(self._poisson(expected)):
                at = when()
                out.append((at, self._action(rng.choice(advocates), at)))
            for _ in range(self._poisson(self.targets[seg] * len(members) * seconds / 3600 * 0.4)):
                at = when()  # reviews that are not advocacy
                out.append((at, (s.reviews_topic, self._event(rng.choice(members), at, kind="review",
                                                             rating=rng.randint(1, 3)))))
        out.sort(key=lambda item: item[0])
        return [event for _, event in out]

    def _action(self, cid: str, at: float) -> tuple[str, dict[str, Any]]:
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
        if mean > 30:  # a normal approximation: exp(-mean) underflows for an hour of events
            return max(0, round(self.rng.gauss(mean, mean ** 0.5)))
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
                   seconds: float | None, seed: int, history_days: float = 14.0) -> None:
    """Publish the customer base, backfill the history hour by hour, then run live until stopped."""
    await ensure_topics(settings)
    demo = Demo(settings, customers, collapse, seed)
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=20)
    await producer.start()
    try:
        now, history = demo.now, history_days * 86400
        for topic, event in demo.registrations(now, history):
            await producer.send(topic, orjson.dumps(event), key=event["customer_id"].encode())
        sent, start, step = 0, now - history, 3600.0
        while start < now:
            for topic, event in demo.span(start, min(step, now - start)):
                for t, k, v in demo.wire(topic, event):
                    await producer.send(t, v, key=k)
                    sent += 1
            start += step
        await producer.flush()
        log.info("demo: %d customers registered, %g days of history backfilled (%d messages); now live",
                 customers, history_days, sent)
        started = time.monotonic()
        while seconds is None or time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            for topic, event in demo.second(time.time()):
                for t, k, v in demo.wire(topic, event):
                    await producer.send(t, v, key=k)
    finally:
        await producer.stop()
