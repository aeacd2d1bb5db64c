"""Scenario: the state on a real Redis Cluster, three masters and three replicas (issue 13).

The state is split into shards, each under one hash tag, so each shard lives on one
master. A master that dies is replaced by its replica, possibly without its latest
writes: for the workers that is a shard that lost writes, read again from its own
positions. A master that dies with its replica leaves the cluster down: the workers say
so on /health, hold their commits, and carry on when it is back.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from stream.redis_cluster import RedisClusterServers
from stream.shards import Shard
from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import PacedStream, alive, converge, env_int, log_text, publish
from tests.support import Worker, http_get, wait_for

pytestmark = pytest.mark.e2e

EVENTS = env_int("RELIABILITY_CLUSTER_EVENTS", 3_000)


def _workers(namespace: Namespace, tmp_path: Path, cluster: RedisClusterServers, n: int = 2) -> list[Worker]:
    return [namespace.worker(tmp_path, ADVOCACY_REDIS_URL=cluster.url, ADVOCACY_REDIS_CLUSTER="true").start()
            for _ in range(n)]


def _master_of_shard(cluster: RedisClusterServers, namespace: Namespace, shard: int = 0) -> int:
    """The port of the master serving one of the app's shards."""
    client = RedisCluster(host="127.0.0.1", port=cluster.live()[0])
    try:
        return int(client.get_node_from_key(Shard(namespace.app_id, shard).meta).port)
    finally:
        client.close()


def _committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The consumer group's committed offsets in Kafka."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        finally:
            await admin.close()

    return asyncio.run(run())


def _health(worker: Worker) -> tuple[int, str]:
    status, body = http_get(worker.url + "/health", timeout=5)
    return status, body.decode(errors="replace")


def test_two_workers_on_redis_cluster_end_exact(namespace: Namespace, tmp_path: Path,
                                                redis_cluster: RedisClusterServers) -> None:
    """Two workers, state on three masters with replicas (ADVOCACY_REDIS_CLUSTER=true, 8 shards): every
    event published at once, duplicates included: both workers' /kpis equal the oracle."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    print(f"seed={seed} {bulk.counts()}")
    workers = _workers(namespace, tmp_path, redis_cluster)
    try:
        for worker in workers:
            worker.wait_ready()
        publish(namespace.stack.bootstrap, bulk.wire())
        took = converge(workers, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=120)
        print(f"exact on both workers {took:.1f} s after publishing")
    finally:
        for worker in workers:
            worker.stop()


def test_a_master_killed_mid_stream_is_replaced_by_a_replica_without_its_last_writes_and_ends_exact(
        namespace: Namespace, tmp_path: Path, redis_cluster: RedisClusterServers) -> None:
    """While events flow through two workers, the master of one of the app's shards loses its replica's
    link (the replica paused, the link closed) for 1.5 s of commits, is SIGKILLed, and the replica, resumed,
    is promoted without those writes: the workers find the shards behind and read again what they lack;
    exact /kpis on both workers, no worker restarted, no operator step."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire()
    print(f"seed={seed} {bulk.counts()}")
    workers = _workers(namespace, tmp_path, redis_cluster)
    stream = None
    try:
        for worker in workers:
            worker.wait_ready()
        victim = _master_of_shard(redis_cluster, namespace)
        [replica] = redis_cluster.replicas_of(victim)
        stream = PacedStream(namespace.stack.bootstrap, wire, chunks=20, interval=0.4, held_back=3).start()
        wait_for(lambda: stream is not None and stream.sent >= len(wire) // 3, 60, what="a third published")
        redis_cluster.pause(replica)
        redis_cluster.cut_replicas(victim)
        at_cut = stream.sent
        time.sleep(1.5)  # commits the replica never sees (under the 3 s node timeout: it is not failed itself)
        redis_cluster.kill(victim)
        killed_at, at_kill = time.monotonic(), stream.sent
        redis_cluster.resume(replica)
        redis_cluster.wait_promoted(replica, 60)
        print(f"replica {replica} cut off after {at_cut} messages, master {victim} killed after {at_kill}; "
              f"replica serving {time.monotonic() - killed_at:.1f} s later")
        stream.join()
        took = converge(workers, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        print(f"exact on both workers {took:.1f} s after the last chunk")
        assert all(alive(w) for w in workers), "a worker died"
        assert any("the state lost stored records" in log_text(w) for w in workers), \
            "no shard came back behind: the scenario did not lose writes"
    finally:
        if stream is not None:
            stream.join()
        for worker in workers:
            worker.stop()


def test_a_master_lost_with_its_replica_holds_commits_until_it_returns_then_ends_exact(
        namespace: Namespace, tmp_path: Path, redis_cluster: RedisClusterServers) -> None:
    """The replica of a master holding one of the app's shards is killed, then the master: the cluster is
    down. While it is, both workers answer /health 503 naming Redis, and the group commits nothing in
    Kafka although events keep coming. The master is started again (from its append-only file): both
    workers end exact and ready."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire()
    third = len(wire) // 3
    print(f"seed={seed} {bulk.counts()}")
    workers = _workers(namespace, tmp_path, redis_cluster)
    try:
        for worker in workers:
            worker.wait_ready()
        publish(namespace.stack.bootstrap, wire[:third])
        victim = _master_of_shard(redis_cluster, namespace)
        [replica] = redis_cluster.replicas_of(victim)
        wait_for(lambda: sum(_committed(namespace.stack.bootstrap, namespace.app_id).values()) > 0, 60,
                 what="the first commits")
        redis_cluster.kill(replica)
        redis_cluster.kill(victim)
        wait_for(lambda: all(_health(w)[0] == 503 and "redis unavailable" in _health(w)[1] for w in workers), 60,
                 what="/health 503 on both workers")
        held = _committed(namespace.stack.bootstrap, namespace.app_id)
        publish(namespace.stack.bootstrap, wire[third:2 * third])
        time.sleep(4.0)
        assert _committed(namespace.stack.bootstrap, namespace.app_id) == held, "committed while the state was down"
        assert all(_health(w)[0] == 503 for w in workers)
        assert redis_cluster.info(redis_cluster.live()[0], "cluster")["cluster_state"] == "fail"
        redis_cluster.start_node(victim)
        redis_cluster.wait_ok(60)
        publish(namespace.stack.bootstrap, wire[2 * third:])
        took = converge(workers, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        print(f"exact on both workers {took:.1f} s after the master returned")
        for worker in workers:
            worker.wait_ready(timeout=30)
        assert _committed(namespace.stack.bootstrap, namespace.app_id) != held
    finally:
        for worker in workers:
            worker.stop()
