"""`make run` as a new user meets it: `python -m stream stack --collapse smb`, for real.

One stack for the module (broker, Redis, worker, demo, Prometheus with the demo rule
profile, Alertmanager): every URL it prints answers and shows what its line says, the
collapsed segment's alert reaches Alertmanager, and Ctrl-C (SIGINT to the whole process
group, as a terminal sends it) stops everything in order, quickly, without error lines.
The demo is smaller than `make run`'s (400 customers, 2 days of history) to keep it quick.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream.embedded import free_port, tansu_path
from tests.support import http_get, require_binary, wait_for

from .observability import ROOT

ALERT_WITHIN = 120.0  # seconds from start; `make run` promises "about two minutes"


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    output: Path
    started: float
    urls: dict[str, str] = field(default_factory=dict)
    amtool: str = ""

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    for binary in ("redis-server", "prometheus", "prometheus-alertmanager", "amtool"):
        require_binary(binary)
    tansu_path()
    output = tmp_path_factory.mktemp("make-run") / "terminal.txt"
    env = dict(os.environ, ADVOCACY_WEB_PORT=str(free_port()))
    with output.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stream", "stack", "--collapse", "smb", "--customers", "400",
                                 "--history-days", "2"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group, as a terminal's foreground job
    result = Run(proc, output, time.monotonic())
    try:
        wait_for(lambda: "Ctrl-C stops everything." in result.text() or proc.poll() is not None, 120,
                 what="make run's URL block")
        assert proc.poll() is None, result.text()
        for name, url in re.findall(r"^  (\w+): +(http://\S+)", result.text(), re.MULTILINE):
            result.urls[name] = url
        amtool = re.search(r"or: (amtool \S+ alert query)", result.text())
        result.amtool = amtool[1] if amtool else ""
        yield result
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_every_printed_url_answers_and_shows_what_its_line_says(run: Run) -> None:
    """page, KPIs, metrics, health, Prometheus's rules, Alertmanager's alerts: each 200, each the right content."""
    assert set(run.urls) == {"page", "KPIs", "metrics", "health", "rules", "alerts"}, run.text()
    expected = {
        "page": lambda body: "<title>Advocacy KPIs</title>" in body,
        "KPIs": lambda body: "advocacy_actions_overall" in json.loads(body),
        "metrics": lambda body: "advocacy_actions_ratio" in body and "advocacy_worker_ready" in body,
        "health": lambda body: json.loads(body)["status"] == "ready",
        "rules": lambda body: "AdvocacyActionsRateLow" in body and "AdvocacyEventsStale" in body,
        "alerts": lambda body: isinstance(json.loads(body), list),
    }
    for name, url in run.urls.items():
        status, body = http_get(url, timeout=10)
        assert status == 200, f"{name}: {url} answered {status}"
        assert expected[name](body.decode()), f"{name}: {url} does not show what it says: {body[:300]!r}"
    assert run.urls["rules"].endswith(("/alerts", "/classic/alerts")), "the rules line names Prometheus's alerts page"
    assert run.amtool, "the amtool command is printed"
    query = subprocess.run(run.amtool.split(), capture_output=True, text=True, timeout=20, check=False)
    assert query.returncode == 0, query.stderr


def test_the_collapsed_segments_alert_reaches_alertmanager_within_two_minutes(run: Run) -> None:
    """Demo rule profile (short `for:`): AdvocacyActionsRateLow{segment="smb"} is in Alertmanager in time."""

    def arrived() -> bool:
        status, body = http_get(run.urls["alerts"], timeout=5)
        return status == 200 and any(
            a["labels"].get("alertname") == "AdvocacyActionsRateLow" and a["labels"].get("segment") == "smb"
            for a in json.loads(body))

    wait_for(arrived, max(1.0, ALERT_WITHIN - (time.monotonic() - run.started)), interval=1.0,
             what="AdvocacyActionsRateLow{segment=smb} in Alertmanager")
    print(f"alert in Alertmanager {time.monotonic() - run.started:.0f} s after start")
    assert "history backfilled; now live" in run.text()


def _children(pid: int) -> dict[str, int]:
    """Role -> pid of the stack's child processes."""
    roles = {"tansu": "broker", "redis-server": "redis", "stream worker": "worker", "stream demo": "demo",
             "alertmanager": "alertmanager", "prometheus": "prometheus"}
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid != pid:
            continue
        for needle, role in roles.items():  # "alertmanager" before "prometheus": its binary name has both
            if needle in cmdline:
                out[role] = int(entry.name)
                break
    return out


def test_ctrl_c_stops_demo_worker_observability_then_state_quickly_and_quietly(run: Run) -> None:
    """SIGINT to the process group: demo, worker, Prometheus + Alertmanager, Redis + broker, in that order."""
    children = _children(run.proc.pid)
    assert set(children) == {"broker", "redis", "worker", "demo", "alertmanager", "prometheus"}, children
    before = len(run.text())
    sent = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)
    gone: dict[str, float] = {}
    while len(gone) < len(children) and time.monotonic() - sent < 40:
        now = time.monotonic() - sent  # one time per look: exits seen in the same look tie
        for role, pid in children.items():
            if role not in gone and _zombie(pid):
                gone.setdefault(role, now)
        time.sleep(0.02)
    run.proc.wait(timeout=40)
    took = time.monotonic() - sent
    assert len(gone) == len(children), f"still running: {set(children) - set(gone)}"
    assert gone["demo"] <= gone["worker"] <= min(gone["prometheus"], gone["alertmanager"])
    assert max(gone["prometheus"], gone["alertmanager"]) <= min(gone["redis"], gone["broker"])
    assert took < 20, f"Ctrl-C took {took:.1f} s"
    assert run.proc.returncode == 0
    after = run.text()[before:]
    assert not re.search(r"error|traceback|unable connect", after, re.IGNORECASE), after
    log = Path(re.search(r"logs:\s+(\S+)", run.text())[1]) / "worker.log"  # type: ignore[index]
    stopping = log.read_text(errors="replace").splitlines()
    assert not [line for line in stopping if '"level": "error"' in line or "Unable connect" in line]
    print(f"stopped in {took:.1f} s: " + ", ".join(f"{r} {t:.2f}" for r, t in sorted(gone.items(), key=lambda x: x[1])))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
