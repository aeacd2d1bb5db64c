"""The worker's timers: each named and guarded; /health's answer is computed by its one owner."""

from __future__ import annotations

import asyncio
import json
import logging

import faust
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream.app import create_app
from stream.config import load_settings
from stream.health import Health
from stream.metrics import Metrics
from stream.timers import BLOCKING, HOUSEKEEPING, every, guarded


def _failures(metrics: Metrics, timer: str) -> float | None:
    return metrics.registry.get_sample_value("advocacy_timer_failures_total", {"timer": timer})


async def test_a_failing_timer_is_logged_counted_and_shown_until_it_runs_cleanly(
        caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception in a job does not escape its timer: the log names the timer, the
    counter counts it, /health is not ready (a blocking job) or degraded (housekeeping) until the
    job's next clean run."""
    health, metrics = Health(started=True, joined=True), Metrics(CollectorRegistry())
    health.redis(ok=True)
    fail = True

    async def job() -> None:
        if fail:
            raise KeyError("a bug")

    lag, janitor = guarded("lag", job, health, metrics), guarded("janitor", job, health, metrics, blocking=False)
    with caplog.at_level(logging.ERROR, "stream.timers"):
        await lag()
        await lag()
        await janitor()
    assert [r.getMessage() for r in caplog.records] == [
        "timer lag failed; it runs again in its next period", "timer lag failed; it runs again in its next period",
        "timer janitor failed; it runs again in its next period"]
    assert caplog.records[0].exc_info is not None
    assert caplog.records[0].exc_info[0] is KeyError
    assert _failures(metrics, "lag") == 2
    assert _failures(metrics, "janitor") == 1
    status, body = health.report()
    assert status == 503
    assert body["reasons"] == ["the lag check failed (details in the worker's log)"]
    assert body["warnings"] == ["the janitor check failed (details in the worker's log)"]
    fail = False
    await lag()
    status, body = health.report()
    assert status == 200
    assert body["status"] == "degraded"
    await janitor()
    assert health.report() == (200, {"status": "ready", "reasons": [], "lag": 0})
    assert _failures(metrics, "lag") == 2  # counted, never reset


async def test_a_faust_timer_keeps_running_after_its_job_raises() -> None:
    """On a real Faust app's timer loop, a job that raises (not a StateError) runs again next period:
    the timer task does not end (unguarded, the exception ends it, and Faust stops the worker)."""
    app = faust.App("timer-test", broker="kafka://127.0.0.1:1", store="memory://")
    health, metrics = Health(), Metrics(CollectorRegistry())
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError("boom")

    every(app, 0.01, "boom", job, health, metrics)
    timer = app._app_tasks[-1]
    assert timer.__name__ == "boom"
    task = asyncio.ensure_future(timer())
    try:
        for _ in range(500):
            if runs >= 4:
                break
            await asyncio.sleep(0.01)
        assert not task.done(), task.exception() if task.done() else None
        assert runs >= 4
        assert _failures(metrics, "boom") == 2
        assert health.failing == {}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_unguarded_the_same_job_ends_the_faust_timer() -> None:
    """The control for the test above: Faust's own timer ends with the job's exception."""
    app = faust.App("timer-test-raw", broker="kafka://127.0.0.1:1", store="memory://")

    async def job() -> None:
        raise RuntimeError("boom")

    app.timer(0.01, name="raw")(job)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(app._app_tasks[-1](), 5)


def test_the_worker_registers_one_named_timer_per_job_and_reads_readiness_when_scraped() -> None:
    """create_app: a timer per job, each with a zero failure series; the ready and redis gauges
    are the health's facts at scrape time (no timer writes them)."""
    registry = CollectorRegistry()
    app = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), registry)
    names = [task.__name__ for task in app._app_tasks]
    for name in (*BLOCKING, *HOUSEKEEPING):
        assert names.count(name) == 1, names
        assert registry.get_sample_value("advocacy_timer_failures_total", {"timer": name}) == 0
    health = app.services.health
    assert registry.get_sample_value("advocacy_worker_ready") == 0  # starting
    health.started = health.joined = True
    health.redis(ok=True)
    assert registry.get_sample_value("advocacy_worker_ready") == 1
    assert registry.get_sample_value("advocacy_redis_up") == 1
    health.timer_failed("gaps", True)
    assert registry.get_sample_value("advocacy_worker_ready") == 0
    assert b"advocacy_worker_ready 0.0" in generate_latest(registry)
    health.timer_ran("gaps")
    app.rebalancing = True  # Faust's flag: revoked, not yet resumed
    assert health.reasons() == ["consumer group rebalancing"]
    app.rebalancing = False
    status, body = health.report()
    assert (status, json.loads(json.dumps(body))["status"]) == (200, "ready")
