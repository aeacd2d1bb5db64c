"""Seeded event scenarios for the end-to-end tests: what a messy real producer sends."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tests.support import iso

SEGMENTS = ["enterprise", "smb", "startup"]
TEAMS = ["billing", "onboarding", "technical"]
# event ages (seconds) kept well away from every window edge and bucket
AGE_RANGES = [(60, 45 * 60), (2 * 3600, 20 * 3600), (2 * 86400, 6 * 86400), (8 * 86400, 27 * 86400),
              (32 * 86400, 80 * 86400)]
WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "90d": 90 * 86400}
ATTRIBUTION = 7 * 86400


def stamp(at_us: int, offset_minutes: int = 0, extra_digits: str = "") -> str:
    """Epoch microseconds as RFC 3339 with all six fractional digits (and ``extra_digits``), in an offset."""
    zone = timezone(timedelta(minutes=offset_minutes))
    local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at_us)).astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond:06d}{extra_digits}"
    if not offset_minutes:
        return text + "Z"
    sign, minutes = ("+" if offset_minutes > 0 else "-"), abs(offset_minutes)
    return text + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass
class Scenario:
    """Valid events (with duplicates) and the wire messages that carry them, plus bad input."""

    now: float
    topics: dict[str, str]
    rng: random.Random
    valid: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    late: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # published last
    bad: list[tuple[str, bytes, str]] = field(default_factory=list)  # kind, raw, reason
    _n: int = 0

    def eid(self) -> str:
        self._n += 1
        return f"e{self._n:06d}-{self.rng.getrandbits(24):06x}"

    def at(self) -> str:
        return iso(self.at_seconds())

    def at_seconds(self) -> float:
        low, high = self.rng.choice(AGE_RANGES)
        return self.now - self.rng.uniform(low, high)

    def safe(self, t: float) -> bool:
        return any(low <= self.now - t <= high for low, high in AGE_RANGES)

    def add(self, topic: str, customer: str, when: str, **fields: Any) -> dict[str, Any]:
        event = {"event_id": self.eid(), "customer_id": customer, "occurred_at": when, **fields}
        self.valid.append((topic, event))
        return event

    def messages(self) -> list[tuple[str, bytes | None, bytes | None]]:
        """Every message, shuffled, duplicates re-sent, some unkeyed or mis-keyed, late ones last."""
        wire: list[tuple[str, bytes | None, bytes | None]] = []
        for kind, event in self.valid:
            wire.append((self.topics[kind], self._key(event, kind), json.dumps(event).encode()))
        for kind, raw, _ in self.bad:
            wire.append((self.topics[kind], b"bad" if kind == "customer" else None, raw))
        self.rng.shuffle(wire)
        late = [(self.topics[k], self._key(e, k), json.dumps(e).encode()) for k, e in self.late]
        return wire + late

    def _key(self, event: dict[str, Any], kind: str) -> bytes | None:
        roll = self.rng.random()
        if roll < 0.15 and kind != "customer":  # Apache Kafka refuses unkeyed messages on a compacted topic
            return None  # a producer that forgot the key
        if roll < 0.25:
            return f"other-{self.rng.randint(0, 99)}".encode()  # keyed by something else
        return str(event["customer_id"]).encode()

    def all_valid(self) -> list[tuple[str, dict[str, Any]]]:
        return self.valid + self.late


def build(now: float, topics: dict[str, str], seed: int, customers: int = 40, prefix: str = "c") -> Scenario:
    """A few hundred events covering the contract's cases."""
    sc = Scenario(now, topics, random.Random(seed))
    rng = sc.rng
    ids = [f"{prefix}{i:03d}" for i in range(customers)]
    for i, cid in enumerate(ids):
        if i % 10 == 9:
            continue  # never registered: their unsegmented actions stay "unknown"
        status = "churned" if i % 7 == 0 else "active"
        sc.add("customer", cid, iso(now - 40 * 86400 - i), segment=SEGMENTS[i % 3], status=status)
        if i % 5 == 0:  # a newer record moves the customer to another segment
            sc.add("customer", cid, iso(now - 20 * 86400), segment=SEGMENTS[(i + 1) % 3], status="active")
    # a registration that arrives after the customer's actions
    late_cid = ids[9]
    sc.late.append(("customer", {"event_id": sc.eid(), "customer_id": late_cid,
                                 "occurred_at": iso(now - 10 * 86400), "segment": "enterprise",
                                 "status": "active"}))
    for cid in ids:
        for _ in range(rng.randint(0, 3)):
            t0 = sc.at_seconds()
            sc.add("ticket", cid, iso(t0), ticket_id=f"T{rng.getrandbits(20)}", team=rng.choice(TEAMS))
            if rng.random() < 0.6:  # a follow-up action inside (or outside) the attribution window
                gaps = [600.0, 3 * 3600.0, 2 * 86400.0, 6 * 86400.0, 9 * 86400.0]
                rng.shuffle(gaps)
                for gap in gaps:
                    if sc.safe(t0 + gap):
                        sc.add("review", cid, iso(t0 + gap), kind="testimonial")
                        break
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice(["review", "review", "testimonial", "case_study", "survey", "social", "referral"])
            own = {"segment": rng.choice(SEGMENTS)} if rng.random() < 0.15 else {}
            if kind == "referral":
                sc.add("referral", cid, sc.at(), channel="email", **own)
            elif kind == "review":
                sc.add("review", cid, sc.at(), kind="review", rating=rng.randint(1, 5), **own)
            elif kind == "survey":
                sc.add("review", cid, sc.at(), kind="survey", nps=rng.randint(0, 10), **own)
            else:
                sc.add("review", cid, sc.at(), kind=kind, source="g2", **own)
    edges(sc, prefix)
    # duplicates: the same event re-sent, once or twice
    for kind, event in rng.sample(sc.valid, k=len(sc.valid) // 10):
        sc.valid.append((kind, dict(event)))
    fresh = iso(now - 600)
    future = iso(now + 3600)
    ancient = iso(now - 200 * 86400)
    sc.bad = [
        ("review", b"{not json", "invalid_json"),
        ("review", b"\xff\xfe\x00garbage", "invalid_encoding"),
        ("referral", b"[1, 2, 3]", "not_an_object"),
        ("ticket", json.dumps({"event_id": "b1", "customer_id": "c1", "occurred_at": fresh,
                               "ticket_id": "T1"}).encode(), "missing_field"),
        ("review", json.dumps({"event_id": "b2", "customer_id": "c1", "occurred_at": fresh,
                               "kind": "review", "rating": "5"}).encode(), "wrong_type"),
        ("review", json.dumps({"event_id": "b3", "customer_id": "c1", "occurred_at": fresh,
                               "kind": "review", "rating": 9}).encode(), "out_of_range"),
        ("customer", json.dumps({"event_id": "b4", "customer_id": "c1", "occurred_at": "last tuesday",
                                 "segment": "smb", "status": "active"}).encode(), "invalid_timestamp"),
        ("referral", json.dumps({"event_id": "b5", "customer_id": "c1", "occurred_at": future}).encode(),
         "future_timestamp"),
        ("ticket", json.dumps({"event_id": "b6", "customer_id": "c1", "occurred_at": ancient,
                               "ticket_id": "T9", "team": "billing"}).encode(), "too_old"),
        # a ticket an hour past the longest window plus the attribution window (97 d)
        ("ticket", json.dumps({"event_id": "b7", "customer_id": "c1", "occurred_at": iso(now - 97 * 86400 - 3600),
                               "ticket_id": "T9", "team": "billing"}).encode(), "too_old"),
        ("referral", json.dumps({"event_id": "b8", "customer_id": "c1", "occurred_at": fresh,
                                 "segment": "smb\n"}).encode(), "out_of_range"),  # a control character
        ("review", json.dumps({"event_id": "b9", "customer_id": "c1", "occurred_at": fresh, "kind": "social",
                               "source": "s" * 2049}).encode(), "out_of_range"),
    ]
    return sc


EDGE_TEAMS = ["t" * 128, "tech-\U0010ffff", "ops 🛠"]  # names of 128 characters and odd but legal ones
EDGE_SEGMENT = "Großkunden-" + "s" * 117  # 128 characters


def edges(sc: Scenario, prefix: str) -> None:
    """Issue 11's edge cases, valid and published with the rest (ages well inside or outside each window)."""
    now_us = int(sc.now * 1_000_000)
    day, hour = 86_400_000_000, 3_600_000_000

    def add(topic: str, customer: str, at_us: int, /, event_id: str | None = None, **fields: Any) -> None:
        event = {"event_id": event_id or sc.eid(), "customer_id": customer, "occurred_at": stamp(at_us), **fields}
        sc.valid.append((topic, event))

    # tickets older than the longest window still credit actions inside it (case 3); one near the 97 d limit
    add("ticket", f"{prefix}edge-1", now_us - 95 * day, ticket_id="T-95", team="billing")
    add("referral", f"{prefix}edge-1", now_us - 88 * day, channel="email")
    add("ticket", f"{prefix}edge-1", now_us - 97 * day + hour, ticket_id="T-97", team="onboarding")
    # two registrations 0.1 ms apart, the later with the smaller event id; a review then follows (case 5)
    t0 = now_us - 30 * 60_000_000
    later, earlier = sc.eid(), sc.eid()
    sc.valid.append(("customer", {"event_id": later, "customer_id": f"{prefix}edge-2",
                                  "occurred_at": stamp(t0 - day + 200, 330, "999"), "segment": "startup",
                                  "status": "active"}))
    sc.valid.append(("customer", {"event_id": earlier, "customer_id": f"{prefix}edge-2",
                                  "occurred_at": stamp(t0 - day + 100, -480), "segment": "enterprise",
                                  "status": "active"}))
    add("review", f"{prefix}edge-2", t0, kind="testimonial")
    # an action 0.8 ms before a ticket is not credited to it; one two hours later is (case 5)
    add("referral", f"{prefix}edge-3", t0 - 2 * hour + 100)
    add("ticket", f"{prefix}edge-3", t0 - 2 * hour + 900, ticket_id="T-sub-ms", team="technical")
    add("review", f"{prefix}edge-3", t0, kind="social")
    # a ticket id sorting after every character, at the very microsecond of the action (case 6)
    add("ticket", f"{prefix}edge-4", t0 - 3 * hour, event_id="\U0010ffff\U0010ffff" + sc.eid(), ticket_id="\U0010ffff",
        team="onboarding")
    add("review", f"{prefix}edge-4", t0 - 3 * hour, kind="case_study")
    # long free text and names (case 2)
    add("review", f"{prefix}edge-5", t0 - 4 * hour, kind="testimonial",
        source="https://reviews.example.com/" + "p" * 260, segment=EDGE_SEGMENT)
    add("ticket", f"{prefix}edge-5", t0 - 5 * hour, ticket_id="T" * 2048, channel="c" * 2048, agent_id="a" * 300,
        team=EDGE_TEAMS[0])
    # a customer credited to two teams in turn (case 1), both new names: folded under a cap
    add("ticket", f"{prefix}edge-6", now_us - 5 * day, ticket_id="T-a", team=EDGE_TEAMS[1])
    add("referral", f"{prefix}edge-6", now_us - 4 * day)
    add("ticket", f"{prefix}edge-6", now_us - 3 * day, ticket_id="T-b", team=EDGE_TEAMS[2])
    add("referral", f"{prefix}edge-6", now_us - 2 * day)
    # a ticket re-sent with another team (a producer bug): the greater (time, team) copy counts
    copy = {"event_id": sc.eid(), "customer_id": f"{prefix}edge-7", "occurred_at": stamp(now_us - 3 * hour),
            "ticket_id": "T-copy", "team": "billing"}
    sc.valid += [("ticket", copy), ("ticket", {**copy, "team": "technical"})]
    add("review", f"{prefix}edge-7", now_us - 2 * hour, kind="testimonial")
