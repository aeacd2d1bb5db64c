"""Seeded bulk event streams (tens of thousands of events) for the reliability scenarios.

Modelled on ``tests/scenario.py`` but built for volume: every event is valid, event ages
stay well away from every window edge (and from the extra bucket a window may count),
about 10% of the events are re-sent unchanged (same ``event_id``, same payload) much
later in delivery order, and the delivery order mixes topics, keys and partitions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from tests.support import iso

SEGMENTS = ["enterprise", "smb", "startup", "public", "nonprofit"]
TEAMS = ["billing", "onboarding", "technical", "success"]
WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "90d": 90 * 86400}
ATTRIBUTION = 7 * 86400
HOUR, DAY = 3600, 86400
# Event ages (seconds). A window W is counted in 24 buckets, so an event older than W by
# less than W/24 may legitimately be counted; these ranges avoid [W - 10 min, W + W/24 + 1 d]
# for every window, and stay under the 90 d "too old" limit. The 10-minute margin under
# 1 h leaves room for the test's own duration.
SAFE_AGES = [(60, 50 * 60), (2 * HOUR, 20 * HOUR), (2 * DAY, 6 * DAY), (8 * DAY, 27 * DAY),
             (33 * DAY, 80 * DAY)]
FOLLOW_UP_GAPS = [600.0, 3 * HOUR, 2 * DAY, 6 * DAY, 9 * DAY]  # ticket -> action, vs 7 d attribution
REVIEW_KINDS = ["review", "review", "testimonial", "case_study", "survey", "social"]


def safe_age(age: float) -> bool:
    return any(low <= age <= high for low, high in SAFE_AGES)


Wire = tuple[str, bytes | None, bytes | None]  # topic, key, value


@dataclass
class Bulk:
    """Unique valid events, the re-sent copies, and their delivery order."""

    now: float
    topics: dict[str, str]
    rng: random.Random
    prefix: str
    unique: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    copies: list[int] = field(default_factory=list)  # indexes into ``unique``, re-sent later
    _n: int = 0

    def eid(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n:07d}"

    def age(self) -> float:
        low, high = self.rng.choice(SAFE_AGES)
        return self.rng.uniform(low, high)

    def add(self, topic_kind: str, customer: str, at: float, /, **fields: Any) -> None:
        self.unique.append((topic_kind, {"event_id": self.eid(), "customer_id": customer, "occurred_at": iso(at),
                                   **fields}))

    def valid(self) -> list[tuple[str, dict[str, Any]]]:
        """Every valid event as delivered, duplicates included (the oracle's input)."""
        return self.unique + [self.unique[i] for i in self.copies]

    def counts(self) -> dict[str, int]:
        per_kind: dict[str, int] = {}
        for kind, _ in self.unique:
            per_kind[kind] = per_kind.get(kind, 0) + 1
        return {"unique": len(self.unique), "duplicates": len(self.copies),
                "messages": len(self.unique) + len(self.copies), **per_kind}

    def key(self, event: dict[str, Any], kind: str = "") -> bytes | None:
        roll = self.rng.random()
        if roll < 0.20 and kind != "customer":  # Apache Kafka refuses unkeyed messages on a compacted topic
            return None  # a producer that forgot the key
        if roll < 0.35:
            return f"other-{self.rng.randint(0, 99)}".encode()  # keyed by something else
        return str(event["customer_id"]).encode()

    def wire(self, by_topic: bool = False) -> list[Wire]:
        """The delivery order.

        Interleaved (default): all topics shuffled together. ``by_topic``: the topics one
        after another in a seeded random order, each shuffled inside. Either way the two
        deliveries of a re-sent event are at least a quarter of the stream apart ("hours
        later" for a live producer): the second comes later if the first is in the first
        half of the stream, earlier otherwise.
        """
        order = list(self.topics_in_use())
        self.rng.shuffle(order)
        rank = {kind: i for i, kind in enumerate(order)}
        keys = [rank[kind] + self.rng.random() if by_topic else self.rng.random() for kind, _ in self.unique]
        originals = sorted(range(len(self.unique)), key=keys.__getitem__)
        position = {i: p for p, i in enumerate(originals)}
        size = len(originals)
        slots: list[tuple[float, int]] = [(float(p), i) for p, i in enumerate(originals)]
        for i in self.copies:
            p = position[i]
            target = self.rng.uniform(p + size / 4, size) if p < size / 2 else self.rng.uniform(0, p - size / 4)
            slots.append((target, i))
        slots.sort()
        out: list[Wire] = []
        for _, i in slots:
            kind, event = self.unique[i]
            out.append((self.topics[kind], self.key(event, kind), json.dumps(event).encode()))
        return out

    def topics_in_use(self) -> list[str]:
        return sorted({kind for kind, _ in self.unique})


def generate(now: float, topics: dict[str, str], seed: int, events: int = 50_000,
             duplicate_ratio: float = 0.10, prefix: str = "") -> Bulk:
    """About ``events`` messages: valid events plus ``duplicate_ratio`` of them re-sent."""
    bulk = Bulk(now, topics, random.Random(seed), prefix or f"s{seed}-")
    rng = bulk.rng
    target = max(20, round(events / (1 + duplicate_ratio)))
    n_customers = max(10, target // 12)
    ids = [f"cust-{i:06d}" for i in range(n_customers)]
    for cid in ids:
        roll = rng.random()
        if roll < 0.10:
            continue  # never registered: their unsegmented actions stay "unknown"
        at = now - rng.uniform(40 * DAY, 400 * DAY)  # registrations are never too old
        status = "churned" if rng.random() < 0.15 else "active"
        bulk.add("customer", cid, at, segment=rng.choice(SEGMENTS), status=status)
        if roll < 0.25:  # a second record, newer or older: the latest occurred_at wins
            other = now - rng.uniform(1 * DAY, 400 * DAY)
            bulk.add("customer", cid, other, segment=rng.choice(SEGMENTS),
                     status=rng.choice(["active", "active", "churned"]))
        elif roll < 0.27:  # same occurred_at: the greater event_id wins
            bulk.add("customer", cid, at, segment=rng.choice(SEGMENTS), status="active")
    while len(bulk.unique) < target:
        cid = rng.choice(ids)
        roll = rng.random()
        own = {"segment": rng.choice(SEGMENTS)} if rng.random() < 0.10 else {}
        if roll < 0.25:
            age0 = bulk.age()
            t0 = now - age0
            bulk.add("ticket", cid, t0, ticket_id=f"T{rng.getrandbits(32):08x}", team=rng.choice(TEAMS),
                     channel=rng.choice(["email", "chat", "phone"]))
            if rng.random() < 0.5:  # a follow-up action inside (or outside) the attribution window
                gaps = list(FOLLOW_UP_GAPS)
                rng.shuffle(gaps)
                for gap in gaps:
                    if safe_age(age0 - gap):
                        bulk.add("review", cid, t0 + gap, kind=rng.choice(["testimonial", "social"]), **own)
                        break
        elif roll < 0.40:
            bulk.add("referral", cid, now - bulk.age(), channel="email", referee_id=f"r{rng.getrandbits(16)}",
                     **own)
        else:
            kind = rng.choice(REVIEW_KINDS)
            if kind == "review":
                bulk.add("review", cid, now - bulk.age(), kind="review", rating=rng.randint(1, 5), **own)
            elif kind == "survey":
                bulk.add("review", cid, now - bulk.age(), kind="survey", nps=rng.randint(0, 10), **own)
            else:
                bulk.add("review", cid, now - bulk.age(), kind=kind, source="g2", **own)
    bulk.copies = rng.sample(range(len(bulk.unique)), k=round(len(bulk.unique) * duplicate_ratio))
    return bulk
