"""The reliability scenarios' own tools: the fast oracle equals the reference one, the streams are what they claim."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter

import pytest

from tests.oracle import expected_kpis
from tests.reliability.bulk import ATTRIBUTION, SAFE_AGES, WINDOWS, generate, iso
from tests.reliability.fast_oracle import expected
from tests.scenario import build

TOPICS = {"review": "r", "referral": "f", "ticket": "t", "customer": "c"}


@pytest.mark.parametrize("seed", range(4))
def test_fast_oracle_equals_the_reference_oracle_on_small_scenarios(seed: int) -> None:
    """On the e2e scenarios and on small bulk streams, fast_oracle.expected == tests/oracle.expected_kpis."""
    now = time.time()
    scenario = build(now, TOPICS, seed=seed, customers=60)
    assert expected(scenario.all_valid(), now, WINDOWS, ATTRIBUTION) == \
        expected_kpis(scenario.all_valid(), now, WINDOWS, ATTRIBUTION)
    bulk = generate(now, TOPICS, seed, events=2500)
    want = expected_kpis(bulk.valid(), now, WINDOWS, ATTRIBUTION)
    assert expected(bulk.valid(), now, WINDOWS, ATTRIBUTION) == want
    assert any(r["advocates_created"] for r in want["advocacy_creation"])  # attribution is exercised
    assert any(r["segment"] == "unknown" for r in want["advocacy_actions"])


def test_fast_oracle_on_hand_computed_cases() -> None:
    """Ties, late registrations, attribution edges and duplicates, computed by hand."""
    now = 2_000_000_000.0
    day = 86400

    def ev(eid: str, cid: str, age: float, **extra: object) -> dict[str, object]:
        return {"event_id": eid, "customer_id": cid, "occurred_at": iso(now - age), **extra}

    events = [
        ("customer", ev("u1", "a", 40 * day, segment="smb", status="active")),
        ("customer", ev("u2", "a", 40 * day, segment="ent", status="active")),  # same time: greater id wins
        ("customer", ev("u0", "b", 50 * day, segment="smb", status="churned")),
        ("ticket", ev("t1", "a", 10 * day, ticket_id="T", team="billing")),
        ("ticket", ev("t2", "a", 5 * day, ticket_id="T", team="tech")),
        ("review", ev("r1", "a", 4 * day, kind="testimonial")),  # credited to tech (latest ticket)
        ("review", ev("r1", "a", 4 * day, kind="testimonial")),  # the same event again
        ("review", ev("r2", "a", 9 * day, kind="review", rating=4)),  # billing, 1 d after t1
        ("referral", ev("f1", "b", 2 * 3600)),  # no ticket: not credited; b is churned
        ("review", ev("r3", "b", 3 * 3600, kind="survey", nps=8)),  # not an action
        ("ticket", ev("t3", "b", 20 * day, ticket_id="T", team="billing")),
        ("review", ev("r4", "b", 12 * day, kind="social")),  # 8 d after t3: outside attribution
    ]
    got = expected(events, now, {"1d": day, "7d": 7 * day, "30d": 30 * day}, 7 * day)
    rows = {(r.get("segment"), r["window"]): (r["actions"], r["customers"]) for r in got["advocacy_actions"]}
    assert rows == {("ent", "1d"): (0, 1), ("ent", "7d"): (1, 1), ("ent", "30d"): (2, 1),
                    ("smb", "1d"): (1, 0), ("smb", "7d"): (1, 0), ("smb", "30d"): (2, 0)}
    teams = {(r["team"], r["window"]): (r["advocates_created"], r["support_interactions"])
             for r in got["advocacy_creation"]}
    assert teams == {("billing", "1d"): (0, 0), ("billing", "7d"): (0, 0), ("billing", "30d"): (1, 2),
                     ("tech", "1d"): (0, 0), ("tech", "7d"): (1, 1), ("tech", "30d"): (1, 1)}
    assert got == expected_kpis(events, now, {"1d": day, "7d": 7 * day, "30d": 30 * day}, 7 * day)


def test_fast_oracle_handles_fifty_thousand_events_in_seconds() -> None:
    """The crash-loop stream (50k messages) is generated and judged in well under a few seconds."""
    started = time.monotonic()
    bulk = generate(time.time(), TOPICS, 1, events=50_000)
    expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("by_topic", [False, True])
def test_bulk_stream_resends_identical_events_much_later_and_keeps_ages_safe(by_topic: bool) -> None:
    """~10% of events are re-sent byte for byte, far later in delivery order; every age avoids window edges."""
    now = time.time()
    bulk = generate(now, TOPICS, 5, events=20_000)
    wire = bulk.wire(by_topic=by_topic)
    assert len(wire) == bulk.counts()["messages"]
    assert abs(len(bulk.copies) / len(bulk.unique) - 0.10) < 0.01
    first: dict[bytes, int] = {}
    gaps = []
    for position, (_, _, value) in enumerate(wire):
        assert value is not None
        if value in first:
            gaps.append(position - first[value])
        else:
            first[value] = position
    assert len(gaps) == len(bulk.copies)  # each copy is the very same bytes as its original
    assert min(gaps) > len(wire) // 5, min(gaps)
    ids = Counter((topic, json.loads(value)["event_id"]) for topic, _, value in wire if value is not None)
    assert sum(n - 1 for n in ids.values()) == len(bulk.copies)  # ...and only copies share an event_id
    for kind, event in bulk.unique:
        if kind != "customer":
            age = now - datetime_seconds(event["occurred_at"])
            assert any(low - 1 <= age <= high + 1 for low, high in SAFE_AGES), (kind, age)
    keys = Counter("none" if k is None else "other" if k.startswith(b"other-") else "customer" for _, k, _ in wire)
    assert keys["none"] > len(wire) * 0.15
    assert keys["other"] > len(wire) * 0.10
    if by_topic:  # the events delivered once come topic after topic
        times = Counter(value for _, _, value in wire)
        once = [topic for topic, _, value in wire if times[value] == 1]
        changes = sum(1 for a, b in itertools.pairwise(once) if a != b)
        assert changes == len(TOPICS) - 1, changes


def datetime_seconds(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
