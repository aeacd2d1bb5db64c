"""Bounded records (issue 13), on real Kafka and Redis: a customer with 50,000 events in retention is
counted exactly under the default cap; over a small configured cap, the customer counts with the
events that expire last and the rest is dead-lettered with reason ``customer_cap``."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, DAY, HOUR, WINDOWS, Bulk, generate
from tests.reliability.fast_oracle import expected, micros
from tests.reliability.harness import converge, env_int, metric_sum, publish
from tests.support import consume_all

pytestmark = pytest.mark.e2e

HOT_EVENTS = env_int("RELIABILITY_SKEWED_EVENTS", 50_000)
ACTION_RETENTION_S = 90 * DAY + 2 * 90 * DAY // 24  # longest window + two of its buckets
TICKET_RETENTION_S = ACTION_RETENTION_S + ATTRIBUTION


def _hot(bulk: Bulk, customer: str, n: int) -> None:
    """``n`` events of one customer that a record holds (testimonials, referrals, tickets), at safe ages."""
    rng = bulk.rng
    for i in range(n):
        at = bulk.now - bulk.age()
        if i % 5 == 0:
            bulk.add("ticket", customer, at, ticket_id=f"T{i}", team=rng.choice(["billing", "technical"]))
        elif i % 5 == 1:
            bulk.add("referral", customer, at, channel="email")
        else:
            bulk.add("review", customer, at, kind="testimonial", source="g2")


def test_a_customer_with_50000_events_in_retention_is_counted_exactly(namespace: Namespace, tmp_path: Path) -> None:
    """One customer with 50,000 held events among ~1,000 ordinary ones, shuffled, 5% re-sent: /kpis equals
    the oracle, and the largest record the worker wrote holds all 50,000."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    bulk = generate(time.time(), namespace.topics, seed, events=1_000, duplicate_ratio=0.0)
    _hot(bulk, "hot-customer", HOT_EVENTS)
    bulk.copies = bulk.rng.sample(range(len(bulk.unique)), k=len(bulk.unique) // 20)
    wire = bulk.wire()
    print(f"seed={seed} {bulk.counts()}")
    worker = namespace.worker(tmp_path).start()  # it starts while the messages are published
    try:
        started = time.monotonic()
        publish(namespace.stack.bootstrap, wire)
        worker.wait_ready()
        took = converge([worker], lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        largest = metric_sum(worker, "advocacy_record_events_max")
        dead = metric_sum(worker, "advocacy_dead_letters_total")
    finally:
        worker.stop()
    print(f"exact {took:.1f} s after publishing {len(wire)} messages and the worker ready "
          f"({time.monotonic() - started:.1f} s in all); "
          f"largest record {largest:.0f} events")
    assert largest == HOT_EVENTS
    assert dead == 0


def _rank(kind: str, event: dict[str, Any]) -> tuple[float, str, str]:
    """When the service forgets an event (its time + its kind's retention): the cap keeps the greatest."""
    at = micros(event["occurred_at"]) / 1e6
    return at + (TICKET_RETENTION_S if kind == "ticket" else ACTION_RETENTION_S), kind, event["event_id"]


def test_over_a_small_cap_the_latest_expiring_events_count_and_the_rest_is_dead_lettered(
        namespace: Namespace, tmp_path: Path) -> None:
    """ADVOCACY_MAX_EVENTS_PER_CUSTOMER=5: a customer's five events count; three older ones sent later go to
    the dead-letter topic with reason customer_cap and change nothing; a newer one then pushes the oldest
    held one out (an eviction): /kpis equals the oracle of the five that expire last, throughout."""
    now = time.time()
    bulk = Bulk(now, namespace.topics, random.Random(13), "cap-")
    for n in range(40):  # ordinary customers, three held events each: under the cap
        customer = f"cust-{n:03d}"
        bulk.add("customer", customer, now - 60 * DAY, segment=["enterprise", "smb"][n % 2],
                 status="active" if n % 5 else "churned")
        # ages inside the safe ranges of tests/reliability/bulk.py (away from every window edge)
        bulk.add("ticket", customer, now - 3 * HOUR - n * 400, ticket_id=f"T{n}", team=["billing", "technical"][n % 2])
        bulk.add("review", customer, now - 3 * HOUR - n * 400 + 600, kind="social")
        bulk.add("referral", customer, now - 2 * DAY - n * HOUR, channel="email")
    for age in (3 * HOUR, 5 * HOUR, 7 * HOUR, 9 * HOUR):
        bulk.add("review", "capped", now - age, kind="testimonial", source="g2")
    bulk.add("ticket", "capped", now - 11 * HOUR, ticket_id="T1", team="billing")
    bulk.add("customer", "capped", now - 50 * DAY, segment="enterprise", status="active")  # not held: never capped
    first = list(bulk.unique)
    bulk.add("referral", "capped", now - 3 * DAY, channel="email")  # older than every held one: turned away
    bulk.add("review", "capped", now - 4 * DAY, kind="social")
    bulk.add("ticket", "capped", now - 18 * DAY, ticket_id="T2", team="technical")  # + attribution: still older
    older = bulk.unique[len(first):]
    # expires later than the 9 h testimonial (the 11 h ticket is kept longer): evicts that one
    bulk.add("referral", "capped", now - 20 * 60, channel="chat")
    newest = bulk.unique[-1]

    def oracle(sent: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        held = [(k, e) for k, e in sent if e["customer_id"] == "capped" and k != "customer"]
        kept = sorted(held, key=lambda ke: _rank(*ke))[-5:]
        rest = [(k, e) for k, e in sent if e["customer_id"] != "capped" or k == "customer"]
        return expected(rest + kept, time.time(), WINDOWS, ATTRIBUTION)

    def messages(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bytes | None, bytes | None]]:
        return [(namespace.topics[k], str(e["customer_id"]).encode(), json.dumps(e).encode()) for k, e in events]

    worker = namespace.worker(tmp_path, ADVOCACY_MAX_EVENTS_PER_CUSTOMER="5").start()
    try:
        worker.wait_ready()
        publish(namespace.stack.bootstrap, messages(first))
        converge([worker], lambda: oracle(first), timeout=60)
        publish(namespace.stack.bootstrap, messages(older))
        dead = consume_all(namespace.stack.bootstrap, namespace.topics["dlq"], len(older), 60)
        converge([worker], lambda: oracle(first), timeout=30)
        publish(namespace.stack.bootstrap, messages([newest]))
        converge([worker], lambda: oracle([*first, *older, newest]), timeout=60)
        evicted = metric_sum(worker, "advocacy_record_evictions_total")
        capped = metric_sum(worker, "advocacy_dead_letters_total", reason="customer_cap")
        largest = metric_sum(worker, "advocacy_record_events_max")
    finally:
        worker.stop()
    got = {record.value: {k: v.decode() for k, v in record.headers} for record in dead}
    assert set(got) == {raw for _, _, raw in messages(older)}
    assert {h["reason"] for h in got.values()} == {"customer_cap"}
    assert {h["source_topic"] for h in got.values()} == {namespace.topics[k] for k, _ in older}
    assert (evicted, capped, largest) == (1, 3, 5)
