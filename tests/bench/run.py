"""``make bench``: side-by-side throughput, freshness, start-up and memory, on the embedded stack.

Every measurement runs on a fresh tansu broker and redis-server, with the same events.
Medians of ``--runs`` runs. The pipeline's run fails the benchmark unless its /kpis
equal the KPIs computed independently (tests/reliability/fast_oracle.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.embedded import RedisClusterServers, embedded, free_port, start_broker, stop
from tests.bench.events import generate, wire
from tests.reliability.fast_oracle import expected as expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, iso
from tests.support import Worker, get_json, http_get, produce, strip, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ("<!-- endpoints-under-load -->", "<!-- /endpoints-under-load -->")  # written by web_load.py
TOPICS = {"review": "reviews", "referral": "referrals", "ticket": "tickets-closed", "customer": "customers"}


@contextmanager
def stack() -> Iterator[tuple[str, str, Path]]:
    """A fresh broker and Redis in a temporary directory, removed afterwards unless the run failed
    (its logs then stay for a look)."""
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with embedded(work) as (bootstrap, redis_url):
        yield bootstrap, redis_url, work
    shutil.rmtree(work, ignore_errors=True)


@contextmanager
def cluster_stack() -> Iterator[tuple[str, str, Path]]:
    """A tansu broker and a local Redis Cluster (three masters, three replicas)."""
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    port = free_port()
    broker = start_broker(port, work / "tansu.log")
    cluster = RedisClusterServers(work / "redis-cluster")
    try:
        yield f"127.0.0.1:{port}", cluster.start().url, work
    finally:
        cluster.stop()
        stop(broker)


def worker_env(bootstrap: str, redis_url: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=bootstrap, ADVOCACY_REDIS_URL=redis_url,
                ADVOCACY_LOG_LEVEL="WARNING", **extra)


def create_topics(bootstrap: str, redis_url: str, work: Path) -> None:
    from stream.config import load_settings
    from stream.topics import ensure_topics

    asyncio.run(ensure_topics(load_settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url)))


def raw_ceiling(bootstrap: str, n: int) -> float:
    """aiokafka consume + stdlib json decode of every record: the ceiling for a Python consumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> float:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in TOPICS.values() for p in consumer.partitions_for_topic(t) or ()]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            seen, started = 0, time.perf_counter()
            while seen < n:
                for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                    for record in records:
                        json.loads(record.value)
                    seen += len(records)
            return n / (time.perf_counter() - started)
        finally:
            await consumer.stop()

    return asyncio.run(run())


def naive_faust(bootstrap: str, n: int, work: Path) -> float:
    """Per-event windowed-table update in a plain Faust agent."""
    port = free_port()
    env = dict(os.environ, BENCH_BROKER=bootstrap, BENCH_PORT=str(port), BENCH_TOPICS=",".join(TOPICS.values()),
               PYTHONPATH=str(ROOT))
    with open(work / "naive.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.bench.naive_faust"], env=env, cwd=work,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        def done() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise RuntimeError(f"naive faust exited with {proc.returncode}; see {work / 'naive.log'}")
            status, body = http_get(f"http://127.0.0.1:{port}/count", timeout=2)
            seen = json.loads(body) if status == 200 else {}
            return seen if seen.get("count", 0) >= n else None

        seen = wait_for(done, 900, interval=0.5, what="naive faust to count every event")
        return float(n / (seen["last"] - seen["first"]))
    finally:
        stop(proc)


def end_offsets(bootstrap: str) -> dict[str, int]:
    """Each non-empty partition's end offset, named as the state names it (``topic:partition``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> dict[str, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in TOPICS.values() for p in consumer.partitions_for_topic(t) or ()]
            ends = await consumer.end_offsets(parts)
            return {f"{tp.topic}:{tp.partition}": end for tp, end in ends.items() if end}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def wait_drained(redis_url: str, ends: dict[str, int], timeout: float = 900, app_id: str = "advocacy") -> float:
    """Poll the state's stored positions (every 50 ms) until each partition's is at its end offset;
    returns when. /kpis is served from a snapshot (ADVOCACY_WEB_REFRESH_SECONDS plus a read behind), so it would
    add that."""
    import redis

    from stream.config import Settings
    from stream.shards import Shard

    client = redis.Redis.from_url(redis_url)
    keys = [Shard(app_id, i).pos for i in range(Settings().state_shards)]  # every shard stores every position
    deadline = time.monotonic() + timeout
    try:
        while True:
            hashes = [{k.decode(): int(v) for k, v in client.hgetall(key).items()} for key in keys]
            stored = {name: min(h.get(name, 0) for h in hashes) for name in ends}
            if all(stored[name] >= end for name, end in ends.items()):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"not drained within {timeout} s: {stored} vs {ends}")
            time.sleep(0.05)
    finally:
        client.close()


def pipeline(bootstrap: str, redis_url: str, n: int, events: list[tuple[str, dict[str, Any]]],
             work: Path, **env: str) -> tuple[float, float]:
    """Our worker from a cold start over published events, to every event stored (then /kpis must
    equal the oracle's numbers)."""
    expected = expected_kpis(events, time.time(), WINDOWS, ATTRIBUTION)  # events keep off window edges
    ends = end_offsets(bootstrap)
    worker = Worker(env=worker_env(bootstrap, redis_url, **env), log=work / "worker.log")
    started = time.monotonic()
    worker.start()
    worker.wait_ready(60)
    ready = time.monotonic() - started
    begin = time.monotonic()
    try:
        done = wait_drained(redis_url, ends)
        wait_for(lambda: strip(worker.kpis()) == expected, 60, interval=0.2,
                 what="/kpis to equal the independently computed KPIs")
        return n / (done - begin), ready
    finally:
        worker.stop()


def two_workers(bootstrap: str, redis_url: str, n: int, events: list[tuple[str, dict[str, Any]]],
                work: Path) -> float:
    """Two worker processes started together (one group generation) on published events: from
    the first being ready to /kpis equal to the oracle's numbers. A Python process is bound to
    one core by the GIL; this is how a machine's second core is put to work."""
    expected = expected_kpis(events, time.time(), WINDOWS, ATTRIBUTION)
    ends = end_offsets(bootstrap)
    workers = [Worker(env=worker_env(bootstrap, redis_url), log=work / f"two-{i}.log") for i in range(2)]
    for worker in workers:
        worker.start()
    try:
        def any_ready() -> bool:
            for worker in workers:
                assert worker.proc is not None and worker.proc.poll() is None, f"a worker exited; see {work}"
                if http_get(worker.url + "/health", timeout=2)[0] == 200:
                    return True
            return False

        wait_for(any_ready, 60, interval=0.05, what="a worker ready")
        begin = time.monotonic()
        done = wait_drained(redis_url, ends)
        wait_for(lambda: strip(workers[0].kpis()) == expected and strip(workers[1].kpis()) == expected,
                 60, interval=0.2, what="/kpis of both workers to equal the independently computed KPIs")
        return n / (done - begin)
    finally:
        for worker in workers:
            worker.stop()


def freshness(bootstrap: str, redis_url: str, work: Path, rate: int, seconds: float) -> list[float]:
    """At ``rate`` events/s for ``seconds``: delay from publishing a probe to seeing it in /kpis."""
    from aiokafka import AIOKafkaProducer

    worker = Worker(env=worker_env(bootstrap, redis_url), log=work / "fresh.log").start().wait_ready(60)
    background = [(TOPICS[k], key, value) for k, key, value in
                  ((k, e["customer_id"].encode(), json.dumps(e).encode())
                   for k, e in generate(int(rate * seconds) + 1000, 50_000, time.time(), seed=9))]
    sent_at: dict[int, float] = {}
    delays: list[float] = []
    stop_flag = threading.Event()

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            tick, i, probe = 0.05, 0, 0
            per_tick = int(rate * tick)
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                for topic, key, value in background[i:i + per_tick]:
                    await producer.send(topic, value, key=key)
                i += per_tick
                if i // per_tick % 4 == 0:  # a probe every 0.2 s
                    probe += 1
                    event = {"event_id": f"probe-{probe}", "customer_id": f"probe-{probe}", "segment": "probe",
                             "occurred_at": iso(time.time())}
                    await producer.send(TOPICS["referral"], json.dumps(event).encode(),
                                        key=event["customer_id"].encode())
                    sent_at[probe] = time.monotonic()
                await asyncio.sleep(max(0.0, started + (i / per_tick) * tick - time.monotonic()))
            await producer.flush()
        finally:
            await producer.stop()
            stop_flag.set()

    def watch() -> None:
        seen = 0
        while not (stop_flag.is_set() and seen >= len(sent_at)):
            try:
                rows = get_json(worker.url + "/kpis?window=1h")["advocacy_actions"]
            except (OSError, AssertionError, ValueError):
                continue
            count = next((r["actions"] for r in rows if r["segment"] == "probe"), 0)
            now = time.monotonic()
            for probe in range(seen + 1, count + 1):
                if probe in sent_at:
                    delays.append(now - sent_at[probe])
            seen = max(seen, count)
            if stop_flag.is_set() and time.monotonic() - max(sent_at.values(), default=now) > 30:
                break
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        asyncio.run(publish())
        watcher.join()
    finally:
        worker.stop()
    return delays


def peak_rss(bootstrap: str, redis_url: str, work: Path, customers: int) -> float:
    """Peak RSS (MiB) of a worker that has put ``customers`` distinct customers in state."""
    now = time.time()
    messages = [(TOPICS["customer"], f"c{i}".encode(), json.dumps(
        {"event_id": f"g{i}", "customer_id": f"c{i}", "occurred_at": iso(now - 86400),
         "segment": f"s{i % 8}", "status": "active"}).encode()) for i in range(customers)]
    produce(bootstrap, messages)
    worker = Worker(env=worker_env(bootstrap, redis_url), log=work / "rss.log").start().wait_ready(60)
    try:
        def loaded() -> bool:
            rows = get_json(worker.url + "/kpis?window=1h")["advocacy_actions_overall"]
            return bool(rows) and rows[0]["customers"] >= customers

        wait_for(loaded, 1800, interval=1.0, what=f"{customers} customers in state")
        assert worker.proc is not None
        status = Path(f"/proc/{worker.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    finally:
        worker.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def median_of(runs: int, measure: Callable[[], Any]) -> list[Any]:
    return [measure() for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fresh-rate", type=int, default=10_000)
    parser.add_argument("--fresh-seconds", type=float, default=60.0)
    parser.add_argument("--rss-customers", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    now = time.time()
    events = generate(args.events, args.customers, now)
    messages = wire(events, TOPICS)
    size = sum(len(v) for _, _, v in messages) / len(messages)
    print(f"{len(messages)} events, {size:.0f} bytes on average, {args.customers} customers", flush=True)
    raw, naive, ours, uncached, two, ready, clustered = [], [], [], [], [], [], []
    for run in range(args.runs):
        with stack() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            raw.append(raw_ceiling(bootstrap, len(messages)))
            naive.append(naive_faust(bootstrap, len(messages), work))
            rate, up = pipeline(bootstrap, redis_url, len(messages), events, work)
            ours.append(rate)
            ready.append(up)
        with stack() as (bootstrap, redis_url, work):  # every record read from Redis, none cached
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            uncached.append(pipeline(bootstrap, redis_url, len(messages), events, work,
                                     ADVOCACY_STATE_CACHE_CUSTOMERS="0")[0])
        with stack() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            two.append(two_workers(bootstrap, redis_url, len(messages), events, work))
        with cluster_stack() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            clustered.append(pipeline(bootstrap, redis_url, len(messages), events, work,
                                      ADVOCACY_REDIS_CLUSTER="true")[0])
        print(f"run {run + 1}: raw {raw[-1]:,.0f}/s  naive faust {naive[-1]:,.0f}/s  "
              f"pipeline {ours[-1]:,.0f}/s (exact), without record cache {uncached[-1]:,.0f}/s (exact), "
              f"two workers {two[-1]:,.0f}/s (exact), on Redis Cluster {clustered[-1]:,.0f}/s (exact)  "
              f"ready {ready[-1]:.1f} s", flush=True)
    with stack() as (bootstrap, redis_url, work):
        create_topics(bootstrap, redis_url, work)
        delays = freshness(bootstrap, redis_url, work, args.fresh_rate, args.fresh_seconds)
    print(f"freshness: {len(delays)} probes", flush=True)
    with stack() as (bootstrap, redis_url, work):
        create_topics(bootstrap, redis_url, work)
        rss = peak_rss(bootstrap, redis_url, work, args.rss_customers)
    print(f"peak RSS with {args.rss_customers:,} customers: {rss:.0f} MiB", flush=True)
    report(args, size, raw, naive, ours, uncached, two, ready, delays, rss, clustered)
    return 0


def report(args: argparse.Namespace, size: float, raw: list[float], naive: list[float], ours: list[float],
           uncached: list[float], two: list[float], ready: list[float], delays: list[float],
           rss: float, clustered: list[float]) -> None:
    med = statistics.median
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    rows = [
        ("raw aiokafka consume + json decode (ceiling)", f"{med(raw):,.0f} events/s", "1.00x raw", ""),
        ("naive Faust agent, per-event tumbling-table update", f"{med(naive):,.0f} events/s",
         f"{med(naive) / med(raw):.2f}x raw", ""),
        ("this pipeline (validate, dedup, attribution, windows, Redis, to exact /kpis)",
         f"{med(ours):,.0f} events/s", f"{med(ours) / med(raw):.2f}x raw, {med(ours) / med(naive):.1f}x naive",
         ">= 60,000 events/s"),
        ("the same, without the record cache (every customer read from Redis)",
         f"{med(uncached):,.0f} events/s", f"{med(uncached) / med(raw):.2f}x raw, "
         f"{med(uncached) / med(naive):.1f}x naive", ""),
        ("the same on Redis Cluster (three masters, three replicas, on this machine; exact)",
         f"{med(clustered):,.0f} events/s", f"{med(clustered) / med(ours):.2f}x single Redis", ""),
        ("two workers on this machine (two processes, one consumer group; same events, exact)",
         f"{med(two):,.0f} events/s", f"{med(two) / med(raw):.2f}x raw, {med(two) / med(ours):.2f}x one worker", ""),
        (f"freshness at {args.fresh_rate:,} events/s for {args.fresh_seconds:.0f} s (publish -> /kpis)",
         f"p50 {percentile(delays, 0.5):.2f} s, p95 {percentile(delays, 0.95):.2f} s, "
         f"p99 {percentile(delays, 0.99):.2f} s", f"{len(delays)} probes", "p99 <= 1 s"),
        ("worker start-up to ready", f"{med(ready):.1f} s", "", "<= 5 s"),
        (f"peak worker RSS, {args.rss_customers:,} customers in state", f"{rss:.0f} MiB", "", "<= 300 MB"),
    ]
    lines = [
        "# Benchmarks", "",
        f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, embedded tansu broker and redis-server on loopback, "
        f"{args.events:,} events of {size:.0f} bytes on average over 4 topics x 4 partitions, "
        f"{args.customers:,} customers; medians of {args.runs} runs, each on a fresh broker and Redis.", "",
        "| what | measured | ratio | target |", "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows], "",
        f"Per run: raw {', '.join(f'{v:,.0f}' for v in raw)}; naive Faust {', '.join(f'{v:,.0f}' for v in naive)}; "
        f"pipeline {', '.join(f'{v:,.0f}' for v in ours)}; without cache "
        f"{', '.join(f'{v:,.0f}' for v in uncached)}; two workers {', '.join(f'{v:,.0f}' for v in two)}; "
        f"Redis Cluster {', '.join(f'{v:,.0f}' for v in clustered)} events/s.",
        "",
        "The pipeline's rate counts from the worker being ready to every event stored (each partition's "
        "position in the state at its end offset); /kpis must then show the numbers computed independently "
        "from the events (the benchmark fails otherwise).", "",
    ]
    notes = Path(args.out).with_name("benchmarks-notes.md")
    if notes.exists():
        lines += [notes.read_text()]
    previous = Path(args.out).read_text() if Path(args.out).exists() else ""
    kept = re.search(re.escape(ENDPOINTS[0]) + ".*?" + re.escape(ENDPOINTS[1]), previous, re.S)
    if kept:  # `make bench-web`'s section
        lines += ["", kept[0], ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
