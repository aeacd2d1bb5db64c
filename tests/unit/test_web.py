"""The endpoints' bounded work: one shared computation at a time, at most once per interval;
a cap on requests in progress; nosniff everywhere; /health reasons without addresses."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from stream.health import Health
from stream.kpi import Totals, Window
from stream.metrics import Metrics
from stream.web import Coalesced, Snapshot, Timed, accepts_gzip, middlewares


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """A computation that waits for ``release`` and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.runs += 1
        await self.release.wait()
        return self.runs


async def test_many_concurrent_callers_share_one_computation() -> None:
    """200 callers at once: one computation, and every caller gets its result."""
    clock, reads = Clock(), Reads()
    shared = Coalesced(reads, 1.0, clock)
    callers = [asyncio.ensure_future(shared.get()) for _ in range(200)]
    await asyncio.sleep(0)
    reads.release.set()
    assert await asyncio.gather(*callers) == [1] * 200
    assert reads.runs == 1


async def test_a_result_is_served_for_a_second_then_computed_again_while_the_latest_is_served() -> None:
    """Within the interval: no computation. After it: one new computation; callers meanwhile get the
    latest result (at most twice the interval old) instead of waiting."""
    clock, reads = Clock(), Reads()
    reads.release.set()
    shared = Coalesced(reads, 1.0, clock)
    assert await shared.get() == 1
    clock.now += 0.99
    assert [await shared.get() for _ in range(50)] == [1] * 50
    assert reads.runs == 1
    reads.release.clear()
    clock.now += 0.02  # 1.01 s after the first computation started
    assert await shared.get() == 1  # the latest, while the new one runs
    assert [await shared.get() for _ in range(50)] == [1] * 50
    await asyncio.sleep(0)
    assert reads.runs == 2  # one new computation, whatever the number of callers
    reads.release.set()
    await asyncio.sleep(0)
    assert await shared.get() == 2


async def test_under_steady_demand_nobody_waits_even_for_a_slow_computation() -> None:
    """A computation that outlasts the interval: callers that keep coming get the latest result
    meanwhile, whatever its age, and only one computation runs."""
    clock, reads = Clock(), Reads()
    reads.release.set()
    shared = Coalesced(reads, 1.0, clock)
    assert await shared.get() == 1
    reads.release.clear()
    clock.now += 1.5
    assert await shared.get() == 1  # starts the second computation
    for _ in range(10):
        clock.now += 1.0  # the computation takes 10 s
        assert await shared.get() == 1
    await asyncio.sleep(0)
    assert reads.runs == 2
    reads.release.set()
    await asyncio.sleep(0)
    clock.now += 0.1
    assert await shared.get() == 2


async def test_a_costly_computation_is_spaced_to_take_at_most_its_share_of_the_loop() -> None:
    """A computation that keeps the loop 60 ms and waits 200 ms (Redis, other tasks): with a 5% share
    the next one starts no sooner than 1.2 s after; the waiting does not count."""
    clock = Clock()

    async def costly() -> float:
        time.sleep(0.06)  # noqa: ASYNC251 - the loop's own time: parsing replies, building bodies
        await asyncio.sleep(0.2)  # waiting
        return clock.now

    behind = False
    shared = Coalesced(costly, 1.0, clock, max_share=lambda: 0.01 if behind else 0.05)
    first = await shared.get()
    assert 0.06 <= shared.took < 0.1, shared.took
    assert shared.spacing == pytest.approx(shared.took / 0.05)
    clock.now += 1.1  # past the interval, not past the spacing
    assert await shared.get() == first and shared.runs == 1
    behind = True  # the worker has a backlog: a fifth of the share
    clock.now += 0.2
    assert shared.spacing == pytest.approx(shared.took / 0.01)
    assert await shared.get() == first and shared.runs == 1
    behind = False
    assert await shared.get() == first  # served while the next one runs
    await asyncio.sleep(0)
    assert shared.runs == 2


async def test_timed_passes_results_errors_and_cancellation_through() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("x")

    with pytest.raises(ValueError):
        await Timed(fails())
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(Timed(waits()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_result_older_than_twice_the_interval_is_not_served() -> None:
    """Nobody asked for a while: the caller waits for the new result rather than get an old one."""
    clock, reads = Clock(), Reads()
    reads.release.set()
    shared = Coalesced(reads, 1.0, clock)
    assert await shared.get() == 1
    clock.now += 15
    assert await shared.get() == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_computation() -> None:
    clock, reads = Clock(), Reads()
    shared = Coalesced(reads, 1.0, clock)
    first = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0)
    first.cancel()
    second = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0)
    reads.release.set()
    assert await second == 1
    assert reads.runs == 1


async def test_a_failed_computation_fails_its_callers_and_the_next_caller_tries_again() -> None:
    clock = Clock()
    outcomes = iter([RuntimeError("boom"), 7])

    async def compute() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = Coalesced(compute, 1.0, clock)
    with pytest.raises(RuntimeError):
        await shared.get()
    assert await shared.get() == 7


async def _served(max_requests: int) -> tuple[TestClient[web.Request, web.Application], asyncio.Event, Metrics]:
    release = asyncio.Event()
    metrics = Metrics(CollectorRegistry())

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"ok": True})

    app = web.Application(middlewares=middlewares(metrics, max_requests))
    app.router.add_get("/kpis", slow)
    app.router.add_get("/health", slow)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, release, metrics


async def test_requests_over_the_cap_are_refused_at_once_with_retry_after_and_counted() -> None:
    """Cap 3: 3 requests in progress; 5 more get 503 with Retry-After at once; /health is never refused;
    once the first ones finish, requests are served again."""
    client, release, metrics = await _served(3)
    try:
        held = [asyncio.ensure_future(client.get("/kpis")) for _ in range(3)]
        await asyncio.sleep(0.2)
        refused = [await client.get("/kpis") for _ in range(5)]
        assert [r.status for r in refused] == [503] * 5
        assert all(r.headers["Retry-After"] == "1" for r in refused)
        assert "error" in json.loads(await refused[0].read())
        health = asyncio.ensure_future(client.get("/health"))
        await asyncio.sleep(0.1)
        release.set()
        assert [(await r).status for r in held] == [200, 200, 200]
        assert (await health).status == 200
        assert (await client.get("/kpis")).status == 200
        assert metrics.http_rejected._value.get() == 5
    finally:
        await client.close()


async def test_every_response_carries_nosniff_errors_included() -> None:
    client, release, _ = await _served(3)
    release.set()
    try:
        for path, status in (("/kpis", 200), ("/nowhere", 404), ("/router/", 404), ("/health", 200)):
            response = await client.get(path)
            assert response.status == status, path
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
    finally:
        await client.close()


def test_health_reasons_name_no_address_and_no_exception_text() -> None:
    """Kafka and Redis failures keep their details for the log; /health says what is wrong in fixed words."""
    health = Health(started=True, rebalancing=False)
    health.kafka_error = "kafka unreachable at kafka-0.internal:9092: KafkaConnectionError"
    health.redis(False, "redis unavailable: ConnectionError (Error 111 connecting to redis.internal:6379)")
    health.crashed = ["review-agent"]
    reasons = health.reasons()
    assert reasons == ["agent crashed: review-agent", "kafka unreachable", "redis unavailable"]
    health.redis(False, "redis error: NOSCRIPT No matching script at 10.0.0.7", unavailable=False)
    assert health.reasons()[-1] == "redis error (details in the worker's log)"
    text = " ".join(health.reasons())
    for leak in ("internal", "9092", "6379", "10.0.0.7", "Error", "NOSCRIPT"):
        assert leak not in text
    health.redis(True)
    health.kafka_error, health.crashed = "", []
    assert health.reasons() == []


@pytest.mark.parametrize(("header", "accepted"), [
    ("gzip, deflate, br", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("*", True),
    ("gzip;q=0", False), ("gzip; q=0.0", False), ("deflate, br", False), ("", False), (None, False),
    ("identity", False), ("gzip;q=oops", False),
])
def test_gzip_is_used_only_when_the_client_accepts_it(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


def test_a_snapshot_builds_each_body_once_and_its_gzip_decompresses_to_it() -> None:
    windows = (Window("1h", 3600), Window("1d", 86400))
    totals = Totals({("smb", "1h"): 3, ("smb", "1d"): 5}, {"smb": 10}, {("billing", "1d"): 4}, {("billing", "1d"): 1})
    snapshot = Snapshot(1_800_000_000.0, totals, "", b"# metrics\n" * 200, windows)
    body = snapshot.kpis(None)
    assert snapshot.kpis(None) is body  # built once
    assert json.loads(body)["generated_at"] == "2027-01-15T08:00:00Z"
    assert gzip.decompress(snapshot.kpis(None, gzipped=True)) == body
    assert snapshot.kpis(None, gzipped=True) is snapshot.kpis(None, gzipped=True)
    one = json.loads(snapshot.kpis("1h"))
    assert {row["window"] for key in ("advocacy_actions", "advocacy_actions_overall") for row in one[key]} == {"1h"}
    assert gzip.decompress(snapshot.metrics_body(gzipped=True)) == snapshot.metrics_body() == b"# metrics\n" * 200
    assert len(snapshot.metrics_body(gzipped=True)) < len(snapshot.metrics_body()) / 10
