"""The worker's endpoints, safe to expose: bounded state reads under many clients, Faust's own
views off, nosniff, /health without addresses; and a flood of garbage through the dead-letter path."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.config import load_settings
from stream.dead_letters import CUT_BYTES
from stream.embedded import free_port, start_redis, stop
from tests.conftest import Namespace
from tests.oracle import expected_kpis
from tests.reliability.harness import metric_sum
from tests.scenario import ATTRIBUTION, WINDOWS, build, iso
from tests.support import consume_all, http_get, produce, strip, wait_for

pytestmark = pytest.mark.e2e


def _own_redis(tmp_path: Path) -> tuple[Any, int, str]:
    """A redis-server of the test's own, so that its command counts are the worker's alone."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    port = free_port()
    return start_redis(port, workdir), port, f"redis://127.0.0.1:{port}/0"


async def _hammer(url: str, clients: int, seconds: float) -> Counter[str]:
    """``clients`` concurrent clients, each on its own connection, GET /kpis and /metrics with no pause."""
    import aiohttp

    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def client() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            while time.monotonic() < deadline:
                for path in ("/kpis", "/metrics"):
                    async with session.get(url + path) as response:
                        await response.read()
                        outcomes[f"{path} {response.status}"] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return outcomes


def test_many_concurrent_clients_share_reads_bounded_by_the_refresh_spacing(
        namespace: Namespace, tmp_path: Path) -> None:
    """50 clients polling /kpis and /metrics back to back: every answer 200, and the totals are not read
    again while nothing changes (a bucket boundary, every 150 s, may fall within the seconds measured, and
    the last batch of the first half may land), at most once per ADVOCACY_WEB_REFRESH_SECONDS (0.1 s) while
    the worker stores batches, whatever the number of requests; the numbers end exact. Reads are counted by
    Redis itself: a read of the totals asks each shard for its segments and teams (two SMEMBERS a shard,
    which only the janitor's prune also issues: it is held off here)."""
    server, _, url = _own_redis(tmp_path)
    scenario = build(time.time(), namespace.topics, seed=61, customers=30)
    messages = scenario.messages()
    first, rest = messages[:len(messages) // 2], messages[len(messages) // 2:]
    worker = namespace.worker(tmp_path, ADVOCACY_REDIS_URL=url, ADVOCACY_JANITOR_INTERVAL_SECONDS="3600").start()
    worker.wait_ready()
    state = redis.Redis.from_url(url)
    per_read = 2 * load_settings().state_shards
    try:
        produce(namespace.stack.bootstrap, first)
        wait_for(lambda: metric_sum(worker, "advocacy_events_processed_total") >= len(first), 60, what="the first half")
        reads_before = metric_sum(worker, "advocacy_state_reads_total")

        def hammer(seconds: float, publish: list[Any]) -> tuple[float, int, float]:
            """(state reads, requests, seconds) while 50 clients poll and ``publish`` goes out in 10 chunks."""
            state.config_resetstat()
            chunks = [publish[i::10] for i in range(10)] if publish else []

            def producer() -> None:
                for chunk in chunks:
                    produce(namespace.stack.bootstrap, chunk)
                    time.sleep(seconds / 12)

            thread = threading.Thread(target=producer)
            started = time.monotonic()
            thread.start()
            outcomes = asyncio.run(_hammer(worker.url, 50, seconds))
            thread.join()
            took = time.monotonic() - started
            smembers = int(state.info("commandstats").get("cmdstat_smembers", {}).get("calls", 0))
            commands = int(state.info("stats")["total_commands_processed"])
            requests = sum(outcomes.values())
            print(f"{requests} requests in {took:.1f} s ({dict(outcomes)}); {smembers / per_read:g} "
                  f"state reads; {commands / took:.0f} Redis commands/s; {len(publish)} messages published meanwhile")
            assert set(outcomes) == {"/kpis 200", "/metrics 200"}, outcomes
            return smembers / per_read, requests, took

        reads, requests, seconds = hammer(3.0, [])  # nothing changes: the marks only, ten times a second
        assert reads == int(reads), "a read of the totals is two SMEMBERS a shard"
        assert reads <= 2
        assert requests >= 100  # every client was answered, and again
        reads, requests, seconds = hammer(3.0, rest)  # batches stored all along: a read per 0.1 s at most
        assert reads == int(reads)
        assert 2 <= reads <= math.ceil(seconds / 0.1) + 2
        assert requests >= 10 * reads
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        wait_for(lambda: strip(worker.kpis()) == expected, 60, what="exact kpis")
        assert metric_sum(worker, "advocacy_state_reads_total") - reads_before <= 4 + math.ceil(seconds / 0.1) + 5
        for path in ("/kpis", "/metrics"):  # the clients above accepted gzip; so does Prometheus
            with urllib.request.urlopen(urllib.request.Request(worker.url + path, headers={
                    "Accept-Encoding": "gzip"}), timeout=5) as response:
                assert response.headers["Content-Encoding"] == "gzip", path
                body = gzip.decompress(response.read())
            if path == "/kpis":
                assert strip(json.loads(body)) == expected
            else:
                assert b"advocacy_actions_ratio{" in body
    finally:
        worker.stop()
        state.close()
        stop(server)


def test_faust_views_are_off_responses_are_nosniff_and_health_reasons_name_no_address(
        namespace: Namespace, tmp_path: Path) -> None:
    """/router/, /table/ and Faust's statistics answer 404; every answer carries nosniff; with Redis
    stopped /health and /kpis say "redis unavailable" and name no host, port or exception."""
    server, port, url = _own_redis(tmp_path)
    worker = namespace.worker(tmp_path, ADVOCACY_REDIS_URL=url).start().wait_ready()
    try:
        for path in ("/router/", "/table/", "/graph/", "/assignment/", "/stats/", "/performance/"):
            status, _ = http_get(worker.url + path)
            assert status == 404, path
        for path in ("/kpis", "/metrics", "/health", "/", "/router/"):
            request = urllib.request.Request(worker.url + path)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    headers = response.headers
            except urllib.error.HTTPError as exc:
                headers = exc.headers
            assert headers["X-Content-Type-Options"] == "nosniff", path
        stop(server)

        def unavailable() -> bytes | None:
            status, body = http_get(worker.url + "/health")
            return body if status == 503 and b"redis unavailable" in body else None

        body = wait_for(unavailable, 20, what="/health to say redis unavailable")
        reasons = json.loads(body)["reasons"]
        assert reasons == ["redis unavailable"], reasons
        status, kpis = wait_for(lambda: (r := http_get(worker.url + "/kpis"))[0] == 503 and r, 10,
                                what="/kpis 503")
        assert json.loads(kpis) == {"error": "redis unavailable"}
        for text in (body, kpis):
            assert not re.search(rb"127\.0\.0\.1|localhost|" + str(port).encode() + rb"|Error", text), text
    finally:
        worker.stop()
        stop(server)


def test_a_flood_of_garbage_is_dead_lettered_in_full_with_a_bounded_log(namespace: Namespace, tmp_path: Path) -> None:
    """20,000 invalid messages and one too large among valid events: each reaches the dead-letter topic
    with its provenance (the too large one cut, its size in a header), the KPIs stay exact, and the log
    has at most 10 dead-letter lines per 10 s plus lines counting the rest, which add up."""
    topic = namespace.topics["review"]
    now = time.time()
    garbage = [(topic, None, b"{not json %d" % i) for i in range(20_000)]
    big = json.dumps({"event_id": "big", "customer_id": "c-big", "occurred_at": iso(now - 60),
                      "kind": "testimonial", "pad": "x" * 200_000}).encode()
    scenario = build(now, namespace.topics, seed=67, customers=20)
    messages = scenario.messages()
    flood = [*garbage[:10000], (topic, b"c-big", big), *messages, *garbage[10000:]]
    bad = len(garbage) + 1 + len(scenario.bad)
    worker = namespace.worker(tmp_path, ADVOCACY_MAX_MESSAGE_BYTES="81920").start().wait_ready()
    try:
        started = time.monotonic()
        produce(namespace.stack.bootstrap, flood)
        expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
        wait_for(lambda: strip(worker.kpis()) == expected, 120, what="exact kpis through the flood")
        records = consume_all(namespace.stack.bootstrap, namespace.topics["dlq"], bad, timeout=60)
        assert metric_sum(worker, "advocacy_dead_letters_total") == bad
        log = worker.log

        def accounted() -> tuple[int, int] | None:
            text = log.read_text(errors="replace")
            lines = len(re.findall(r"dead-lettered \S+\[\d+\]@\d+", text))
            held = sum(int(n) for n in re.findall(r"(\d+) more dead letters and validation errors not logged", text))
            return (lines, held) if lines + held == bad else None

        lines, held = wait_for(accounted, 30, interval=1.0, what="logged + counted dead letters to add up")
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    print(f"{len(records)} dead letters; {lines} lines logged, {held} counted, over {elapsed:.0f} s")
    assert len(records) == bad
    assert lines <= 10 * (elapsed // 10 + 1)
    sources = set()
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        sources.add((headers["source_topic"], int(headers["source_partition"]), int(headers["source_offset"])))
        assert headers["reason"]
        assert headers["detail"]
        if headers["reason"] == "too_large":
            assert record.value == big[:CUT_BYTES]
            assert headers["original_size"] == str(len(big))
    assert len(sources) == bad, "a message dead-lettered twice or one missing"
    assert sum(1 for r in records if dict(r.headers)["reason"] == b"too_large") == 1
