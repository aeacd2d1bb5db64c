"""Scenario: the state store comes back without its latest writes, or empty (issue 13).

Redis restored from an older snapshot (or a replica promoted before it caught up) is
behind the group's commits; Redis restarted empty has nothing. The state carries its own
positions, so the workers re-read exactly what it lacks, with no operator step.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.embedded import free_port, start_redis, stop
from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import PacedStream, alive, converge, env_int
from tests.support import require_binary, wait_for

pytestmark = pytest.mark.e2e

EVENTS = env_int("RELIABILITY_STATE_LOSS_EVENTS", 6_000)


class Redis:
    """A redis-server of the test's own, without persistence but for the snapshots it takes."""

    def __init__(self, workdir: Path) -> None:
        require_binary("redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.proc = start_redis(self.port, workdir, aof=False)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def snapshot(self) -> Path:
        """BGSAVE, wait for it, and keep a copy of the file."""
        client = self.client()
        before = client.lastsave()
        client.bgsave()
        wait_for(lambda: client.lastsave() != before and client.info("persistence")["rdb_bgsave_in_progress"] == 0,
                 30, what="BGSAVE")
        copy = self.workdir / "snapshot.rdb"
        shutil.copy(self.workdir / "dump.rdb", copy)
        return copy

    def crash_and_restart(self, restore: Path | None) -> None:
        """SIGKILL redis-server; start it again on the same port from ``restore``, or empty."""
        self.proc.kill()
        self.proc.wait()
        dump = self.workdir / "dump.rdb"
        dump.unlink(missing_ok=True)
        if restore is not None:
            shutil.copy(restore, dump)
        self.proc = start_redis(self.port, self.workdir, aof=False)

    def keys(self) -> int:
        return int(self.client().dbsize())


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Redis]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = Redis(workdir)
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.mark.parametrize("restore", ["older snapshot", "empty"])
def test_redis_back_from_an_older_snapshot_or_empty_mid_stream_ends_exact_with_no_operator_step(
        namespace: Namespace, tmp_path: Path, own_redis: Redis, restore: str) -> None:
    """Two workers; while events flow, Redis is snapshotted, keeps taking writes, is SIGKILLed and comes
    back from the snapshot (or empty): both workers' /kpis end equal to the oracle, no worker restarted."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire()
    print(f"seed={seed} {bulk.counts()} restore={restore}")
    workers = [namespace.worker(tmp_path, ADVOCACY_REDIS_URL=own_redis.url).start() for _ in range(2)]
    stream = None
    try:
        for worker in workers:
            worker.wait_ready()
        stream = PacedStream(namespace.stack.bootstrap, wire, chunks=30, interval=0.5, held_back=4).start()
        wait_for(lambda: stream is not None and stream.sent >= len(wire) // 3, 60, what="a third published")
        snapshot = own_redis.snapshot()
        at_snapshot = stream.sent
        wait_for(lambda: stream is not None and stream.sent >= 2 * len(wire) // 3, 60, what="two thirds")
        time.sleep(1.0)  # the workers store what came after the snapshot
        keys_before = own_redis.keys()
        own_redis.crash_and_restart(snapshot if restore == "older snapshot" else None)
        print(f"snapshot after {at_snapshot} messages; Redis killed after {stream.sent} with {keys_before} keys, "
              f"back with {own_redis.keys()} keys")
        stream.join()
        took = converge(workers, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        print(f"exact on both workers {took:.1f} s after the last chunk")
        assert all(alive(w) for w in workers), "a worker died"
    finally:
        if stream is not None:
            stream.join()
        for worker in workers:
            worker.stop()
