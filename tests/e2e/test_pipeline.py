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
from tests.scenario import ATTRIBUTION, EDGE_TEAMS, WINDOWS, build
from tests.support import consume_all, diff, produce, rows, strip, wait_for

pytestmark = pytest.mark.e2e


def _converges(workers: list[Any], expected: dict[str, Any], timeout: float = 90.0) -> dict[str, Any]:
    """Wait until every worker's /kpis equals ``expected``; the first worker's /kpis then."""
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
    return last[workers[0].url]


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
        got = _converges([worker], expected)
        # the late registration moved its customer's actions from "unknown" to "enterprise": the
        # worker's "unknown" rows have no customers (every other unregistered customer is unsegmented)
        assert not any(r["segment"] == "unknown" and r["customers"] for r in got["advocacy_actions"])
        assert any(r["segment"] == "enterprise" and r["actions"] for r in got["advocacy_actions"])
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
    messages = scenario.messages()
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        produce(namespace.stack.bootstrap, messages)
        records = consume_all(namespace.stack.bootstrap, namespace.topics["dlq"], len(scenario.bad), 60)
    finally:
        worker.stop()
    sources = {}  # (topic, partition, offset) -> value, as published
    for topic in {t for t, _, _ in messages}:
        count = sum(1 for t, _, _ in messages if t == topic)
        for source in consume_all(namespace.stack.bootstrap, topic, count, 60):
            sources[(topic, source.partition, source.offset)] = source.value
    got = {}
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        got[record.value] = headers
        where = (headers["source_topic"], int(headers["source_partition"]), int(headers["source_offset"]))
        assert sources[where] == record.value, f"provenance {where} names another message"
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


def test_label_caps_below_the_names_fold_into_other_and_never_change_an_overall_row(
        namespace: Namespace, tmp_path: Path) -> None:
    """Issue 11: with ADVOCACY_MAX_SEGMENTS=2 and ADVOCACY_MAX_TEAMS=2 (the scenario has 5 segments and 6 teams,
    windows up to 90d), /kpis equals the oracle with the names the service admitted kept and the others under
    _other; every overall row equals the uncapped oracle's, so a customer credited to two folded teams (the
    scenario's edge-6) counts twice there."""
    import redis

    scenario = build(time.time(), namespace.topics, seed=29)
    worker = namespace.worker(tmp_path, ADVOCACY_MAX_SEGMENTS="2", ADVOCACY_MAX_TEAMS="2").start().wait_ready()
    client = redis.Redis.from_url(namespace.stack.redis_url)

    def admitted() -> dict[str, set[str]]:
        return {kind: {m.decode() for m in client.smembers(f"{namespace.app_id}:admitted:{kind}")}
                for kind in ("segment", "team")}

    try:
        # the first names in: two teams and two segments of the scenario, so that the edge names fold
        first = [next(m for m in scenario.messages() if m[0] == namespace.topics["ticket"] and team in m[2])
                 for team in (b'"billing"', b'"onboarding"')]
        first += [next(m for m in scenario.messages() if m[0] == namespace.topics["customer"] and seg in m[2])
                  for seg in (b'"smb"', b'"enterprise"')]
        produce(namespace.stack.bootstrap, first)
        wait_for(lambda: admitted() == {"segment": {"smb", "enterprise"}, "team": {"billing", "onboarding"}}, 60,
                 what="the first names to be admitted")
        produce(namespace.stack.bootstrap, scenario.messages())
        last: dict[str, Any] = {}

        def check() -> bool:
            last["kpis"] = strip(worker.kpis())
            last["expected"] = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION, admitted())
            return bool(last["kpis"] == last["expected"])

        try:
            wait_for(check, 90, interval=0.5, what="/kpis to equal the oracle's folded KPIs")
        except AssertionError:
            raise AssertionError(f"/kpis never matched:\n{diff(last['kpis'], last['expected'])}") from None
        got = last["kpis"]
        plain = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        for key in ("advocacy_actions_overall", "advocacy_creation_overall"):
            assert got[key] == plain[key]
        assert admitted() == {"segment": {"smb", "enterprise"}, "team": {"billing", "onboarding"}}
        other = rows(got, "advocacy_creation", "team")[("_other", "7d")]
        unfolded = [r for r in plain["advocacy_creation"] if r["window"] == "7d"
                    and r["team"] not in ("billing", "onboarding")]
        # edge-6 is an advocate of both folded teams in 7d, and counts for each in _other
        assert {EDGE_TEAMS[1], EDGE_TEAMS[2]} <= {r["team"] for r in unfolded if r["advocates_created"]}
        assert other["advocates_created"] == sum(r["advocates_created"] for r in unfolded)
        assert {r["segment"] for r in got["advocacy_actions"]} <= {"smb", "enterprise", "unknown", "_other"}
    finally:
        client.close()
        worker.stop()
