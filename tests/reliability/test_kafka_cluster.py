"""Scenario 6: a three-broker Apache Kafka cluster loses brokers while events flow.

KRaft, three nodes (each a controller and a broker), replication factor 3 and
min.insync.replicas=2. The broker leading the most partitions is SIGKILLed and started
again; once every partition is fully replicated again, another broker is stopped with a
controlled shutdown (SIGTERM) and stays down. Two workers run throughout and are never
restarted; each ends with /kpis equal to the oracle, and /health never blames Kafka while
a quorum of brokers is up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stream.kafka_node import KafkaNode
from stream.kafka_server import KafkaCluster
from tests.conftest import Namespace, require_kafka
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import HealthWatch, PacedStream, alive, converge, env_int, log_text, metric_sum
from tests.support import get_json, wait_for

pytestmark = pytest.mark.e2e

EVENTS = env_int("RELIABILITY_CLUSTER_EVENTS", 20_000)


async def _describe(bootstrap: str) -> list[dict[str, Any]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        return await admin.describe_topics()  # type: ignore[no-any-return]
    finally:
        await admin.close()


def partitions(cluster: KafkaCluster) -> list[dict[str, Any]]:
    """Every partition of every topic, as the running brokers describe it."""
    from aiokafka.errors import KafkaError

    for _ in range(20):
        try:  # the admin client may pick a broker that has just gone
            return [p for t in asyncio.run(_describe(cluster.bootstrap_of_running())) for p in t["partitions"]]
        except KafkaError:
            time.sleep(0.5)
    raise AssertionError("no running broker described the topics")


def leaders(cluster: KafkaCluster) -> Counter[int]:
    return Counter(p["leader"] for p in partitions(cluster) if p["leader"] >= 0)


def fully_replicated(cluster: KafkaCluster) -> bool:
    parts = partitions(cluster)
    return bool(parts) and all(len(p["isr"]) == len(p["replicas"]) and p["leader"] >= 0 for p in parts)


def test_three_broker_cluster_survives_a_killed_leader_and_a_controlled_shutdown_with_exact_kpis(
        namespace: Namespace, tmp_path: Path) -> None:
    """SIGKILL the broker leading most partitions and restart it, then SIGTERM another: workers recover on
    their own, /health does not blame Kafka while a quorum is up, every /kpis equals the oracle."""
    require_kafka()
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire()
    print(f"seed={seed} {bulk.counts()}")
    started = time.monotonic()
    cluster = KafkaCluster(tmp_path / "cluster", size=3, heap_mb=384).start()
    print(f"three Kafka nodes up in {time.monotonic() - started:.1f} s")
    env = {"ADVOCACY_KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap, "ADVOCACY_TOPIC_REPLICATION": "3",
           "ADVOCACY_BATCH_MAX_EVENTS": "200"}
    workers = [namespace.worker(tmp_path, **env).start() for _ in range(2)]
    stream = watch = None
    steps: list[tuple[str, int, float]] = []

    def step(what: str) -> None:
        assert stream is not None, f"{what} came after the stream ended"
        assert stream.flowing, f"{what} came after the stream ended"
        steps.append((what, stream.sent, round(time.monotonic() - started, 1)))

    try:
        for worker in workers:
            worker.wait_ready(120)
        replication = {p["topic"]: len(p0["replicas"]) for p in asyncio.run(_describe(cluster.bootstrap))
                       for p0 in p["partitions"][:1]}
        assert all(replication[t] == 3 for t in namespace.topics.values()), replication
        watch = HealthWatch(workers).start()
        stream = PacedStream(cluster.bootstrap, wire, chunks=60, interval=0.7, held_back=6, acks="all").start()

        time.sleep(rng.uniform(2.0, 4.0))
        led = leaders(cluster)
        victim: KafkaNode = cluster.node(led.most_common(1)[0][0])
        step(f"SIGKILL node {victim.node_id} (leads {led[victim.node_id]} of {sum(led.values())} partitions)")
        victim.kill()
        wait_for(lambda: victim.node_id not in leaders(cluster), 60, interval=0.5,
                 what="leadership to move off the killed broker")
        step(f"leaders moved off node {victim.node_id}")
        victim.start()
        cluster.wait_brokers(120)
        wait_for(lambda: fully_replicated(cluster), 120, interval=0.5, what="every partition fully replicated")
        step(f"node {victim.node_id} back, all partitions fully replicated")

        led = leaders(cluster)
        other = max((n for n in cluster.nodes if n is not victim), key=lambda n: led[n.node_id])
        step(f"SIGTERM node {other.node_id} (leads {led[other.node_id]} partitions)")
        shutdown = time.monotonic()
        other.stop()
        assert other.proc is not None
        assert other.proc.returncode in (0, 143), other.proc.returncode
        step(f"node {other.node_id} stopped in {time.monotonic() - shutdown:.1f} s (exit {other.proc.returncode})")
        assert other.node_id not in leaders(cluster), "a stopped broker still leads partitions"
        handled_before = [metric_sum(w, "advocacy_events_processed_total") for w in workers]
        stream.join(180)
        took = converge(workers, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        handled_after = [metric_sum(w, "advocacy_events_processed_total") for w in workers]
        for worker in workers:
            assert alive(worker), f"worker exited: {log_text(worker)[-2000:]}"
            body = get_json(worker.url + "/health")
            assert body["status"] == "ready", body
    finally:
        if watch is not None:
            watch.stop()
        if stream is not None:
            stream.join(180)
        for worker in workers:
            worker.stop()
        cluster.stop()
    bad = watch.bad if watch is not None else []
    reasons = Counter(body for _, _, _, body in bad)
    print(f"steps (what, messages published, s): {steps}; exact on both workers {took:.1f} s after the last chunk; "
          f"events handled per worker {handled_after} ({handled_before} before the controlled shutdown); "
          f"/health: {watch.polls if watch else 0} polls, {len(bad)} not ready: {dict(reasons)}; "
          f"{time.monotonic() - started:.1f} s in all")
    assert sum(1 for before, after in zip(handled_before, handled_after, strict=True) if after > before) >= 1, \
        "no worker handled events after the controlled shutdown"
    blamed = [b for b in bad if "kafka unreachable" in b[3]]
    assert not blamed, f"/health blamed Kafka while a quorum of brokers was up: {blamed[:3]}"
