"""`make run`'s embedded stack on tansu: the one place the suite still runs the tansu broker.

Everything else runs on Apache Kafka (tests/conftest.py); this test proves that the pip-only
quick start works: the stack starts, the demo's events reach /kpis, Ctrl-C stops it all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.embedded import free_port
from tests.conftest import require_tansu
from tests.support import get_json, http_get, require_binary, wait_for

pytestmark = pytest.mark.e2e


def test_make_run_stack_starts_on_tansu_shows_the_demo_in_kpis_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """`python -m stream stack`: ready, demo events counted in /kpis, SIGINT ends it and its worker."""
    require_tansu()
    require_binary("redis-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCACY_")}
    env.update(ADVOCACY_WEB_PORT=str(port), ADVOCACY_LOG_LEVEL="WARNING")
    log = tmp_path / "stack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stream", "stack"], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        wait_for(lambda: proc.poll() is None and http_get(url + "/health", timeout=2)[0] == 200, 90,
                 what=f"the stack's worker ready (log {log})")
        ready = time.monotonic() - started

        def counted() -> int:
            rows = get_json(url + "/kpis?window=1h")["advocacy_actions_overall"]
            return int(rows[0]["actions"])

        actions = wait_for(counted, 120, interval=1.0, what="demo events in /kpis")
        print(f"stack ready in {ready:.1f} s; {actions} advocacy actions in the last hour "
              f"{time.monotonic() - started:.1f} s after start")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, f"exit {code}; log {log}"
    with pytest.raises(OSError):
        http_get(url + "/health", timeout=2)
