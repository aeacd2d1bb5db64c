"""Replay: rebuild the state from retained topics into a new app id, beside live workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Namespace
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build
from tests.support import http_get, produce, strip, wait_for

pytestmark = pytest.mark.e2e


def test_replay_beside_a_live_worker_equals_a_fresh_run_and_workers_continue_from_it(
        namespace: Namespace, tmp_path: Path) -> None:
    """A replay into a new app id, while a live worker runs, gives the oracle's numbers; a worker
    started on the new id answers them without re-reading the topics."""
    scenario = build(time.time(), namespace.topics, seed=53, customers=40)
    live = namespace.worker(tmp_path).start().wait_ready()
    try:
        produce(namespace.stack.bootstrap, scenario.messages())
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        wait_for(lambda: strip(live.kpis()) == expected, 60, what="live worker exact")
        into = namespace.app_id + "-rebuilt"
        result = subprocess.run([sys.executable, "-m", "stream", "replay", "--into", into, "--idle-seconds", "2"],
                                env=namespace.env, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        out = result.stdout.decode()
        assert f"replayed {len(scenario.messages())} messages" in out, out
        assert f"{len(scenario.bad)} invalid" in out, out
        rebuilt = namespace.worker(tmp_path, ADVOCACY_APP_ID=into).start().wait_ready()
        try:
            assert strip(rebuilt.kpis()) == expected
            assert strip(live.kpis()) == expected  # the live namespace was not touched
            time.sleep(3)  # give the new worker time to (wrongly) re-read anything
            _, body = http_get(rebuilt.url + "/metrics")
            processed = sum(float(line.split()[-1]) for line in body.decode().splitlines()
                            if line.startswith("advocacy_events_processed_total"))
            assert processed == 0, "the worker re-read what the replay had committed"
        finally:
            rebuilt.stop()
        again = subprocess.run([sys.executable, "-m", "stream", "replay", "--into", into],
                               env=namespace.env, capture_output=True, timeout=60, check=False)
        assert again.returncode == 2
        assert b"already has state" in again.stderr
    finally:
        live.stop()
