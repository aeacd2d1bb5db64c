"""Scenario 3: re-sent events far apart, topics in shuffled order, unkeyed and mis-keyed messages."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.fast_oracle import advocacy, expected
from tests.reliability.harness import converge, env_int, metric_sum, publish

pytestmark = pytest.mark.e2e

EVENTS = env_int("RELIABILITY_DISORDER_EVENTS", 20_000)


def test_duplicates_hours_apart_shuffled_topics_and_bad_keys_give_exact_kpis(
        namespace: Namespace, tmp_path: Path) -> None:
    """Topics published one after another in random order, 10% re-sent far later, 35% un/mis-keyed: exact KPIs."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire(by_topic=True)
    kinds = {v: k for k, v in namespace.topics.items()}
    times = Counter(value for _, _, value in wire)
    once = [kinds[t] for t, _, value in wire if times[value] == 1]
    phases = [kind for i, kind in enumerate(once) if i == 0 or once[i - 1] != kind]
    keys = Counter("unkeyed" if k is None else "mis-keyed" if k.startswith(b"other-") else "customer_id"
                   for _, k, _ in wire)
    copies = [bulk.unique[i] for i in bulk.copies]
    counted_copies = sum(1 for kind, e in copies if kind == "ticket" or advocacy(kind, e))
    print(f"seed={seed} {bulk.counts()} keys={dict(keys)} topic order={phases}")
    assert len(phases) == 4, phases
    # two workers: a customer's events, spread over partitions by the bad keys, race on two workers
    workers = [namespace.worker(tmp_path).start(), namespace.worker(tmp_path).start()]
    try:
        for worker in workers:
            worker.wait_ready()
        started = time.monotonic()
        where = publish(namespace.stack.bootstrap, wire)
        took = converge(workers, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        handled = {o: sum(int(metric_sum(w, "advocacy_events_processed_total", outcome=o)) for w in workers)
                   for o in ("applied", "duplicate", "ignored", "dead_letter")}
        conflicts = sum(int(metric_sum(w, "advocacy_state_conflicts_total")) for w in workers)
    finally:
        for worker in workers:
            worker.stop()
    spread = Counter(len({p for (t, _, v), (p, _) in zip(wire, where, strict=True) if t == topic}) for topic in
                     namespace.topics.values() if topic in kinds and kinds[topic] != "dlq")
    print(f"exact on both workers {took:.1f} s after publishing; outcomes {handled}; CAS conflicts {conflicts}; "
          f"copies {len(copies)} of which tickets/actions {counted_copies}; partitions used per topic {spread}; "
          f"{time.monotonic() - started:.1f} s")
    assert handled["dead_letter"] == 0
    assert sum(handled.values()) >= len(wire)  # every message handled (more only if a batch was replayed)
    assert handled["duplicate"] >= counted_copies  # each re-sent ticket or action was recognised
