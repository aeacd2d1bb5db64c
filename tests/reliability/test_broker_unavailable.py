"""Scenario 4: a worker started before its Kafka broker waits, says why, and works once the broker is up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream.kafka_server import KafkaCluster
from tests.conftest import Namespace, require_kafka
from tests.oracle import expected_kpis
from tests.reliability.harness import alive, converge, log_text
from tests.scenario import ATTRIBUTION, WINDOWS, build
from tests.support import http_get, produce, wait_for

pytestmark = pytest.mark.e2e


def test_worker_started_without_a_broker_logs_why_waits_and_then_counts_exactly(
        namespace: Namespace, tmp_path: Path) -> None:
    """No broker at start: 'not reachable' log lines, /health 503 saying why, no exit; broker started on that
    port: ready and exact."""
    require_kafka()
    broker = KafkaCluster(tmp_path / "late-kafka")  # its port is chosen, nothing listens there yet
    bootstrap = broker.bootstrap
    worker = namespace.worker(tmp_path, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=bootstrap).start()
    try:
        started = time.monotonic()
        wait_for(lambda: "not reachable" in log_text(worker), 30, what="a 'not reachable' log line")
        first_line = time.monotonic() - started
        time.sleep(8)  # it keeps waiting, and keeps saying so
        lines = [line for line in log_text(worker).splitlines() if "not reachable" in line]
        assert alive(worker), f"worker exited with {worker.proc and worker.proc.returncode}: {log_text(worker)[-2000:]}"
        assert len(lines) >= 2, lines
        assert bootstrap in lines[-1], f"the log line does not name the bootstrap servers: {lines[-1]}"
        status, body = http_get(worker.url + "/health", timeout=2)
        assert status == 503, (status, body)
        assert b"waiting for kafka" in body, (status, body)  # probes learn why
        assert bootstrap.encode() not in body, body  # but not where it runs: the log says that
        health = f"{status} {body.decode()}"
        print(f"first 'not reachable' line after {first_line:.1f} s; {len(lines)} lines in "
              f"{time.monotonic() - started:.1f} s, last: {lines[-1][:300]}; /health meanwhile: {health}")

        up = time.monotonic()
        broker.start()
        print(f"Apache Kafka up in {time.monotonic() - up:.1f} s")
        worker.wait_ready(timeout=120)
        print(f"ready {time.monotonic() - up:.1f} s after the broker started")
        scenario = build(time.time(), namespace.topics, seed=17, customers=60)
        produce(bootstrap, scenario.messages())
        took = converge([worker], lambda: expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION),
                        timeout=90)
        print(f"exact {took:.1f} s after publishing {len(scenario.messages())} messages")
    finally:
        worker.stop()
        broker.stop()
