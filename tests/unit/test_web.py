"""The endpoints' bounded work: one shared computation at a time, refreshed while polled;
nosniff everywhere (the cap on requests is the front's: test_front.py); /health reasons without addresses."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stream.health import Health
from stream.kpi.totals import Totals
from stream.kpi.windows import Window
from stream.refresh import Refreshed, Timed
from stream.snapshot import Exposition, Snapshot
from stream.web import accepts_gzip, middlewares


class Reads:
    """A computation that waits for ``release`` and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.release.set()
        self.entered = asyncio.Event()

    async def __call__(self) -> int:
        self.runs += 1
        self.entered.set()
        await self.release.wait()
        return self.runs


async def test_many_concurrent_callers_share_one_computation() -> None:
    """200 callers at once: one computation, and every caller gets its result."""
    reads = Reads()
    reads.release.clear()
    shared = Refreshed(reads, 0.05)
    callers = [asyncio.ensure_future(shared.get()) for _ in range(200)]
    await asyncio.sleep(0.01)
    reads.release.set()
    assert await asyncio.gather(*callers) == [1] * 200
    assert reads.runs == 1


async def test_a_change_is_served_within_the_spacing_plus_one_computation_and_nobody_waits() -> None:
    """While polled: after ``changed()`` the next computation starts once the spacing has passed since
    the previous one began; callers meanwhile get the latest at once, whatever their number."""
    reads = Reads()
    shared = Refreshed(reads, 0.2, max_age=5.0)
    assert await shared.get() == 1
    reads.release.clear()
    shared.changed()
    changed = time.monotonic()
    for _ in range(100):  # many callers while the spacing runs and the computation waits
        assert await shared.get() == 1
    reads.entered.clear()
    await asyncio.sleep(0.1)
    assert reads.runs == 1  # not before the spacing
    await asyncio.wait_for(reads.entered.wait(), 1.0)
    assert 0.15 < time.monotonic() - changed < 0.35
    assert await shared.get() == 1  # the computation runs: the latest, at once
    reads.release.set()
    await asyncio.sleep(0.01)
    assert await shared.get() == 2
    assert reads.runs == 2


async def test_without_a_change_the_state_is_read_once_per_max_age() -> None:
    reads = Reads()
    shared = Refreshed(reads, 0.2, max_age=0.6)
    assert await shared.get() == 1
    started = time.monotonic()
    while time.monotonic() - started < 0.9:
        await shared.get()
        await asyncio.sleep(0.01)
    assert reads.runs == 2  # the first, and one at 0.6 s: not one per spacing
    for _ in range(5):  # changes in a burst, 0.3 s after the latest read: one read at once, one after the spacing
        shared.changed()
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert reads.runs == 3
    await asyncio.sleep(0.25)
    assert reads.runs == 4


async def test_nobody_polling_stops_the_reads_and_the_next_caller_waits_for_a_new_result() -> None:
    reads = Reads()
    shared = Refreshed(reads, 0.02, max_age=0.05, keep_warm=0.1)
    assert await shared.get() == 1
    await asyncio.sleep(0.4)
    assert not shared.warm
    runs = reads.runs
    assert runs <= 4  # at most keep_warm / max_age more, then none
    shared.changed()
    await asyncio.sleep(0.1)
    assert reads.runs == runs
    reads.release.clear()
    caller = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0.02)
    assert not caller.done()  # the old result is not served after a quiet spell
    assert not (late := asyncio.ensure_future(shared.get())).done()
    reads.release.set()
    assert await caller == await late == runs + 1


async def test_a_costly_computation_is_spaced_to_take_at_most_its_share_of_the_loop() -> None:
    """A computation that keeps the loop 60 ms and waits 200 ms (Redis, other tasks): with a 5% share
    the next one starts no sooner than 1.2 s after the previous began; the waiting does not count."""
    runs = 0

    async def costly() -> int:
        nonlocal runs
        runs += 1
        time.sleep(0.06)  # noqa: ASYNC251 - the loop's own time: parsing replies, building bodies
        await asyncio.sleep(0.2)  # waiting
        return runs

    behind = False
    shared = Refreshed(costly, 0.05, max_age=0.1, max_share=lambda: 0.01 if behind else 0.05)
    assert await shared.get() == 1
    assert 0.06 <= shared.took < 0.1, shared.took
    assert shared.spacing == pytest.approx(shared.took / 0.05)
    behind = True  # the worker has a backlog: a fifth of the share
    assert shared.spacing == pytest.approx(shared.took / 0.01)
    behind = False
    shared.changed()
    await asyncio.sleep(0.5)
    assert runs == 1
    assert await shared.get() == 1


async def test_timed_passes_results_errors_and_cancellation_through() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("x")

    with pytest.raises(ValueError, match=r"^x$"):
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


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_computation() -> None:
    reads = Reads()
    reads.release.clear()
    shared = Refreshed(reads, 0.05)
    first = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0)
    first.cancel()
    second = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0)
    reads.release.set()
    assert await second == 1
    assert reads.runs == 1


async def test_a_failed_computation_fails_its_callers_and_is_tried_again() -> None:
    outcomes = iter([RuntimeError("boom"), 7])

    async def compute() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = Refreshed(compute, 0.02)
    with pytest.raises(RuntimeError):
        await shared.get()
    assert await shared.get() == 7


async def test_a_computation_may_return_none() -> None:
    """/health's Redis ping returns None: a result all the same, served to the callers after it."""
    runs = 0

    async def ping() -> None:
        nonlocal runs
        runs += 1

    shared = Refreshed(ping, 1.0)
    assert [await shared.get() for _ in range(3)] == [None] * 3
    assert runs == 1


async def test_every_response_of_the_worker_carries_nosniff_errors_included() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=middlewares())
    app.router.add_get("/kpis", ok)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        for path, status in (("/kpis", 200), ("/nowhere", 404), ("/router/", 404)):
            response = await client.get(path)
            assert response.status == status, path
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
    finally:
        await client.close()


def test_health_reasons_name_no_address_and_no_exception_text() -> None:
    """Kafka and Redis failures keep their details for the log; /health says what is wrong in fixed words."""
    health = Health(started=True, joined=True)
    health.kafka_error = "kafka unreachable"  # a Problem's reason; its detail went to the log
    health.redis(False, "redis unavailable: ConnectionError (Error 111 connecting to redis.internal:6379)")
    health.crashed = ["review-agent"]
    reasons = health.reasons()
    assert reasons == ["agent crashed: review-agent", "kafka unreachable", "redis unavailable"]
    health.redis(False, "redis error: NOSCRIPT No matching script at 10.0.0.7", unavailable=False)
    assert health.reasons()[-1] == "redis error (details in the worker's log)"
    health.redis(False, "redis unavailable: AuthenticationError")
    assert health.reasons()[-1] == "redis: authentication failed; check the user and password in ADVOCACY_REDIS_URL"
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
    snapshot = Snapshot(1_800_000_000.0, totals, "", windows)
    body = snapshot.kpis(None)
    assert snapshot.kpis(None) is body  # built once
    assert json.loads(body)["generated_at"] == "2027-01-15T08:00:00Z"
    assert gzip.decompress(snapshot.kpis(None, gzipped=True)) == body
    assert snapshot.kpis(None, gzipped=True) is snapshot.kpis(None, gzipped=True)
    one = json.loads(snapshot.kpis("1h"))
    assert {row["window"] for key in ("advocacy_actions", "advocacy_actions_overall") for row in one[key]} == {"1h"}


def test_the_metrics_body_is_built_when_asked_at_most_once_a_second_and_within_its_share() -> None:
    """Built from the latest snapshot when a scraper asks, not with every snapshot; however many scrapers and
    snapshots, at most once per second, or per 20 times its build time if that is longer."""
    builds = 0

    def build() -> bytes:
        nonlocal builds
        builds += 1
        return b"# metrics %d\n" % builds * 200

    exposition = Exposition(build, interval=0.2)
    first, second = object(), object()
    body = exposition.body(first)
    assert builds == 1
    assert body == b"# metrics 1\n" * 200
    assert gzip.decompress(exposition.body(first, gzipped=True)) == body
    assert len(exposition.body(first, gzipped=True)) < len(body) / 10
    assert [exposition.body(second) for _ in range(100)] == [body] * 100  # a newer snapshot, within the spacing
    assert builds == 1
    time.sleep(0.25)
    assert exposition.body(first) == body
    assert builds == 1
    assert exposition.body(second) == b"# metrics 2\n" * 200
    assert builds == 2
    assert gzip.decompress(exposition.body(second, gzipped=True)) == b"# metrics 2\n" * 200

    def costly() -> bytes:
        time.sleep(0.03)
        return b"x"

    slow = Exposition(costly, interval=0.01, max_share=lambda: 0.05)
    slow.body(first)
    time.sleep(0.1)
    slow.body(second)
    assert slow.builds == 1  # 0.1 s after a 30 ms build: within 20 times it
