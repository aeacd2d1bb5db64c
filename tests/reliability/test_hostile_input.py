"""Scenario 5: hostile input through a real worker never stops it and always reaches the dead-letter topic."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stream.dead_letters import CUT_BYTES
from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.contract import REASONS
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import HealthWatch, alive, converge, env_int, log_text, metric_sum, publish
from tests.reliability.hostile import hostile, odd_but_valid
from tests.support import consume_all

pytestmark = pytest.mark.e2e

PER_TOPIC = env_int("RELIABILITY_HOSTILE_PER_TOPIC", 2000)
VALID_EVENTS = env_int("RELIABILITY_HOSTILE_VALID_EVENTS", 4000)
MAX_BYTES = 81_920  # at least contract.largest_valid_bytes(): the lowest ADVOCACY_MAX_MESSAGE_BYTES a worker accepts
KINDS = ["review", "referral", "ticket", "customer"]


def test_hostile_payloads_mixed_with_valid_events_are_dead_lettered_and_counting_stays_exact(
        namespace: Namespace, tmp_path: Path) -> None:
    """Thousands of hostile values per topic: worker stays ready, each is dead-lettered with a reason, KPIs exact."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    now = time.time()
    bad = hostile(KINDS, PER_TOPIC, seed, now, MAX_BYTES)
    bulk = generate(now, namespace.topics, seed, events=VALID_EVENTS)
    odd = odd_but_valid(seed, now, 300, MAX_BYTES)
    valid_wire = bulk.wire() + [(namespace.topics[k], e["customer_id"].encode(), raw) for k, e, raw in odd]
    wire: list[tuple[str, bytes | None, bytes | None, Any]] = [(t, k, v, None) for t, k, v in valid_wire]
    rng = random.Random(seed)
    # a tombstone (no value) needs a key, and so does any message on the compacted customers topic (Apache
    # Kafka refuses it otherwise); other hostile values come with no key, an odd one or a normal one
    wire += [(namespace.topics[h.kind], rng.choice([b"cust-000001", b"\xff\x00"]) if h.raw is None
              else rng.choice([b"cust-000001", b"\xff\x00", b""] if h.kind == "customer" else
                              [None, b"cust-000001", b"\xff\x00", b""]), h.raw, h) for h in bad]
    rng.shuffle(wire)
    print(f"seed={seed} hostile={len(bad)} ({PER_TOPIC} per topic) valid={len(valid_wire)} "
          f"(of which odd-but-valid={len(odd)}, duplicates={len(bulk.copies)}) max_bytes={MAX_BYTES}; "
          f"categories {dict(Counter(h.category for h in bad))}")

    worker = namespace.worker(tmp_path, ADVOCACY_MAX_MESSAGE_BYTES=str(MAX_BYTES)).start().wait_ready()
    watch = HealthWatch([worker]).start()
    try:
        started = time.monotonic()
        where = publish(namespace.stack.bootstrap, [(t, k, v) for t, k, v, _ in wire])
        valid = bulk.valid() + [(k, json.loads(raw)) for k, _, raw in odd]
        took = converge([worker], lambda: expected(valid, time.time(), WINDOWS, ATTRIBUTION), timeout=240)
        records = consume_all(namespace.stack.bootstrap, namespace.topics["dlq"], len(bad), timeout=120)
        print(f"converged {took:.1f} s after publishing; {len(records)} dead letters read; "
              f"{time.monotonic() - started:.1f} s in all; {watch.polls} /health polls")
        dead_lettered = metric_sum(worker, "advocacy_dead_letters_total")
        time.sleep(5)  # crashed agents show in /health within a lag-timer tick (2 s): keep watching
    finally:
        watch.stop()
        still_alive = alive(worker)
        worker.stop()

    assert still_alive, f"worker died; log {worker.log}"
    assert not watch.bad, f"/health was not ready {len(watch.bad)} times, first: {watch.bad[:3]}"
    log = log_text(worker)
    assert "could not validate" not in log, "validation raised something other than InvalidEvent"
    assert "Restarting dead" not in log, "an agent crashed"
    assert "agent crashed" not in log, "an agent crashed"

    hostile_at = {(namespace.topics[h.kind], *where[i]): h for i, (_, _, _, h) in enumerate(wire) if h is not None}
    got: dict[tuple[str, int, int], tuple[str, bytes | None, dict[str, str]]] = {}
    for record in records:
        headers = {k: v.decode(errors="replace") for k, v in record.headers}
        source = (headers["source_topic"], int(headers["source_partition"]), int(headers["source_offset"]))
        got[source] = (headers["reason"], record.value, headers)
    strays = sorted(set(got) - set(hostile_at))
    assert not strays, f"{len(strays)} dead letters are not hostile messages (valid ones dead-lettered?): {strays[:5]}"
    missing = [(s, h.category, (h.raw or b"")[:80]) for s, h in hostile_at.items() if s not in got]
    assert not missing, f"{len(missing)} hostile messages never reached the DLQ, e.g. {missing[:5]}"
    wrong = []
    for source, h in hostile_at.items():
        reason, value, headers = got[source]
        if reason == "too_large":  # cut to a bounded size, its original size in a header
            assert h.raw is not None, f"{source}: not the start of the value"
            assert value == h.raw[:CUT_BYTES], f"{source}: not the start of the value"
            assert headers.get("original_size") == str(len(h.raw)), f"{source}: no original_size header"
        else:
            assert value == h.raw, f"{source} {h.category}: the dead letter is not the message unchanged"
        assert headers.get("detail"), f"{source}: no detail header"
        if reason not in h.allowed or reason not in REASONS:
            wrong.append((h.kind, h.category, reason, sorted(h.allowed), (h.raw or b"")[:80]))
    assert not wrong, f"{len(wrong)} dead letters with an unexpected reason, e.g. {wrong[:5]}"
    assert dead_lettered == len(bad)
    print(f"dead-letter reasons {dict(Counter(reason for reason, _, _ in got.values()))}")


def test_a_value_just_over_the_default_size_limit_is_dead_lettered_and_its_neighbours_counted(
        namespace: Namespace, tmp_path: Path) -> None:
    """A 1,000,100-byte value (limit 1,000,000) goes to the DLQ as too_large; events around it still count."""
    now = time.time()
    topic = namespace.topics["referral"]
    before = [{"event_id": f"a{i}", "customer_id": "c1", "occurred_at": _iso(now - 3600 * (i + 2))} for i in range(5)]
    after = [{"event_id": f"b{i}", "customer_id": "c1", "occurred_at": _iso(now - 3600 * (i + 2))} for i in range(5)]
    big = json.dumps({"event_id": "big", "customer_id": "c1", "occurred_at": _iso(now - 7200),
                      "pad": "x" * 1_000_000}).encode()
    assert 1_000_000 < len(big) < 1_048_576 - 1024  # over the service's limit, under Kafka's default 1 MiB
    registration = {"event_id": "r1", "customer_id": "c1", "occurred_at": _iso(now - 50 * 86400),
                    "segment": "smb", "status": "active"}
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        messages = ([(topic, b"c1", json.dumps(e).encode()) for e in before] + [(topic, b"c1", big)]
                    + [(topic, b"c1", json.dumps(e).encode()) for e in after])
        publish(namespace.stack.bootstrap, [(namespace.topics["customer"], b"c1", json.dumps(registration).encode())])
        publish(namespace.stack.bootstrap, messages)  # one key: one partition, in this order
        valid = [("customer", registration)] + [("referral", e) for e in before + after]
        try:
            converge([worker], lambda: expected(valid, time.time(), WINDOWS, ATTRIBUTION), timeout=15)
        finally:
            records = consume_all(namespace.stack.bootstrap, namespace.topics["dlq"], 1, timeout=5)
            print(f"dead letters: {[(len(r.value or b''), dict(r.headers).get('reason')) for r in records]}")
        reasons = [dict(r.headers)["reason"].decode() for r in records]
        assert reasons == ["too_large"], reasons
        assert records[0].value == big[:CUT_BYTES]
        assert dict(records[0].headers)["original_size"] == str(len(big)).encode()
    finally:
        worker.stop()
        crash = [line for line in log_text(worker).splitlines() if "MessageSizeTooLarge" in line][:1]
        if crash:
            print("worker log:", crash[0][:600])


def _iso(seconds: float) -> str:
    from tests.reliability.bulk import iso

    return iso(seconds)
