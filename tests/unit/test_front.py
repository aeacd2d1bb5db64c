"""The web front (stream.front): held answers for /kpis and /metrics, one fetch in flight per
answer whatever the number of clients, the cap on requests in progress, 503 with a reason
when the worker does not answer, nosniff everywhere. The worker here is a function standing
for its server (the front's logic is what is under test; tests/e2e run the real pair)."""

from __future__ import annotations

import asyncio
import gzip
import json

from aiohttp import ClientConnectorError, web
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.test_utils import RawTestServer, TestClient

from stream.config import load_settings
from stream.front import Answer, Front


class Worker:
    """Stands for the worker's server: counts requests per path, answers after ``release``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.down = False

    async def __call__(self, method: str, path_qs: str, headers: dict[str, str]) -> Answer:
        self.requests.append((method, path_qs, headers.get("Accept-Encoding", "")))
        if self.down:
            key = ConnectionKey("worker", 80, False, True, None, None, None)
            raise ClientConnectorError(key, OSError(111, "refused"))
        await self.release.wait()
        if path_qs.startswith("/metrics"):
            return Answer(200, {"Content-Type": "text/plain"}, b"advocacy_events_total 3.0\n")
        body = json.dumps({"path": path_qs, "n": len(self.requests)}).encode()
        if headers.get("Accept-Encoding") == "gzip":
            return Answer(200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress(body))
        return Answer(200, {"Content-Type": "application/json"}, body)


async def _client(worker: Worker, **settings: object) -> tuple[TestClient[web.BaseRequest, None], Front]:
    front = Front(load_settings(**settings), worker)
    client = TestClient(RawTestServer(front.handle, host="127.0.0.1"), auto_decompress=False)  # bodies as sent
    await client.start_server()
    return client, front


async def test_many_clients_share_one_fetch_per_answer_and_period() -> None:
    """50 clients at once, then again after the period: the worker sees one request per answer and period."""
    worker = Worker()
    worker.release.clear()
    client, _ = await _client(worker, web_refresh_seconds=1.0)  # answers held for 0.5 s from their fetch
    try:
        first = [asyncio.ensure_future(client.get("/kpis", headers={"Accept-Encoding": "gzip"})) for _ in range(50)]
        await asyncio.sleep(0.05)
        worker.release.set()
        bodies = {await (await r).read() for r in first}
        assert len(bodies) == 1
        assert worker.requests == [("GET", "/kpis", "gzip")]
        again = [await client.get("/kpis", headers={"Accept-Encoding": "gzip"}) for _ in range(5)]
        assert {r.headers["Content-Encoding"] for r in again} == {"gzip"}
        assert len(worker.requests) == 1  # within the period
        await asyncio.sleep(0.5)
        worker.release.clear()
        stale = await client.get("/kpis", headers={"Accept-Encoding": "gzip"})  # past the period: a fetch starts,
        assert json.loads(gzip.decompress(await stale.read()))["n"] == 1  # the held answer is served meanwhile
        assert len(worker.requests) == 2
        worker.release.set()
        await asyncio.sleep(0.05)
        latest = await client.get("/kpis", headers={"Accept-Encoding": "gzip"})
        assert json.loads(gzip.decompress(await latest.read()))["n"] == 2  # the new fetch's
    finally:
        await client.close()


async def test_each_window_and_encoding_is_an_answer_of_its_own_unknown_ones_are_passed_on() -> None:
    worker = Worker()
    client, _ = await _client(worker)
    try:
        identity = await client.get("/kpis?window=30d", headers={"Accept-Encoding": "identity"})
        assert json.loads(await identity.read())["path"] == "/kpis?window=30d"
        await client.get("/kpis?window=30d", headers={"Accept-Encoding": "gzip"})
        await client.get("/kpis", headers={"Accept-Encoding": "identity"})
        for _ in range(3):  # not held: the worker answers 400 to each (an unknown window is not a key)
            await client.get("/kpis?window=nonsense")
            await client.get("/kpis?window=30d&x=1")
        paths = [(path, encoding) for _, path, encoding in worker.requests]
        assert paths[:3] == [("/kpis?window=30d", "identity"), ("/kpis?window=30d", "gzip"), ("/kpis", "identity")]
        assert len(paths) == 9
    finally:
        await client.close()


async def test_metrics_append_the_fronts_own_series_and_compress_when_asked() -> None:
    worker = Worker()
    worker.release.clear()
    client, front = await _client(worker, web_max_requests=1)
    try:
        held = asyncio.ensure_future(client.get("/kpis"))
        await asyncio.sleep(0.1)
        assert (await client.get("/metrics")).status == 503  # over the cap (1): counted
        worker.release.set()
        await held
        plain = (await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).read()).decode()
        assert plain.startswith("advocacy_events_total 3.0\n")
        assert "advocacy_http_rejected_total 1.0" in plain
        response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()).decode() == plain
        assert [path for _, path, _ in worker.requests].count("/metrics") == 2  # asked as identity each time
        assert front.metrics.http_rejected._value.get() == 1
    finally:
        await client.close()


async def test_requests_over_the_cap_are_refused_at_once_with_retry_after_and_health_never() -> None:
    """Cap 3: 3 requests in progress; 5 more get 503 with Retry-After at once; /health is never
    refused; once the first ones finish, requests are served again."""
    worker = Worker()
    worker.release.clear()
    client, front = await _client(worker, web_max_requests=3)
    try:
        held = [asyncio.ensure_future(client.get(path)) for path in ("/kpis", "/kpis?window=1d", "/")]
        await asyncio.sleep(0.2)
        refused = [await client.get("/kpis") for _ in range(5)]
        assert [r.status for r in refused] == [503] * 5
        assert all(r.headers["Retry-After"] == "1" for r in refused)
        assert "error" in json.loads(await refused[0].read())
        health = asyncio.ensure_future(client.get("/health"))
        await asyncio.sleep(0.1)
        assert not health.done()  # in progress, past the cap
        worker.release.set()
        assert [(await r).status for r in held] == [200, 200, 200]
        assert (await health).status == 200
        assert (await client.get("/kpis?window=30d")).status == 200
        assert front.metrics.http_rejected._value.get() == 5
    finally:
        await client.close()


async def test_an_answer_over_two_seconds_old_is_not_served_while_the_next_is_fetched() -> None:
    worker = Worker()
    client, front = await _client(worker)
    try:
        await client.get("/kpis", headers={"Accept-Encoding": "identity"})
        held = front._held["/kpis", "", False]
        front._held["/kpis", "", False] = Answer(held.status, held.headers, held.body, held.fetched - 2.5)
        worker.release.clear()
        waiting = asyncio.ensure_future(client.get("/kpis", headers={"Accept-Encoding": "identity"}))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # waits for the worker's answer
        worker.release.set()
        assert json.loads(await (await waiting).read())["n"] == 2
    finally:
        await client.close()


async def test_a_worker_that_does_not_answer_gives_503_with_a_reason_and_no_exception_text() -> None:
    worker = Worker()
    worker.down = True
    client, _ = await _client(worker)
    try:
        health = await client.get("/health")
        assert health.status == 503
        assert json.loads(await health.read()) == {"status": "not ready", "reasons": ["worker not answering"]}
        kpis = await client.get("/kpis")
        assert kpis.status == 503
        assert kpis.headers["Retry-After"] == "1"
        text = (await kpis.read()).decode()
        assert "refused" not in text
        assert "111" not in text
        worker.down = False
        await asyncio.sleep(0.06)  # the 503 is held no longer than an answer
        assert (await client.get("/kpis")).status == 200
    finally:
        await client.close()


async def test_every_answer_carries_nosniff() -> None:
    worker = Worker()
    client, _ = await _client(worker, web_max_requests=1)
    try:
        for path in ("/kpis", "/metrics", "/health", "/nowhere"):
            response = await client.get(path)
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
        worker.down = True
        assert (await client.get("/health")).headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await client.close()
