"""The worker as operators see it: /metrics, /health, configuration errors, Redis outages."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.embedded import free_port, start_redis, stop
from tests.conftest import Namespace
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build, iso
from tests.support import get_json, http_get, produce, rows, strip, wait_for

pytestmark = pytest.mark.e2e


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(url + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_expose_the_kpis_with_numerators_denominators_and_worker_health(
        namespace: Namespace, tmp_path: Path) -> None:
    """/metrics carries the same numbers as /kpis plus processing, dead-letter and build series."""
    scenario = build(time.time(), namespace.topics, seed=41, customers=20)
    worker = namespace.worker(tmp_path).start().wait_ready()
    try:
        produce(namespace.stack.bootstrap, scenario.messages())
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        wait_for(lambda: strip(worker.kpis()) == expected, 60, what="kpis")
        m = _samples(worker.url)
        for (segment, window), row in rows(expected, "advocacy_actions", "segment").items():
            assert m[("advocacy_actions", (("segment", segment), ("window", window)))] == row["actions"]
            if row["rate"] is not None:
                assert m[("advocacy_actions_ratio", (("segment", segment), ("window", window)))] == \
                    pytest.approx(row["rate"])
                assert m[("advocacy_customers_active", (("segment", segment),))] == row["customers"]
            else:
                assert ("advocacy_actions_ratio", (("segment", segment), ("window", window))) not in m
        for (team, window), row in rows(expected, "advocacy_creation", "team").items():
            labels = (("team", team), ("window", window))
            assert m[("advocacy_support_interactions", labels)] == row["support_interactions"]
            assert m[("advocacy_advocates_created", labels)] == row["advocates_created"]
        dead = sum(v for (name, _), v in m.items() if name == "advocacy_dead_letters_total")
        assert dead == len(scenario.bad)
        processed = sum(v for (name, _), v in m.items() if name == "advocacy_events_processed_total")
        assert processed == len(scenario.messages())
        assert any(name == "advocacy_build_info" for name, _ in m)
        assert m[("advocacy_worker_ready", ())] == 1
        assert any(name == "advocacy_processing_latency_seconds_count" and v > 0 for (name, _), v in m.items())
        assert any(name == "advocacy_last_event_timestamp_seconds" and v > time.time() - 3600
                   for (name, _), v in m.items())
        body = get_json(worker.url + "/health")
        assert body["status"] == "ready"
        assert body["reasons"] == []
        status, _ = http_get(worker.url + "/kpis?window=2y")
        assert status == 400
    finally:
        worker.stop()


def test_redis_outage_makes_the_worker_not_ready_and_loses_nothing(
        namespace: Namespace, tmp_path: Path) -> None:
    """Redis stopped for 10 s mid-stream: /health says why, events wait, and the numbers end exact."""
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    port = free_port()
    redis = start_redis(port, redis_dir)
    url = f"redis://127.0.0.1:{port}/0"
    scenario = build(time.time(), namespace.topics, seed=43, customers=30)
    messages = scenario.messages()
    worker = namespace.worker(tmp_path, ADVOCACY_REDIS_URL=url, ADVOCACY_REDIS_RETRY_MAX_SECONDS="0.5").start()
    try:
        worker.wait_ready()
        produce(namespace.stack.bootstrap, messages[: len(messages) // 2])
        stop(redis)  # SIGTERM: redis writes its AOF and exits
        down_since = time.monotonic()
        produce(namespace.stack.bootstrap, messages[len(messages) // 2:])

        def not_ready() -> bool:
            status, body = http_get(worker.url + "/health")
            return status == 503 and b"redis unavailable" in body

        wait_for(not_ready, 20, what="/health to report redis unavailable")
        time.sleep(max(0.0, 10 - (time.monotonic() - down_since)))  # a 10 s outage
        assert not_ready()
        redis = start_redis(port, redis_dir)
        worker.wait_ready(30)
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        wait_for(lambda: strip(worker.kpis()) == expected, 60, what="exact kpis after the outage")
    finally:
        worker.stop()
        stop(redis)


def test_a_bad_setting_stops_start_up_with_one_line_naming_the_variable() -> None:
    """ADVOCACY_WINDOWS=soon: exit code 2 and a single stderr line that names the variable."""
    env = {"PATH": "/usr/bin:/bin", "ADVOCACY_WINDOWS": "1h,soon"}
    result = subprocess.run([sys.executable, "-m", "stream", "worker"], env=env, capture_output=True,
                            timeout=60, check=False, cwd=Path(__file__).parents[2])
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ADVOCACY_WINDOWS:")


def test_redis_restarted_empty_is_rebuilt_from_the_topics_with_no_operator_step(
        namespace: Namespace, tmp_path: Path) -> None:
    """State lost with Redis: the running worker re-reads every topic from its earliest offset by itself
    and ends exact; a worker started on the empty state starts (no refusal) and agrees."""
    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis = start_redis(port, redis_dir, aof=False)
    env = {"ADVOCACY_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    scenario = build(time.time(), namespace.topics, seed=47, customers=30)
    messages = scenario.messages()
    half = len(messages) // 2
    worker = namespace.worker(tmp_path, **env).start().wait_ready()
    second = None
    try:
        produce(namespace.stack.bootstrap, messages[:half])
        wait_for(lambda: sum(r["actions"] for r in worker.kpis()["advocacy_actions_overall"]) > 0, 30,
                 what="first events counted")
        time.sleep(2.5)  # let the consumer commit its offsets: the group's commits are no help now
        stop(redis)
        redis = start_redis(port, redis_dir, aof=False)  # same address, no data
        produce(namespace.stack.bootstrap, messages[half:])
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        wait_for(lambda: strip(worker.kpis()) == expected, 90, interval=1.0, what="rebuilt /kpis")
        worker.stop()
        second = namespace.worker(tmp_path, **env).start().wait_ready()
        wait_for(lambda: strip(second.kpis()) == expected, 60, interval=1.0, what="/kpis of a new worker")
    finally:
        worker.stop()
        if second is not None:
            second.stop()
        stop(redis)


def test_a_flood_of_distinct_segment_names_stays_bounded_in_metrics_and_memory(
        namespace: Namespace, tmp_path: Path) -> None:
    """100k distinct segment names with a cap of 50: /metrics lists at most 52 segments, the fold is
    counted, the totals stay exact and the worker's peak memory stays bounded."""
    names = 100_000
    now = time.time()
    topic = namespace.topics["referral"]
    messages = [(topic, f"c{i}".encode(), (
        f'{{"event_id":"f{i}","customer_id":"c{i}","occurred_at":"{iso(now - 600)}","segment":"seg-{i:06d}"}}'
    ).encode()) for i in range(names)]
    worker = namespace.worker(tmp_path, ADVOCACY_MAX_SEGMENTS="50").start().wait_ready()
    try:
        produce(namespace.stack.bootstrap, messages)

        def overall() -> bool:
            rows = worker.kpis("1h")["advocacy_actions_overall"]
            return rows[0]["actions"] == names

        wait_for(overall, 180, interval=1.0, what="all actions counted")
        segments = {r["segment"] for r in worker.kpis("1h")["advocacy_actions"]}
        assert len(segments) == 51
        assert "_other" in segments
        assert sum(r["actions"] for r in worker.kpis("1h")["advocacy_actions"]) == names
        m = _samples(worker.url)
        assert sum(v for (name, _), v in m.items() if name == "advocacy_labels_folded_total") == names - 50
        _, body = http_get(worker.url + "/metrics")
        assert len(body) < 200_000, f"/metrics is {len(body)} bytes"
        assert worker.proc is not None
        hwm = next(int(line.split()[1]) for line in Path(f"/proc/{worker.proc.pid}/status").read_text()
                   .splitlines() if line.startswith("VmHWM"))
        print(f"peak RSS {hwm / 1024:.0f} MiB, /metrics {len(body)} bytes")
        assert hwm < 300 * 1024, f"peak RSS {hwm / 1024:.0f} MiB"
    finally:
        worker.stop()
