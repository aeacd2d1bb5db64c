"""Scenario 1: a worker SIGKILLed again and again during a stream of 50k events still counts each event once."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.conftest import Namespace
from tests.reliability.bulk import ATTRIBUTION, WINDOWS, generate
from tests.reliability.fast_oracle import expected
from tests.reliability.harness import PacedStream, converge, env_int, metric_sum

pytestmark = pytest.mark.e2e

EVENTS = env_int("RELIABILITY_EVENTS", 50_000)
KILLS = env_int("RELIABILITY_KILLS", 6)


def test_crash_loop_of_sigkills_during_a_long_stream_ends_with_exact_kpis(namespace: Namespace, tmp_path: Path) -> None:
    """SIGKILL at seeded random moments (>= 5 times) while events flow; the last worker's /kpis equal the oracle."""
    assert KILLS >= 1
    seed = env_int("RELIABILITY_SEED", random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    bulk = generate(time.time(), namespace.topics, seed, events=EVENTS)
    wire = bulk.wire()
    print(f"seed={seed} (rerun with RELIABILITY_SEED={seed}) {bulk.counts()} kills={KILLS}")
    # small batches: many commits, so kills land between a batch's store and its commit
    env = {"ADVOCACY_BATCH_MAX_EVENTS": "200"}
    started = time.monotonic()
    worker = namespace.worker(tmp_path, **env).start().wait_ready()
    # ~100 chunks over about a minute; the last 10 wait until the kills are over, so the stream
    # is still flowing at every kill however long the restarts take
    stream = PacedStream(namespace.stack.bootstrap, wire, chunks=100, interval=0.7, held_back=10).start()
    kills = []
    try:
        for n in range(KILLS):
            delay = rng.uniform(0.3, 4.0)
            time.sleep(delay)
            assert stream.flowing, f"kill {n + 1} came after the stream ended"
            try:
                done = int(metric_sum(worker, "advocacy_events_processed_total"))
            except (OSError, AssertionError):
                done = -1
            worker.kill()
            published = stream.sent
            kills.append((round(delay, 2), published, done))
            restart = time.monotonic()
            worker = namespace.worker(tmp_path, **env).start().wait_ready(timeout=120)
            print(f"kill {n + 1}: {delay:.2f} s after ready, {published} messages published, "
                  f"killed worker had handled {done}; restarted and ready in {time.monotonic() - restart:.1f} s")
        stream.join()
        took = converge([worker], lambda: expected(bulk.valid(), time.time(), WINDOWS, ATTRIBUTION), timeout=240)
        handled = int(metric_sum(worker, "advocacy_events_processed_total"))
        replays = sum(max(0, k[2]) for k in kills) + handled - len(wire)
    finally:
        stream.join()
        worker.stop()
    print(f"{len(kills)} kills (delay, published, handled) {kills}; exact {took:.1f} s after the last chunk; "
          f"messages={len(wire)}; "
          f"handled by all incarnations >= {len(wire) + replays} (replayed >= {replays}); "
          f"{time.monotonic() - started:.1f} s in all")
    assert len(kills) == KILLS
    assert sum(1 for _, _, done in kills if done > 0) >= 1, "no kill interrupted a worker that was processing"
