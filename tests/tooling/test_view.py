"""``python -m stream kpis``: a real worker's /kpis as terminal tables, bands in colour."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from stream.config import Settings
from stream.embedded import free_port
from stream.producer import Producer
from stream.view import render
from tests.conftest import Namespace
from tests.support import Worker, rows, wait_for

ROOT = Path(__file__).parents[2]
GREEN, YELLOW, RED = r"\x1b\[[0-9;]*32m", r"\x1b\[[0-9;]*33m", r"\x1b\[[0-9;]*31m"


def _env(namespace: Namespace, **extra: str) -> dict[str, str]:
    """The namespace's environment, able to import stream from outside the repo (see _isolated)."""
    return dict(namespace.env, PYTHONPATH=str(ROOT), **extra)


def _isolated(namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    """A worker started in tmp_path, so that its Faust data directory is not left in the repo."""
    monkeypatch.chdir(tmp_path)
    return namespace.worker(tmp_path, PYTHONPATH=str(ROOT)).start()


def _kpis(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream", "kpis", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def _line(output: str, label: str) -> str:
    [line] = [row for row in output.splitlines() if f" {label} " in row]
    return line


async def _publish(settings: Settings) -> None:
    """Enterprise 4/5 (high), mid_market 3/5 (moderate), smb 1/5 (low); billing 1/1, onboarding 0/1."""
    now = time.time()

    def at(seconds_ago: float) -> datetime:
        return datetime.fromtimestamp(now - seconds_ago, UTC)

    async with Producer(settings=settings) as producer:
        for segment, prefix, actions in (("enterprise", "e", 4), ("mid_market", "m", 3), ("smb", "s", 1)):
            for i in range(1, 6):
                await producer.publish_customer(f"{prefix}-{i}", segment, "active", occurred_at=at(86_400))
            for i in range(1, actions + 1):
                if prefix != "s":
                    await producer.publish_review(f"{prefix}-{i}", "testimonial", occurred_at=at(600))
        await producer.publish_ticket_closed("s-1", "T-1", "billing", occurred_at=at(900))
        await producer.publish_review("s-1", "social", occurred_at=at(600))  # credited to billing
        await producer.publish_ticket_closed("m-5", "T-2", "onboarding", occurred_at=at(900))


def _settled(worker: Worker) -> bool:
    kpis = worker.kpis("1h")
    actions = {segment: row["actions"] for (segment, _), row in rows(kpis, "advocacy_actions", "segment").items()}
    creation = {team: (row["advocates_created"], row["support_interactions"])
                for (team, _), row in rows(kpis, "advocacy_creation", "team").items()}
    return actions == {"enterprise": 4, "mid_market": 3, "smb": 1} and \
        creation == {"billing": (1, 1), "onboarding": (0, 1)} and \
        kpis["advocacy_actions"][0]["customers"] == 5


@pytest.mark.e2e
def test_kpis_view_shows_a_live_workers_segments_teams_and_bands(
        namespace: Namespace, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a real worker: one row per segment and team with rate and band, coloured, and --watch refreshes."""
    worker = _isolated(namespace, tmp_path, monkeypatch)
    try:
        worker.wait_ready()
        asyncio.run(_publish(settings))
        wait_for(lambda: _settled(worker), 60, what="the worker to count the events")

        plain = _kpis("--window", "1h", "--url", worker.url, env=_env(namespace, COLUMNS="120"))
        assert plain.returncode == 0, plain
        out = plain.stdout
        assert "\x1b[" not in out  # not a terminal: no colour codes
        assert re.search(r"enterprise\s.*1h\s.*\b4\b.*\b5\b.*80\.00%.*high", _line(out, "enterprise"))
        assert re.search(r"60\.00%.*moderate", _line(out, "mid_market"))
        assert re.search(r"20\.00%.*low", _line(out, "smb"))
        assert re.search(r"billing\s.*\b1\b.*\b1\b.*100\.00%.*high", _line(out, "billing"))
        assert re.search(r"\b0\.00%.*low", _line(out, "onboarding"))
        overall = [row for row in out.splitlines() if "(overall)" in row]
        assert len(overall) == 2, out
        assert "53.33%" in overall[0], out
        assert "50.00%" in overall[1], out
        assert "7d" not in out  # --window narrows every table

        coloured = _kpis("--window", "1h", "--url", worker.url,
                         env=_env(namespace, FORCE_COLOR="1", TERM="xterm-256color", COLUMNS="120"))
        assert coloured.returncode == 0, coloured
        assert re.search(GREEN + "high", coloured.stdout)
        assert re.search(YELLOW + "moderate", coloured.stdout)
        assert re.search(RED + "low", coloured.stdout)

        every = _kpis("--url", worker.url, env=_env(namespace, COLUMNS="120"))
        assert every.returncode == 0, every
        assert all(f" {w} " in every.stdout for w in ("1h", "1d", "7d", "30d", "90d"))

        watch = subprocess.Popen([sys.executable, "-m", "stream", "kpis", "--watch", "--window", "1h",
                                  "--url", worker.url], env=_env(namespace), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(iter(watch.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        started = time.monotonic()
        wait_for(lambda: sum("KPIs at" in line for line in seen) >= 2, 30, what="two refreshes")
        assert time.monotonic() - started >= 1.5  # the second one came about 2 s after the first
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=15) == 0  # Ctrl-C is the normal way out
        reader.join(timeout=5)
        assert any("enterprise" in line for line in seen)
    finally:
        worker.stop()


@pytest.mark.e2e
def test_kpis_view_explains_an_unknown_window_or_an_unreachable_worker(namespace: Namespace, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown window shows the worker's own message; an unreachable worker one line; both exit 2."""
    down = _kpis("--url", f"http://127.0.0.1:{free_port()}", env=_env(namespace))
    assert down.returncode == 2, down
    assert down.stderr.startswith("error: cannot reach http://127.0.0.1:")
    assert down.stderr.count("\n") == 1
    worker = _isolated(namespace, tmp_path, monkeypatch)
    try:
        worker.wait_ready()
        bad = _kpis("--window", "2y", "--url", worker.url, env=_env(namespace))
        assert bad.returncode == 2, bad
        assert "answered 400: unknown window '2y'; configured: 1h, 1d, 7d, 30d, 90d" in bad.stderr
    finally:
        worker.stop()


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "generated_at": "2026-11-23T14:05:00Z",
        "advocacy_actions": [
            {"segment": "enterprise", "window": "7d", "actions": 9, "customers": 10, "rate": 0.9, "band": "high"},
            {"segment": "unknown", "window": "7d", "actions": 3, "customers": 0, "rate": None, "band": None}],
        "advocacy_actions_overall": [
            {"window": "7d", "actions": 12, "customers": 10, "rate": 1.2, "band": "high"}],
        "advocacy_creation": [],
        "advocacy_creation_overall": [
            {"window": "7d", "advocates_created": 0, "support_interactions": 0, "rate": None,
             "percent": None, "band": None}],
    }
    return {**body, **overrides}


def test_render_shows_undefined_rates_as_a_dash_and_colours_each_band() -> None:
    """No denominator: a dash for rate and band; high is green, moderate yellow, low red."""
    console = Console(file=io.StringIO(), record=True, width=120, force_terminal=True, color_system="standard")
    body = _body()
    body["advocacy_actions"] += [
        {"segment": "mid", "window": "7d", "actions": 7, "customers": 10, "rate": 0.7, "band": "moderate"},
        {"segment": "smb", "window": "7d", "actions": 1, "customers": 10, "rate": 0.1, "band": "low"}]
    console.print(render(body, "http://w:6066"))
    text = console.export_text(clear=False)
    assert re.search(r"unknown\s.*7d\s.*\b3\b.*\b0\b\s.*-\s.*-", _line(text, "unknown")), text
    assert "120.00%" in text  # overall can exceed 100%: more actions than customers
    styled = console.export_text(styles=True)
    assert re.search(GREEN + "high", styled)
    assert re.search(YELLOW + "moderate", styled)
    assert re.search(RED + "low", styled)


def test_render_rounds_percents_down_so_none_crosses_a_band_line() -> None:
    """Issue 11 case 4: 79,996 of 100,000 is moderate and shows as 79.99%, never 80.0%; 59,999 of 100,000
    shows 59.99% (low); percents are the counts' rate x 100 rounded down to two decimals."""
    console = Console(file=io.StringIO(), record=True, width=160, force_terminal=True, color_system="standard")
    body = _body(advocacy_actions=[
        {"segment": "mid", "window": "7d", "actions": 79_996, "customers": 100_000, "rate": 0.79996,
         "band": "moderate"},
        {"segment": "smb", "window": "7d", "actions": 59_999, "customers": 100_000, "rate": 0.59999, "band": "low"},
        {"segment": "ent", "window": "7d", "actions": 2, "customers": 3, "rate": 2 / 3, "band": "moderate"}])
    body["advocacy_creation"] = [
        {"team": "billing", "window": "7d", "advocates_created": 7_999, "support_interactions": 10_000,
         "rate": 0.7999, "percent": 79.99, "band": "moderate"},
        {"team": "tier-2", "window": "7d", "advocates_created": 29, "support_interactions": 100,
         "rate": 0.29, "percent": 29.0, "band": "low"}]
    console.print(render(body, "http://w:6066"))
    text = console.export_text(clear=False)
    assert "79.99%" in _line(text, "mid")
    assert "80" not in _line(text, "mid").split("100000")[-1]
    assert "59.99%" in _line(text, "smb")
    assert "66.66%" in _line(text, "ent")
    assert "79.99%" in _line(text, "billing")
    assert "29.00%" in _line(text, "tier-2")
    assert "120.00%" in text  # the overall row (12 actions / 10 customers) is not capped at 100%
