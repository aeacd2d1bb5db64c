"""Kafka down mid-run: /health says so, and the worker recovers with exact numbers.

The test's own Apache Kafka node is SIGKILLed and started again on the same ports with the
same data, as after a crash of the broker's process. Kafka is out for 10-15 s: a restarted
node registers only once the controller has let its old session expire
(broker.session.timeout.ms, 9 s by default).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream.kafka_server import KafkaCluster
from tests.conftest import Namespace, require_kafka
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build
from tests.support import http_get, produce, strip, wait_for

pytestmark = pytest.mark.e2e


def test_kafka_down_mid_run_is_reported_and_recovered_from(namespace: Namespace, tmp_path: Path) -> None:
    """The broker SIGKILLed and restarted: /health answers 503 naming Kafka meanwhile, then the worker
    resumes exactly."""
    require_kafka()
    with KafkaCluster(tmp_path / "kafka") as cluster:
        node = cluster.nodes[0]
        bootstrap = cluster.bootstrap
        scenario = build(time.time(), namespace.topics, seed=61, customers=30)
        messages = scenario.messages()
        half = len(messages) // 2
        worker = namespace.worker(tmp_path, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=bootstrap).start().wait_ready()
        try:
            produce(bootstrap, messages[:half])
            time.sleep(2)
            node.kill()
            down_at = time.monotonic()

            def kafka_down() -> bool:
                status, body = http_get(worker.url + "/health")
                return status == 503 and b"kafka unreachable" in body

            wait_for(kafka_down, 20, what="/health to report Kafka unreachable")
            reported = time.monotonic() - down_at
            node.start()
            cluster.wait_brokers()
            up_at = time.monotonic()
            assert up_at - down_at >= 9, "the outage was too short to prove anything"
            worker.wait_ready(60)
            ready = time.monotonic() - up_at
            produce(bootstrap, messages[half:])
            expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
            wait_for(lambda: strip(worker.kpis()) == expected, 90, what="exact kpis after the outage")
            print(f"{len(messages)} messages, half before the kill; /health 503 {reported:.1f} s after the kill; "
                  f"Kafka out {up_at - down_at:.1f} s; worker ready {ready:.1f} s after it was back; "
                  f"exact {time.monotonic() - up_at:.1f} s after")
        finally:
            worker.stop()
        assert "kafka unreachable" in worker.log.read_text()
