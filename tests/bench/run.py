"""``make bench``: side-by-side throughput, freshness, start-up and memory, on both brokers.

Every measurement runs on a fresh broker and redis-server, with the same events: the embedded
tansu broker (``make run``'s) and a single Apache Kafka node (``stream.kafka_server``, the
broker's default group settings, so a new group's first join waits
``group.initial.rebalance.delay.ms``, 3 s). Within each run the brokers take turns, so a busy
machine weighs on both alike. Medians of ``--runs`` runs. The pipeline's run fails the
benchmark unless its /kpis equal the KPIs computed independently
(tests/reliability/fast_oracle.py).
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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.embedded import embedded, free_port, start_broker, start_redis, stop
from stream.kafka_node import kafka_version
from stream.kafka_server import KafkaCluster
from stream.redis_cluster import RedisClusterServers
from tests.bench import scale, skewed
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


@contextmanager
def kafka_stack() -> Iterator[tuple[str, str, Path]]:
    """A fresh single-node Apache Kafka with the broker's default group settings, and redis-server."""
    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    with KafkaCluster(work / "kafka", size=1, heap_mb=512) as cluster:
        redis_port = free_port()
        redis = start_redis(redis_port, work)  # as the embedded stack starts it
        try:
            yield cluster.bootstrap, f"redis://127.0.0.1:{redis_port}/0", work
        finally:
            stop(redis)


# broker -> (its name in the report, a fresh stack of it and redis-server)
STACKS: dict[str, tuple[str, Callable[[], AbstractContextManager[tuple[str, str, Path]]]]] = {
    "tansu": ("embedded tansu", stack),
    "kafka": (f"Apache Kafka {kafka_version()}", kafka_stack),
}


@dataclass
class Figures:
    """One broker's measurements, one entry per run (freshness: one delay per probe)."""

    raw: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    uncached: list[float] = field(default_factory=list)
    two: list[float] = field(default_factory=list)
    clustered: list[float] = field(default_factory=list)  # the pipeline on Redis Cluster
    quix: list[float] = field(default_factory=list)  # the Quix Streams peer
    quix_ready: list[float] = field(default_factory=list)  # its launch to first event counted
    quix_key: list[float] = field(default_factory=list)  # the same, a plain count per key (no group_by)
    delays: list[float] = field(default_factory=list)


def worker_env(bootstrap: str, redis_url: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=bootstrap, ADVOCACY_REDIS_URL=redis_url,
                ADVOCACY_LOG_LEVEL="WARNING", **extra)


def create_topics(bootstrap: str, redis_url: str, work: Path) -> None:
    from stream.config import load_settings
    from stream.topics import ensure_topics

    asyncio.run(ensure_topics(load_settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url)))


def raw_ceiling(bootstrap: str, n: int) -> float:
    """Aiokafka consume + stdlib json decode of every record: the ceiling for a Python consumer."""
    from aiokafka import AIOKafkaConsumer

    from stream.config import load_settings
    from stream.topics import partitions

    async def run() -> float:
        # asked of the cluster: Apache Kafka tells a new client no topic's partitions
        parts = await partitions(load_settings(kafka_bootstrap_servers=bootstrap), list(TOPICS.values()))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
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
    from aiokafka import AIOKafkaConsumer

    from stream.config import load_settings
    from stream.topics import partitions

    async def run() -> dict[str, int]:
        # asked of the cluster: Apache Kafka tells a new client no topic's partitions
        parts = await partitions(load_settings(kafka_bootstrap_servers=bootstrap), list(TOPICS.values()))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(parts)
            return {f"{tp.topic}:{tp.partition}": end for tp, end in ends.items() if end}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def wait_drained(redis_url: str, ends: dict[str, int], timeout: float = 900, app_id: str = "advocacy",
                 cluster: bool = False) -> float:
    """Poll the state's stored positions (every 50 ms) until each partition's is at its end offset;
    returns when. /kpis is served from a snapshot (ADVOCACY_WEB_REFRESH_SECONDS plus a read behind), so it would
    add that."""
    import redis

    from stream.config import Settings
    from stream.shards import Shard

    client: Any = redis.RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)
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


def quix_streams(bootstrap: str, n: int, work: Path, *options: str) -> tuple[float, float] | None:
    """The Quix Streams peer (tests/bench/quix_peer.py, in .venv-peers): events per second from its
    first event counted to its last, and seconds from launch to the first; None without .venv-peers."""
    python = ROOT / ".venv-peers" / "bin" / "python"
    if not python.exists():
        print("no .venv-peers (make bench creates it): the Quix Streams row is left out", flush=True)
        return None
    started = time.monotonic()
    with open(work / "quix.log", "ab") as log:
        proc = subprocess.Popen([str(python), str(ROOT / "tests" / "bench" / "quix_peer.py"), bootstrap,
                                 ",".join(TOPICS.values()), str(n), str(work / f"quix-state{len(options)}"),
                                 *options],
                                stdout=subprocess.PIPE, stderr=log, text=True, cwd=work)
    marks: dict[str, float] = {}
    reader = threading.Thread(target=lambda: marks.update(
        (k, v) for line in proc.stdout or () for k, v in json.loads(line).items()), daemon=True)
    reader.start()
    try:
        wait_for(lambda: "last" in marks or proc.poll() is not None, 900, interval=0.2,
                 what="Quix Streams to count every event")
        if "last" not in marks:
            raise RuntimeError(f"quix peer exited with {proc.returncode}; see {work / 'quix.log'}")
        return n / (marks["last"] - marks["first"]), marks["first"] - started
    finally:
        stop(proc)


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
        done = wait_drained(redis_url, ends, cluster=bool(env.get("ADVOCACY_REDIS_CLUSTER")))
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
                assert worker.proc is not None, f"a worker never started; see {work}"
                assert worker.proc.poll() is None, f"a worker exited; see {work}"
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


@dataclass
class Memory:
    """The state's size: the worker's peak RSS, and Redis's bytes per customer and per retained event."""

    rss_mib: float = 0.0
    per_customer: float = 0.0  # a registration's record, its share of the totals and keys
    per_event: float = 0.0  # one more action held in each record


def _redis_bytes(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def peak_rss(bootstrap: str, redis_url: str, work: Path, customers: int) -> Memory:
    """A worker puts ``customers`` registrations in state, then one referral for each: its peak RSS, and
    what Redis's memory grew by per customer and then per retained event."""
    now = time.time()
    messages = [(TOPICS["customer"], f"c{i}".encode(), json.dumps(
        {"event_id": f"g{i}", "customer_id": f"c{i}", "occurred_at": iso(now - 86400),
         "segment": f"s{i % 8}", "status": "active"}).encode()) for i in range(customers)]
    produce(bootstrap, messages)
    empty = _redis_bytes(redis_url)
    worker = Worker(env=worker_env(bootstrap, redis_url), log=work / "rss.log").start().wait_ready(60)
    try:
        def loaded(field: str) -> bool:
            rows = get_json(worker.url + "/kpis?window=1h")["advocacy_actions_overall"]
            return bool(rows) and rows[0][field] >= customers

        wait_for(lambda: loaded("customers"), 1800, interval=1.0, what=f"{customers} customers in state")
        registered = _redis_bytes(redis_url)
        produce(bootstrap, [(TOPICS["referral"], f"c{i}".encode(), json.dumps(
            {"event_id": f"f{i}", "customer_id": f"c{i}", "occurred_at": iso(now - 600),
             "channel": "email"}).encode()) for i in range(customers)])
        wait_for(lambda: loaded("actions"), 1800, interval=1.0, what=f"{customers} actions in state")
        held = _redis_bytes(redis_url)
        assert worker.proc is not None
        status = Path(f"/proc/{worker.proc.pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
        return Memory(rss, (registered - empty) / customers, (held - registered) / customers)
    finally:
        worker.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def in_process(n: int, customers: int, now: float) -> tuple[float, float]:
    """Microseconds an event of ``events.parse`` and of the record step with the batch tally (the pure
    hot path, ``tests/bench/parse_speed.py`` and ``step_speed.py``), best of 3 passes each."""
    from tests.bench import parse_speed, step_speed

    values = [(kind, raw) for kind, _key, raw in wire(generate(n, customers, now), parse_speed.KINDS)]
    now_ms = int(now * 1000)
    parsed = min(parse_speed.one_pass(values, now_ms)[0] for _ in range(3))
    events = step_speed._events(n, customers, now)
    stepped = min(step_speed.one_pass(events, 500, now_ms, step_speed._rules()) for _ in range(3))
    return parsed * 1e6 / len(values), stepped * 1e6 / len(events)


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
    parser.add_argument("--scale-customers", default="1000000,5000000",
                        help="customers in state for the cost-per-event rows (tests/bench/scale.py); '' for none")
    parser.add_argument("--zipf", type=float, default=1.1, help="the Zipf-skewed row's exponent; 0 for none")
    parser.add_argument("--brokers", default=",".join(STACKS), help="comma-separated, of: " + ", ".join(STACKS))
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran on the machine)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    if not brokers or any(b not in STACKS for b in brokers):
        parser.error(f"--brokers: choose among {', '.join(STACKS)}")
    started, load = time.monotonic(), [os.getloadavg()[0]]
    now = time.time()
    events = generate(args.events, args.customers, now)
    messages = wire(events, TOPICS)
    size = sum(len(v) for _, _, v in messages) / len(messages)
    print(f"{len(messages)} events, {size:.0f} bytes on average, {args.customers} customers", flush=True)
    figures = {broker: Figures() for broker in brokers}
    for _ in range(args.runs):
        for broker in brokers:  # the brokers take turns: a busy machine weighs on both alike
            measure_run(broker, figures[broker], args, events, messages)
    for broker in brokers:
        with STACKS[broker][1]() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            figures[broker].delays = freshness(bootstrap, redis_url, work, args.fresh_rate, args.fresh_seconds)
        print(f"{broker} freshness: {len(figures[broker].delays)} probes, p99 "
              f"{percentile(figures[broker].delays, 0.99):.2f} s", flush=True)
    with STACKS[brokers[0]][1]() as (bootstrap, redis_url, work):  # the state's size: any broker
        create_topics(bootstrap, redis_url, work)
        rss = peak_rss(bootstrap, redis_url, work, args.rss_customers)
    print(f"peak RSS with {args.rss_customers:,} customers: {rss.rss_mib:.0f} MiB; Redis {rss.per_customer:.0f} "
          f"bytes a customer, {rss.per_event:.0f} an event held", flush=True)
    pure = in_process(args.events, args.customers, now)
    print(f"in-process: parse {pure[0]:.2f} us, step {pure[1]:.2f} us an event", flush=True)
    grown = [scale.at_scale(STACKS[brokers[0]][1], int(c), args.events, pipeline)
             for c in args.scale_customers.split(",") if c.strip()]
    for big in grown:
        print(f"{big.customers:,} customers in state: {big.rate:,.0f} events/s (registrations "
              f"{big.registration_rate:,.0f}/s, peak RSS {big.rss_mib:.0f} MiB)", flush=True)
    zipf: tuple[float, float] | None = None
    if args.zipf:
        # generated now: the events' ages keep off the window edges only for a few minutes
        zipf_events = scale.zipf_events(args.events, args.customers, time.time(), args.zipf)
        with STACKS[brokers[0]][1]() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, wire(zipf_events, TOPICS))
            zipf = (pipeline(bootstrap, redis_url, len(zipf_events), zipf_events, work)[0],
                    scale.top_share(zipf_events, args.customers))
        print(f"zipf: {zipf[0]:,.0f} events/s", flush=True)
    skew = skewed.measure()  # one customer with many events: in-process and on a redis-server of its own
    for row in skew:
        print(f"skewed customer, {skewed.describe(row)}", flush=True)
    load.append(os.getloadavg()[0])
    report(args, size, figures, rss, load, time.monotonic() - started, skew, grown, zipf, pure)
    return 0


def measure_run(broker: str, fig: Figures, args: argparse.Namespace, events: list[tuple[str, dict[str, Any]]],
                messages: list[tuple[str, bytes, bytes]]) -> None:
    """One run's throughput rows on ``broker``, each on a fresh broker and Redis with the same events.
    Without the record cache, two workers and Redis Cluster: on tansu only (they measure the worker and
    Redis, not the broker)."""
    stack_of = STACKS[broker][1]
    with stack_of() as (bootstrap, redis_url, work):
        create_topics(bootstrap, redis_url, work)
        produce(bootstrap, messages)
        fig.raw.append(raw_ceiling(bootstrap, len(messages)))
        fig.naive.append(naive_faust(bootstrap, len(messages), work))
        peer = quix_streams(bootstrap, len(messages), work)
        if peer is not None:
            fig.quix.append(peer[0])
            fig.quix_ready.append(peer[1])
            plain = quix_streams(bootstrap, len(messages), work, "--per-key")
            fig.quix_key.append(plain[0] if plain else 0.0)
        rate, up = pipeline(bootstrap, redis_url, len(messages), events, work)
        fig.ours.append(rate)
        fig.ready.append(up)
    if broker == "tansu":
        with stack_of() as (bootstrap, redis_url, work):  # every record read from Redis, none cached
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            fig.uncached.append(pipeline(bootstrap, redis_url, len(messages), events, work,
                                         ADVOCACY_STATE_CACHE_CUSTOMERS="0")[0])
        with stack_of() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            fig.two.append(two_workers(bootstrap, redis_url, len(messages), events, work))
        with cluster_stack() as (bootstrap, redis_url, work):
            create_topics(bootstrap, redis_url, work)
            produce(bootstrap, messages)
            fig.clustered.append(pipeline(bootstrap, redis_url, len(messages), events, work,
                                          ADVOCACY_REDIS_CLUSTER="true")[0])
    more = (f", without record cache {fig.uncached[-1]:,.0f}/s (exact), two workers {fig.two[-1]:,.0f}/s (exact), "
            f"on Redis Cluster {fig.clustered[-1]:,.0f}/s (exact)" if fig.uncached else "")
    print(f"run {len(fig.raw)} on {broker}: raw {fig.raw[-1]:,.0f}/s  naive faust {fig.naive[-1]:,.0f}/s  "
          f"pipeline {fig.ours[-1]:,.0f}/s (exact){more}  ready {fig.ready[-1]:.1f} s", flush=True)


def _rate(values: list[float], *against: tuple[str, list[float]]) -> str:
    """The median rate, and its ratio to the medians of ``against``; a dash when not measured."""
    if not values:
        return "-"
    med = statistics.median(values)
    ratios = ", ".join(f"{med / statistics.median(other):.2f}x {name}" for name, other in against if other)
    return f"{med:,.0f} events/s" + (f" ({ratios})" if ratios else "")


def _delays(delays: list[float]) -> str:
    if not delays:
        return "-"
    return (f"p50 {percentile(delays, 0.5):.2f} s, p95 {percentile(delays, 0.95):.2f} s, "
            f"p99 {percentile(delays, 0.99):.2f} s ({len(delays)} probes)")


def _skewed_table(skew: list[skewed.Row]) -> list[str]:
    """One customer with many events in retention: a row per record size (tests/bench/skewed.py)."""
    return [
        ("One customer with many events in retention (`python -m tests.bench.skewed`): one more event onto a "
        "record of N events (4/5 actions, 1/5 tickets). The step is the pure step in this process (CPU time "
        "per event, best of 3 x 200 steps, each onto the record the last one made): events in time order (the "
        "common case), then late (100 actions behind the newest held one: a late ticket credits those again). "
        "The commit is `Store.apply` of one event in time order on a redis-server of its own (wall time, the "
        "round trip included); the bytes are what the stored record grew by per commit (the events appended, "
        "not the record rewritten); the cold read is a cache miss (MGET and decode of the whole record)."), "",
        ("| record | step, in time order | step, late | commit, one event | written per commit | stored "
        "| cold read |"),
        "|---|---|---|---|---|---|---|",
        *[f"| {row.size:,} events | {row.step_us:.1f} us | {row.late_us:,.1f} us | {row.commit_ms:.2f} ms | "
          f"{row.grown:.0f} bytes | {row.record_kb:,.0f} KiB | {row.read_ms:.1f} ms |" for row in skew],
        "",
    ]


def report(args: argparse.Namespace, size: float, figures: dict[str, Figures], rss: Memory, load: list[float],
           took: float, skew: list[skewed.Row], grown: list[scale.Scale], zipf: tuple[float, float] | None,
           pure: tuple[float, float]) -> None:
    med = statistics.median
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    brokers = list(figures)
    rows: list[tuple[str, Callable[[Figures], str], str]] = [
        ("raw aiokafka consume + json decode (ceiling)", lambda f: _rate(f.raw), ""),
        ("naive Faust agent, per-event tumbling-table update", lambda f: _rate(f.naive, ("raw", f.raw)), ""),
        ("Quix Streams 3.28.1: count per segment (group_by) in a 1 h tumbling window, at-least-once, RocksDB state",
         lambda f: _rate(f.quix, ("raw", f.raw)), ""),
        ("Quix Streams 3.28.1: its plain windowed count, per message key (the customer), same settings",
         lambda f: _rate(f.quix_key, ("raw", f.raw)), ""),
        ("this pipeline (validate, dedup, attribution, windows, Redis, to exact /kpis)",
         lambda f: _rate(f.ours, ("raw", f.raw), ("naive", f.naive), ("Quix", f.quix)), ">= 100,000 events/s"),
        ("the same, without the record cache (every customer read from Redis)",
         lambda f: _rate(f.uncached, ("raw", f.raw), ("naive", f.naive)), ""),
        ("the same on Redis Cluster (three masters, three replicas, on this machine; exact)",
         lambda f: _rate(f.clustered, ("single Redis", f.ours)), ""),
        ("two workers on this machine (two processes, one consumer group; same events, exact)",
         lambda f: _rate(f.two, ("raw", f.raw), ("one worker", f.ours)), ""),
        (f"freshness at {args.fresh_rate:,} events/s for {args.fresh_seconds:.0f} s (publish -> /kpis)",
         lambda f: _delays(f.delays), "p99 <= 1 s"),
        ("worker start-up to ready (a new consumer group)",
         lambda f: f"{med(f.ready):.1f} s ({', '.join(f'{v:.1f}' for v in f.ready)})" if f.ready else "-", "<= 5 s"),
        ("Quix Streams start-up (launch to its first event counted, events already published)",
         lambda f: f"{med(f.quix_ready):.1f} s ({', '.join(f'{v:.1f}' for v in f.quix_ready)})"
         if f.quix_ready else "-", ""),
    ]
    names = [STACKS[b][0] for b in brokers]
    table = [f"| what | {' | '.join(names)} | target |", "|---|" + "---|" * len(brokers) + "---|",
             *[f"| {what} | {' | '.join(cell(figures[b]) for b in brokers)} | {target} |"
               for what, cell, target in rows],
             (f"| peak worker RSS, {args.rss_customers:,} customers in state (on {names[0]}) | "
              f"{rss.rss_mib:.0f} MiB |{' |' * (len(brokers) - 1)} <= 300 MB |"),
             (f"| Redis memory per customer (registration) / per retained event (one referral each), "
              f"{args.rss_customers:,} customers | {rss.per_customer:.0f} / {rss.per_event:.0f} bytes "
              f"|{' |' * (len(brokers) - 1)} |")]
    blank = " |" * (len(brokers) - 1)
    table.append(f"| in this process, the pure part of the pipeline's cost: validation (`events.parse`) + the "
                 f"record step, tally and bucket counts, best of 3 passes over the same events | {pure[0]:.1f} + "
                 f"{pure[1]:.1f} = {sum(pure):.1f} us an event |{blank} <= 4 us (the whole in-process cost) |")
    for row in grown:
        table += [
            (f"| this pipeline with {row.customers:,} customers in state (the same events, their customers drawn "
             f"among them; registrations stored first, then a new worker: a cold record cache; exact) | "
             f"{row.rate:,.0f} events/s ({row.rate / med(figures[brokers[0]].ours):.2f}x "
             f"{args.customers:,} customers) |{blank} flat |"),
            (f"| storing {row.customers:,} registrations (every event a customer new to the state) | "
             f"{row.registration_rate:,.0f} events/s |{blank} |"),
            (f"| peak worker RSS while storing them, {row.customers:,} customers in state | {row.rss_mib:.0f} MiB |"
             f"{blank} <= 300 MB |")]
    if zipf is not None:
        table.append(f"| this pipeline, customers drawn Zipf (s = {args.zipf:g}: the top 1% hold {zipf[1]:.0%} of the "
                     f"actions and tickets; exact) | {zipf[0]:,.0f} events/s "
                     f"({zipf[0] / med(figures[brokers[0]].ours):.2f}x uniform) |{blank} flat |")
    per_run = [f"Per run on {STACKS[b][0]}: raw {', '.join(f'{v:,.0f}' for v in f.raw)}; naive Faust "
               f"{', '.join(f'{v:,.0f}' for v in f.naive)}; pipeline {', '.join(f'{v:,.0f}' for v in f.ours)}"
               + (f"; without cache {', '.join(f'{v:,.0f}' for v in f.uncached)}" if f.uncached else "")
               + (f"; two workers {', '.join(f'{v:,.0f}' for v in f.two)}" if f.two else "")
               + (f"; Redis Cluster {', '.join(f'{v:,.0f}' for v in f.clustered)}" if f.clustered else "")
               + (f"; Quix Streams {', '.join(f'{v:,.0f}' for v in f.quix)}" if f.quix else "")
               + " events/s."
               for b, f in figures.items()]
    runs = "the median of 1 run" if args.runs == 1 else f"medians of {args.runs} runs"
    lines = [
        "# Benchmarks", "",
        (f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, {' and '.join(names)} (one node, the broker's default group "
        f"settings), each with redis-server on loopback, {args.events:,} events of {size:.0f} bytes on average "
        f"over 4 topics x 4 partitions, {args.customers:,} customers; {runs}, each on a fresh "
        f"broker and Redis, the brokers taking turns. The run took {took / 60:.0f} min; load average "
        f"{load[0]:.1f} at its start, {load[-1]:.1f} at its end.{' ' + args.note if args.note else ''}"), "",
        *table, "",
        *[line + "\n" for line in per_run],
        ("The pipeline's rate counts from the worker being ready to every event stored (each partition's "
        "position in the state at its end offset); /kpis must then show the numbers computed independently "
        "from the events (the benchmark fails otherwise)."), "",
        *_skewed_table(skew),
    ]
    notes = Path(args.out).with_name("benchmarks-notes.md")
    if notes.exists():
        lines += [notes.read_text()]
    previous = Path(args.out).read_text() if Path(args.out).exists() else ""
    kept = re.search(re.escape(ENDPOINTS[0]) + ".*?" + re.escape(ENDPOINTS[1]), previous, re.DOTALL)
    if kept:  # `make bench-web`'s section
        lines += ["", kept[0], ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
