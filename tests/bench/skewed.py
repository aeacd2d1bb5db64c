"""One customer with tens of thousands of events (issues 13 and 15): what one more event costs.

    python -m tests.bench.skewed [--sizes 1000,10000,50000] [--repeat 3]

For each record size N (4/5 actions, 1/5 tickets): the in-process step (``step_speed.skewed``,
CPU time per event, events in time order and late), then ``Store.apply`` on a redis-server of its
own on loopback: one event per commit onto that customer's record, in time order, every 10th a
ticket (wall time per commit, the Redis round trip included), the bytes the record grew by per
commit (what the commit wrote: O(events added), not O(record)), and a cold read of the record (a
cache miss: the MGET and the decode of the whole record). ``make bench`` reports the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from stream.embedded import free_port, start_redis, stop
from stream.event import Event
from stream.state import Store
from tests.bench.step_speed import _rules
from tests.bench.step_speed import skewed as step_cost

SIZES = (1000, 10_000, 50_000)
COMMITS = 200


@dataclass
class Row:
    size: int
    step_us: float  # in-process step, one event in time order (CPU time)
    late_us: float  # the same, the events inside the record's time span
    commit_ms: float  # Store.apply of one event onto the record, Redis included (wall time)
    grown: float  # bytes the stored record grew by per commit
    record_kb: float  # the stored record's size
    read_ms: float  # a cold read: MGET and decode of the whole record


async def _store_figures(redis_url: str, size: int, now_ms: int) -> tuple[float, float, float, float]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = Store(client, f"skewed-{size}-{os.urandom(4).hex()}", _rules())
        await store.check_rules()
        base = now_ms * 1000 - 3_600_000_000
        seed = [Event("referral", f"f{i}", "hot", base + i * 1000) for i in range(size * 4 // 5)]
        seed += [Event("ticket", f"t{i}", "hot", base + i * 5000, team=f"team{i % 4}") for i in range(size // 5)]
        await store.apply(seed, now_ms)
        key = store.customer_key("hot")
        before = await client.strlen(key)
        start = base + size * 5000 + 1000
        started = time.perf_counter()
        for i in range(COMMITS):
            kind = "ticket" if i % 10 == 0 else "referral"
            event = Event(kind, f"n{i}", "hot", start + i * 1000, team="team0" if kind == "ticket" else None)
            outcomes = await store.apply([event], now_ms)
            assert outcomes["applied"] == 1, outcomes
        commit_ms = (time.perf_counter() - started) * 1000 / COMMITS
        after = await client.strlen(key)
        store.cache.clear()
        started = time.perf_counter()
        read = await store._read(store.shards[store.shard_of("hot")], ["hot"])
        read_ms = (time.perf_counter() - started) * 1000
        assert len(read["hot"].actions) + len(read["hot"].tickets) == size // 5 + size * 4 // 5 + COMMITS
        return commit_ms, (after - before) / COMMITS, after / 1024, read_ms
    finally:
        await client.aclose()


def measure(sizes: tuple[int, ...] = SIZES, repeat: int = 3) -> list[Row]:
    now_ms = int(time.time() * 1000)
    rules = _rules()
    rows = []
    with tempfile.TemporaryDirectory(prefix="skewed-") as work:
        port = free_port()
        redis = start_redis(port, Path(work), aof=False)
        try:
            for size in sizes:
                step_us = step_cost(size, repeat, now_ms, rules) * 1e6
                late_us = step_cost(size, repeat, now_ms, rules, late=True) * 1e6
                commit = asyncio.run(_store_figures(f"redis://127.0.0.1:{port}/0", size, now_ms))
                rows.append(Row(size, step_us, late_us, *commit))
        finally:
            stop(redis)
    return rows


def describe(row: Row) -> str:
    return (f"{row.size:,} events: step {row.step_us:.1f} us in time order, {row.late_us:.1f} us late; "
            f"commit {row.commit_ms:.2f} ms, record +{row.grown:.0f} bytes per commit ({row.record_kb:,.0f} KiB "
            f"stored); cold read {row.read_ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for row in measure(tuple(int(n) for n in args.sizes.split(",")), args.repeat):
        print(describe(row), flush=True)


if __name__ == "__main__":
    main()
