"""The /kpis snapshot against a real redis-server: the totals are read again only when they may have
changed, and a snapshot never serves numbers a commit of another worker, a window moving on by a
bucket, a prune or a lost state has made stale (issue 16)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from stream.embedded import free_port, start_redis, stop
from stream.event import Event
from stream.health import Health
from stream.kpi.totals import report
from stream.kpi.windows import Rules, Window
from stream.metrics import Metrics
from stream.scripts import CHANGED
from stream.snapshot import rfc3339
from stream.state import Store
from stream.web import Api
from tests.scenario import ATTRIBUTION, WINDOWS
from tests.support import require_binary

pytestmark = pytest.mark.integration

RULES = Rules(tuple(Window(n, s) for n, s in WINDOWS.items()), ATTRIBUTION * 1000)
HOUR = RULES.windows[0]
assert HOUR.name == "1h"
assert HOUR.bucket_ms == 150_000
# just before a boundary of the 1 h window's buckets (every window's boundaries fall on these)
BOUNDARY_MS = 1_795_000_050_000 // HOUR.bucket_ms * HOUR.bucket_ms


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binary("redis-server")
    workdir = tmp_path_factory.mktemp("redis-snapshot")
    port = free_port()
    server = start_redis(port, workdir, aof=False)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(server)


class Clock:
    """Redis's time as the test sets it."""

    def __init__(self, now_ms: int) -> None:
        self.ms = now_ms

    async def now_ms(self) -> int:
        return self.ms

    def invalidate(self) -> None:
        pass


class Workers:
    """Two workers' stores on one state, each on its own connection: ``this`` serves /kpis, ``other``
    stores batches and prunes."""

    def __init__(self, this: Store, other: Store, clock: Clock) -> None:
        self.this, self.other, self.clock = this, other, clock
        self.api = Api(this, Metrics(CollectorRegistry()), Health(namespace=this.ns), RULES.windows, clock,
                       refresh_seconds=0.01)

    async def served(self) -> dict[str, Any]:
        """The /kpis body of a snapshot begun after this call (as a client polling gets it)."""
        snapshots = self.api.snapshots
        await self.api.kpis(None)
        runs = snapshots.runs
        while snapshots.runs < runs + 2:  # one begun after the call, and done
            await asyncio.sleep(0.002)
            await self.api.kpis(None)
        status, body, _ = await self.api.kpis(None)
        assert status == 200, body
        return dict(json.loads(body))

    async def truth(self) -> dict[str, Any]:
        """The /kpis body read from the state now, by the other worker."""
        lists = report(await self.other.totals(self.clock.ms), RULES.windows)
        return {"generated_at": rfc3339(self.clock.ms / 1000), **json.loads(json.dumps(lists))}

    async def store(self, events: list[Event]) -> None:
        await self.other.commit(events, self.clock.ms, "review", [("review:0", 0, 1)])


@pytest.fixture
async def workers(redis_url: str) -> AsyncIterator[Workers]:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    ns = f"snap-{random.getrandbits(32)}"
    this, other = (Store(c, ns, RULES) for c in clients)
    for store in (other, this):
        await store.check_rules()  # each worker's start-up
    pair = Workers(this, other, Clock(BOUNDARY_MS - 3000))
    try:
        yield pair
    finally:
        task = pair.api.snapshots._task
        pair.api.snapshots.keep_warm = 0  # the background task ends after its computation in progress
        if task is not None:
            await asyncio.wait_for(task, 5)
        for c in clients:
            await c.aclose()


def _customer(n: int, at_ms: int, prefix: str = "c") -> list[Event]:
    """A registered customer with a ticket and, a second later, a referral (an action credited to the team)."""
    cid = f"{prefix}{n}"
    return [
        Event("customer", f"{cid}-reg", cid, (at_ms - 60_000) * 1000, segment="smb", status="active"),
        Event("ticket", f"{cid}-t", cid, (at_ms - 1000) * 1000, team="billing"),
        Event("referral", f"{cid}-r", cid, at_ms * 1000),
    ]


async def test_another_workers_batch_is_served_by_the_next_snapshot_and_nothing_else_reads(
        workers: Workers) -> None:
    now = workers.clock.ms
    await workers.store(_customer(1, now - 600_000))
    assert await workers.served() == await workers.truth()
    reads = workers.api.latest.reads
    for _ in range(5):  # polled, nothing changed: snapshots without a read
        assert await workers.served() == await workers.truth()
    assert workers.api.latest.reads == reads
    assert workers.api.latest.checks >= reads + 5
    workers.clock.ms += 1500  # another second, the same buckets: generated_at moves on, nothing is read
    assert await workers.served() == await workers.truth()
    assert workers.api.latest.reads == reads
    await workers.store(_customer(2, now - 300_000))  # another worker's batch: the next snapshot has it
    truth = await workers.truth()
    assert truth["advocacy_actions_overall"][0]["actions"] == 2
    assert await workers.served() == truth
    assert workers.api.latest.reads == reads + 1


async def test_a_window_starting_in_another_bucket_is_served_by_the_next_snapshot(workers: Workers) -> None:
    """A referral in the 1 h window's first bucket counts until the window starts a bucket later."""
    start = HOUR.start_ms(workers.clock.ms)
    await workers.store(_customer(1, start + 5))
    before = await workers.truth()
    assert before["advocacy_actions_overall"][0]["actions"] == 1
    assert before["advocacy_creation_overall"][0]["advocates_created"] == 1
    assert await workers.served() == before
    reads = workers.api.latest.reads
    workers.clock.ms = BOUNDARY_MS - 1  # the same buckets to the last millisecond: nothing read
    assert await workers.served() == await workers.truth()
    assert workers.api.latest.reads == reads
    workers.clock.ms = BOUNDARY_MS  # the 1 h window now starts a bucket later
    after = await workers.truth()
    assert after["advocacy_actions_overall"][0]["actions"] == 0
    assert after["advocacy_creation_overall"][0]["advocates_created"] == 0
    assert await workers.served() == after
    assert workers.api.latest.reads == reads + 1


@pytest.mark.parametrize("after", [1, 2])
async def test_a_batch_stored_while_a_snapshot_reads_is_served_by_the_next_one(workers: Workers, after: int) -> None:
    """Another worker commits during a read, after its first or its second call to the state (the marks,
    the totals): the next snapshot has the batch."""
    now = workers.clock.ms
    await workers.store(_customer(1, now - 600_000))
    assert await workers.served() == await workers.truth()
    store = workers.this
    calls = 0

    def wrapped(step: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any) -> Any:
            nonlocal calls
            result = await step(*args)
            calls += 1
            if calls == after:
                await workers.store(_customer(2, now - 300_000))
            return result
        return run

    store.totals = wrapped(store.totals)  # type: ignore[method-assign]
    store.changes = wrapped(store.changes)  # type: ignore[method-assign]
    workers.clock.ms = BOUNDARY_MS + 1000  # a read is due: the window moved on
    await workers.served()
    assert calls >= 2
    truth = await workers.truth()
    assert truth["advocacy_actions_overall"][0]["actions"] == 2
    assert await workers.served() == truth
    assert await workers.served() == truth


async def test_a_prune_changes_no_window_sum_and_moves_the_marks(workers: Workers) -> None:
    """Pruning removes only what no window sums any more (the totals are the same just before and
    after it); it moves the marks all the same, and the snapshot after it is exact."""
    now = workers.clock.ms
    await workers.store(_customer(1, now - HOUR.seconds * 1000 - 140_000))  # in the 1 h hash, out of its window
    await workers.store(_customer(2, now - 600_000))
    assert await workers.served() == await workers.truth()
    marks = await workers.this.changes()
    workers.clock.ms = now + HOUR.bucket_ms * 3
    before = await workers.truth()
    assert await workers.other.prune(workers.clock.ms) > 0
    assert await workers.truth() == before
    assert await workers.this.changes() != marks
    assert await workers.served() == before


async def test_a_state_lost_or_restored_empty_is_served_at_once(workers: Workers) -> None:
    """Redis restarted empty: the marks are gone, so the next snapshot reads (and serves nothing), even
    for state written by a version without marks (start-up marks it)."""
    client = workers.this.client
    await workers.store(_customer(1, workers.clock.ms - 600_000))
    for shard in workers.this.shards:  # as a version without marks left it
        await client.hdel(shard.meta, CHANGED)
    await Store(client, workers.this.ns, RULES).check_rules()  # a worker's start-up
    assert (await workers.served())["advocacy_actions_overall"][0]["actions"] == 1
    await client.flushdb()
    served = await workers.served()
    assert served == await workers.truth()
    assert served["advocacy_actions_overall"][0]["actions"] == 0
    assert served["advocacy_actions"] == []


def test_the_commit_script_marks_the_field_the_reads_compare() -> None:
    """The commit's Lua names the mark by its value, not through CHANGED."""
    from stream.scripts import COMMIT

    assert f"redis.call('HSET', KEYS[1], '{CHANGED}', ARGV[4])" in COMMIT
