"""End to end: `python -m stream worker` subprocesses on a real broker and Redis."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Namespace
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build
from tests.support import consume_all, diff, produce, rows, strip, wait_for

pytestmark = pytest.mark.e2e


def _converges(workers: list[Any], expected: dict[str, Any], timeout: float = 90.0) -> None:
    last: dict[str, Any] = {}

    def check() -> bool:
        for worker in workers:
            last[worker.url] = strip(worker.kpis())
            if last[worker.url] != expected:
                return False
        return True

    try:
        wait_for(check, timeout, interval=0.5, what="/kpis to equal the hand-computed KPIs")
    except AssertionError:
        details = "\n".join(f"{url}:\n{diff(kpis, expected)}" for url, kpis in last.items())
        raise AssertionError(f"/kpis never matched:\n{details}") from None


def test_shuffled_duplicated_unkeyed_late_and_malformed_events_give_exact_kpis(
        namespace: Namespace, tmp_path: Path) -> None:
    """A few hundred messy events in shuffled order end in /kpis equal to the oracle's numbers; no
    customer id reaches the worker's log."""
    scenario = build(time.time(), namespace.topics, seed=11, prefix="secret-customer-")
    messages = scenario.messages()
    assert len(messages) > 300
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        produce(namespace.stack.bootstrap, messages)
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        _converges([worker], expected)
        # the late registration moved c009's actions from "unknown" to "enterprise"
        assert not any(r["segment"] == "unknown" and r["customers"] for r in expected["advocacy_actions"])
        narrowed = worker.kpis("7d")
        assert {r["window"] for key in expected for r in narrowed[key]} == {"7d"}
        assert rows(narrowed, "advocacy_actions_overall") == {"7d": rows(expected_kpis(
            scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION), "advocacy_actions_overall")["7d"]}
    finally:
        worker.stop()
    log = worker.log.read_text()
    assert "dead-lettered" in log  # the log is the worker's, with event lines in it
    assert "secret-customer-" not in log


def test_every_malformed_payload_lands_in_the_dead_letter_topic_with_its_reason(
        namespace: Namespace, tmp_path: Path) -> None:
    """Each bad payload of the contract's list is in advocacy-dlq, unchanged, with provenance headers."""
    scenario = build(time.time(), namespace.topics, seed=5, customers=10)
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        produce(namespace.stack.bootstrap, scenario.messages())
        records = consume_all(namespace.stack.bootstrap, namespace.topics["dlq"], len(scenario.bad), 60)
    finally:
        worker.stop()
    got = {}
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        got[record.value] = headers
        assert headers["source_topic"] in namespace.topics.values()
        assert int(headers["source_partition"]) >= 0
        assert int(headers["source_offset"]) >= 0
        assert headers["detail"]
    for kind, raw, reason in scenario.bad:
        assert raw in got, f"{reason} payload not dead-lettered"
        assert got[raw]["reason"] == reason
        assert got[raw]["source_topic"] == namespace.topics[kind]


def test_two_workers_share_the_work_and_both_answer_for_the_whole_system(
        namespace: Namespace, tmp_path: Path) -> None:
    """With two workers in the group, /kpis from either equals the oracle."""
    scenario = build(time.time(), namespace.topics, seed=23)
    first = namespace.worker(tmp_path).start()
    second = namespace.worker(tmp_path).start()
    try:
        first.wait_ready()
        second.wait_ready()
        produce(namespace.stack.bootstrap, scenario.messages())
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        _converges([first, second], expected)
    finally:
        first.stop()
        second.stop()


def test_sigkilled_worker_restarted_mid_stream_counts_each_event_once(
        namespace: Namespace, tmp_path: Path) -> None:
    """SIGKILL at three points of a running stream; the restarted worker ends with exact /kpis."""
    seed = 31
    rng = random.Random(seed)
    scenario = build(time.time(), namespace.topics, seed=seed, customers=400)
    messages = scenario.messages()
    print(f"seed={seed} messages={len(messages)}")
    # small batches so that kills land between many commits
    env = {"ADVOCACY_BATCH_MAX_EVENTS": "50"}
    worker = namespace.worker(tmp_path, **env).start().wait_ready()
    chunks = [messages[i::100] for i in range(100)]
    kills_done = threading.Event()

    def publish() -> None:  # paced until the kills are done, then the rest at once
        for chunk in chunks:
            produce(namespace.stack.bootstrap, chunk)
            kills_done.wait(0.4)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        for kill in range(3):
            time.sleep(rng.uniform(1.0, 3.0))
            assert publisher.is_alive(), f"kill {kill + 1} came after the stream ended"
            worker.kill()
            worker = namespace.worker(tmp_path, **env).start().wait_ready()
        kills_done.set()
        publisher.join()
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        _converges([worker], expected, timeout=120)
    finally:
        kills_done.set()
        publisher.join()
        worker.stop()
