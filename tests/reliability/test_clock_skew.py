"""Scenario: workers whose clocks are minutes off (issue 13, "one clock").

Two workers run under libfaketime (Debian's ``faketime``), one ten minutes ahead, one ten
minutes behind; Redis and the test keep the true time. Events sit a few minutes on either
side of the edges a skewed clock moves: the 1 h window's start, the too-old limits of
actions (longest window) and tickets (longest window + attribution window), the future
tolerance. With each worker's own clock, the ahead one dead-letters valid events near the
too-old limits, accepts events too far in the future and leaves recent actions out of
the 1 h window; the behind one does the opposite. With the time taken from Redis, both
classify every event as the true clock does: /kpis on both equals the oracle and the
dead-letter topic holds exactly the invalid events.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import converge, metric_sum
from tests.support import iso, produce, require_binary

pytestmark = pytest.mark.e2e

SKEW = 600  # seconds: how far each worker's clock is off
MARGIN = 240  # how far an event sits from an edge: more than the test takes, less than SKEW
HOUR, DAY = 3600, 86400
FUTURE_TOLERANCE = 300  # ADVOCACY_FUTURE_TOLERANCE_SECONDS' default
LONGEST = max(WINDOWS.values())
PER_CLASS = 8  # events per edge class: two on each of the four partitions

# (kind, event time - now, extra fields, reason it is dead-lettered or None)
EDGES: list[tuple[str, float, dict[str, Any], str | None]] = [
    ("review", -(HOUR - MARGIN), {"kind": "testimonial"}, None),  # counted in 1h
    ("referral", -(HOUR + MARGIN), {}, None),  # not counted in 1h (in 1d)
    ("referral", -(LONGEST - MARGIN), {}, None),  # counted in 90d
    ("referral", -(LONGEST + MARGIN), {}, "too_old"),
    ("review", FUTURE_TOLERANCE - 60, {"kind": "social"}, None),  # ahead, within the tolerance
    ("review", FUTURE_TOLERANCE + MARGIN, {"kind": "case_study"}, "future_timestamp"),
    ("ticket", -(LONGEST + ATTRIBUTION - MARGIN), {}, None),  # still credits actions: stored
    ("ticket", -(LONGEST + ATTRIBUTION + MARGIN), {}, "too_old"),
]
SEGMENTS = ["enterprise", "smb"]
TEAMS = ["billing", "technical"]


def faketime_env(spec: str, monotonic: bool = True) -> dict[str, str]:
    """The variables Debian's ``faketime -m -f SPEC`` gives its program, to start a worker with them
    ourselves: the wrapper forks and passes no signal on, so a worker under it would outlive SIGTERM.
    ``monotonic=False`` leaves CLOCK_MONOTONIC true (libfaketime shifts it too by default)."""
    require_binary("faketime")
    out = subprocess.run(["faketime", "-m", "-f", spec, "env"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith(("FAKETIME=", "LD_PRELOAD=")))
    assert env.get("FAKETIME") == spec, out
    assert "faketime" in env.get("LD_PRELOAD", ""), out
    if not monotonic:
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    return env


def edge_events(now: float, topics: dict[str, str]) -> tuple[list[tuple[str, bytes, bytes, int]],
                                                             list[tuple[str, dict[str, Any]]], dict[str, str]]:
    """Messages (topic, key, value, partition), the valid events, and the invalid ones' ids -> reason."""
    messages: list[tuple[str, bytes, bytes, int]] = []
    valid: list[tuple[str, dict[str, Any]]] = []
    invalid: dict[str, str] = {}
    customers = [f"cust-{i:02d}" for i in range(PER_CLASS * 2)]

    def add(topic: str, customer: str, at: float, partition: int, reason: str | None = None, /,
            **fields: Any) -> None:
        event = {"event_id": f"e{len(messages):04d}", "customer_id": customer, "occurred_at": iso(at), **fields}
        messages.append((topics[topic], customer.encode(), json.dumps(event).encode(), partition))
        if reason is None:
            valid.append((topic, event))
        else:
            invalid[event["event_id"]] = reason

    for i, customer in enumerate(customers):
        add("customer", customer, now - 2 * DAY, i % 4, segment=SEGMENTS[i % 2], status="active")
        # every team has tickets and credited actions well inside the windows
        add("ticket", customer, now - 3 * HOUR, i % 4, ticket_id=f"T{i}", team=TEAMS[i % 2])
        if i % 3:
            add("review", customer, now - 2 * HOUR, i % 4, kind="testimonial")
    for n, (kind, offset, fields, reason) in enumerate(EDGES):
        for i in range(PER_CLASS):
            extra = dict(fields, ticket_id=f"E{n}-{i}", team=TEAMS[i % 2]) if kind == "ticket" else fields
            add(kind, customers[(n + i) % len(customers)], now + offset, i % 4, reason, **extra)
    return messages, valid, invalid


def dead_letters(bootstrap: str, topic: str) -> set[tuple[str, str]]:
    """(event_id, reason) of every message on the dead-letter topic, read to its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> set[tuple[str, str]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            found: set[tuple[str, str]] = set()
            deadline = time.monotonic() + 30
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]] and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        reason = dict(record.headers)["reason"].decode()
                        found.add((json.loads(record.value)["event_id"], reason))
            return found
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_workers_minutes_ahead_and_behind_classify_and_count_by_one_clock(namespace: Namespace,
                                                                          tmp_path: Path) -> None:
    """One worker 10 min ahead (wall and monotonic clocks shifted), one 10 min behind (wall clock only):
    both /kpis equal the oracle at the true time, the dead letters are exactly the invalid events, and
    each worker measures its own skew."""
    ahead = namespace.worker(tmp_path, **faketime_env("+10m"))
    behind = namespace.worker(tmp_path, **faketime_env("-10m", monotonic=False))
    workers = [ahead.start(), behind.start()]
    try:
        for worker in workers:
            worker.wait_ready()
        messages, valid, invalid = edge_events(time.time(), namespace.topics)
        partitions = [m[3] for m in messages]
        produce(namespace.stack.bootstrap, [m[:3] for m in messages], partition_of=partitions.__getitem__)
        print(f"{len(messages)} messages, {len(invalid)} invalid")
        took = converge(workers, lambda: expected(valid, time.time(), WINDOWS, ATTRIBUTION), timeout=60)
        print(f"exact on both workers {took:.1f} s after publishing")
        assert dead_letters(namespace.stack.bootstrap, namespace.topics["dlq"]) == set(invalid.items())
        for worker, skew in ((ahead, -SKEW), (behind, SKEW)):
            measured = metric_sum(worker, "advocacy_clock_skew_seconds")
            assert abs(measured - skew) < 5, (worker.url, measured)  # Redis's time minus the worker's
            generated = datetime.fromisoformat(worker.kpis()["generated_at"]).timestamp()
            assert abs(generated - time.time()) < 5, (worker.url, generated)  # "now" is Redis's
            latency = (metric_sum(worker, "advocacy_processing_latency_seconds_sum")
                       / max(1.0, metric_sum(worker, "advocacy_processing_latency_seconds_count")))
            assert latency < 60, (worker.url, latency)
            print(f"{worker.url}: measured skew {measured:+.3f} s, mean latency {latency:.3f} s")
    finally:
        for worker in workers:
            worker.stop()
