"""Scenario 2: three workers, and while events flow one is SIGKILLed, one added, one restarted."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import PacedStream, alive, converge, env_int, metric_sum
from tests.support import Worker, get_json

pytestmark = pytest.mark.e2e

EVENTS = env_int("RELIABILITY_REBALANCE_EVENTS", 20_000)


def _ready_all(workers: list[Worker], timeout: float = 120) -> None:
    for worker in workers:
        worker.wait_ready(timeout)


def test_kill_add_and_restart_workers_mid_stream_every_live_worker_reports_exact_kpis(
        namespace: Namespace, tmp_path: Path) -> None:
    """Kill one of three workers, add one, SIGTERM-restart one, all while events flow; every live /kpis is exact."""
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire()
    print(f"seed={seed} {bulk.counts()}")
    env = {"ADVOCACY_BATCH_MAX_EVENTS": "200"}
    started = time.monotonic()
    first, second, third = (namespace.worker(tmp_path, **env).start() for _ in range(3))
    workers = [first, second, third]
    stream = None
    try:
        _ready_all(workers)
        print(f"three workers ready in {time.monotonic() - started:.1f} s")
        stream = PacedStream(namespace.stack.bootstrap, wire, chunks=60, interval=0.7, held_back=6).start()
        steps = []

        def step(what: str) -> None:
            assert stream is not None, f"{what} came after the stream ended"
            assert stream.flowing, f"{what} came after the stream ended"
            steps.append((what, stream.sent, round(time.monotonic() - started, 1)))

        time.sleep(rng.uniform(1.0, 3.0))
        step("SIGKILL worker 1")
        first.kill()
        time.sleep(rng.uniform(0.5, 2.0))
        step("add worker 4")
        fourth = namespace.worker(tmp_path, **env).start()
        workers.append(fourth)
        _ready_all([second, third, fourth])
        time.sleep(rng.uniform(0.5, 2.0))
        step("SIGTERM worker 2")
        second.stop()
        assert second.proc is not None, f"SIGTERM exit {second.proc.returncode}"
        assert second.proc.returncode == 0, f"SIGTERM exit {second.proc.returncode}"
        step("start worker 2 again")
        second_again = namespace.worker(tmp_path, **env).start()
        workers.append(second_again)
        live = [third, fourth, second_again]
        _ready_all(live)
        step("all ready")
        stream.join()
        took = converge(live, lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=180)
        for worker in live:
            body = get_json(worker.url + "/health")
            assert body["status"] == "ready", body
            assert alive(worker)
        shares = [int(metric_sum(w, "advocacy_events_processed_total")) for w in live]
    finally:
        if stream is not None:
            stream.join()
        for worker in workers:
            worker.stop()
    print(f"steps (what, messages published, s): {steps}; exact on all 3 live workers {took:.1f} s after the "
          f"last chunk; messages handled per live worker since its start {shares}; "
          f"{time.monotonic() - started:.1f} s in all")
    assert sum(1 for n in shares if n > 0) >= 2, f"the work was not shared: {shares}"
