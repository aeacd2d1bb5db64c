"""The sharded state: several shards on one redis-server, and a real local Redis Cluster (issue 13)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from stream.config import load_settings
from stream.errors import StateError, StateUnavailable
from stream.event import Event
from stream.events import parse
from stream.kpi.totals import report
from stream.kpi.windows import Rules, Window
from stream.redis_client import redis_client
from stream.redis_cluster import RedisClusterServers
from stream.shards import shard_of
from stream.state import Store
from tests.conftest import Stack
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build

pytestmark = pytest.mark.integration

RULES = Rules(tuple(Window(n, s) for n, s in WINDOWS.items()), ATTRIBUTION * 1000)
KIND_TOPICS = {k: k for k in ("review", "referral", "ticket", "customer")}


def _events(seed: int, now: float, customers: int = 40) -> tuple[list[tuple[str, dict]], list[Event]]:
    valid = build(now, KIND_TOPICS, seed=seed, customers=customers).all_valid()
    events = [parse(kind, orjson.dumps(e), int(now * 1000), longest_window_ms=90 * 86400 * 1000,
                    attribution_ms=7 * 86400 * 1000, future_tolerance_ms=300_000, max_bytes=10**6) for kind, e in valid]
    return valid, events


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(stack.redis_url)
    yield c
    await c.aclose()


async def _store(client: aioredis.Redis | RedisCluster, prefix: str, shards: int, **kw: int) -> Store:
    store = Store(client, f"{prefix}-{random.getrandbits(32)}", RULES, shards=shards, **kw)
    await store.check_rules()
    return store


@pytest.mark.parametrize("shards", [1, 5])
async def test_shards_on_one_redis_give_the_oracles_totals_whatever_the_batches(client: aioredis.Redis,
                                                                                shards: int) -> None:
    """Events applied in shuffled batches of 13, twice over (a replay), with 1 or 5 shards: /kpis equal
    the oracle, and every shard holds only its own customers' records."""
    now = time.time()
    valid, events = _events(21, now)
    store = await _store(client, "sum", shards)
    mixed = events + events[: len(events) // 2]
    random.Random(21).shuffle(mixed)
    for i in range(0, len(mixed), 13):
        await store.apply(mixed[i:i + 13], int(now * 1000))
    assert report(await store.totals(int(now * 1000)), RULES.windows) == expected_kpis(valid, now, WINDOWS,
                                                                                       ATTRIBUTION)
    holding = dict.fromkeys(range(shards), 0)
    for shard in store.shards:
        async for key in client.scan_iter(shard.key("c:*")):
            customer = key.decode().removeprefix(shard.key("c:"))
            assert shard_of(customer, shards) == shard.index
            holding[shard.index] += 1
    assert all(holding.values()), f"a shard holds no customer: {holding}"


async def test_a_conflict_in_one_shard_re_reads_that_shards_customers_only(stack: Stack) -> None:
    """Worker A caches customers of two shards; worker B changes one of them: A's next batch conflicts on
    that customer alone (the other shard commits at once), and counts on top of B's event."""
    now_ms = int(time.time() * 1000)
    clients = [aioredis.Redis.from_url(stack.redis_url) for _ in range(2)]
    ns = f"pershard-{random.getrandbits(32)}"
    a, b = (Store(c, ns, RULES, shards=4) for c in clients)
    await a.check_rules()
    first = "c1"
    other = next(f"c{i}" for i in range(2, 100) if a.shard_of(f"c{i}") != a.shard_of(first))
    at = (now_ms - 60_000) * 1000
    try:
        await a.apply([Event("referral", "f1", first, at), Event("referral", "f2", other, at)], now_ms)
        await b.apply([Event("referral", "f3", first, at)], now_ms)
        out = await a.apply([Event("referral", "f4", first, at), Event("referral", "f5", other, at),
                             Event("referral", "f3", first, at)], now_ms)
        assert (out["conflicts"], out["applied"], out["duplicate"]) == (1, 2, 1)
        assert (await a.totals(now_ms)).actions[("unknown", "1h")] == 5
    finally:
        for c in clients:
            await c.aclose()


async def test_positions_are_the_lowest_over_shards_and_a_half_committed_batch_is_harmless(
        client: aioredis.Redis) -> None:
    """A batch whose call reached some shards only (the worker died in between) leaves the partition's
    position at the batch's start (the lowest over shards): the batch read again from there counts each
    event once, and moves every shard's position."""
    now = time.time()
    now_ms = int(now * 1000)
    valid, events = _events(5, now)
    store = await _store(client, "half", 4)
    await store.floor_positions({"p:0": 0})
    by_shard: dict[int, dict[str, list[Event]]] = {}
    for event in events:
        by_shard.setdefault(store.shard_of(event.customer_id), {}).setdefault(event.customer_id, []).append(event)
    assert len(by_shard) == 4
    progress = orjson.dumps([("p:0", 0, len(events))])
    await store._resolve_labels([], {"segment": {e.segment for e in events if e.segment},
                                     "team": {e.team for e in events if e.team}})  # as commit() does first
    applied = 0
    for k in (0, 2):  # the batch's call reached shards 0 and 2, then the worker died
        applied += (await store._commit_shard(store.shards[k], by_shard[k], now_ms, "", 0, progress))[0]["applied"]
    assert await client.hget(store.shards[0].pos, "p:0") == str(len(events)).encode()
    assert await store.positions(["p:0", "p:1"]) == {"p:0": 0, "p:1": None}
    fresh = Store(client, store.ns, RULES, shards=4)  # another worker takes the partition over
    outcomes, behind = await fresh.commit(events, now_ms, "", [("p:0", 0, len(events))])
    assert behind == {}
    assert await store.positions(["p:0"]) == {"p:0": len(events)}
    once = await (await _store(client, "once", 4)).apply(events, now_ms)
    assert 0 < applied < once["applied"]
    assert applied + outcomes["applied"] == once["applied"]
    assert report(await fresh.totals(now_ms), RULES.windows) == expected_kpis(valid, now, WINDOWS, ATTRIBUTION)


async def test_a_shard_that_lost_its_writes_reports_its_position_and_the_lowest_wins(client: aioredis.Redis) -> None:
    """One shard's positions are older than the others' (it came back from a snapshot): the next batch
    reports that shard's position, the lowest, from which the partition is read again."""
    now_ms = int(time.time() * 1000)
    store = await _store(client, "lost", 3)
    await store.floor_positions({"p:0": 0})
    _, behind = await store.commit([], now_ms, "", [("p:0", 0, 50)])
    assert behind == {}
    await client.hset(store.shards[1].pos, "p:0", 20)
    await client.hdel(store.shards[2].pos, "p:0")
    assert await store.positions(["p:0"]) == {"p:0": None}
    _, behind = await store.commit([], now_ms, "", [("p:0", 50, 60)])
    assert behind == {"p:0": None}  # one shard has none: from the start
    await store.floor_positions({"p:0": 0})
    _, behind = await store.commit([], now_ms, "", [("p:0", 50, 60)])
    assert behind == {"p:0": 0}
    assert await store.positions(["p:0"]) == {"p:0": 0}


async def test_state_in_the_unsharded_layout_or_another_shard_count_is_refused_with_one_line(
        client: aioredis.Redis) -> None:
    """State written by the layout of before shards (``{app_id}:meta``), or with another number of shards,
    is never mixed in: start-up stops with one line saying what to do."""
    ns = f"legacy-{random.getrandbits(32)}"
    await client.hset(f"{ns}:meta", "rules", "1h=3600;attribution=604800000;caps=1000,1000")
    with pytest.raises(StateError, match=r"unsharded layout.*replay") as refused:
        await Store(client, ns, RULES, shards=4).check_rules()
    assert "\n" not in str(refused.value)
    assert await Store(client, ns, RULES, shards=4).has_state()
    store = await _store(client, "reshard", 4)
    with pytest.raises(StateError, match=r"shards=4.*ADVOCACY_STATE_SHARDS"):
        await Store(client, store.ns, RULES, shards=6).check_rules()


# --- Redis Cluster ------------------------------------------------------------------------------


async def test_on_redis_cluster_every_call_touches_one_slot_and_the_totals_are_exact(
        redis_cluster: RedisClusterServers) -> None:
    """On three masters with replicas: the worker's own client (ADVOCACY_REDIS_CLUSTER) stores shuffled
    overlapping batches from two stores at once, exact (a call touching two slots would fail with
    CROSSSLOT); shards spread over the masters; the label caps work; a read of the totals is two Lua
    calls per shard."""
    settings = load_settings(redis_url=redis_cluster.url, redis_cluster=True)
    clients = [redis_client(settings) for _ in range(2)]
    assert all(isinstance(c, RedisCluster) for c in clients)
    now = time.time()
    valid, events = _events(33, now, customers=60)
    ns = f"cluster-{random.getrandbits(32)}"
    stores = [Store(c, ns, RULES, shards=12, max_teams=3) for c in clients]
    try:
        await stores[0].check_rules()
        rng = random.Random(33)

        async def run(store: Store) -> int:
            mine = events + rng.sample(events, len(events) // 3)
            rng.shuffle(mine)
            conflicts = 0
            for i in range(0, len(mine), 17):
                conflicts += (await store.commit(mine[i:i + 17], int(now * 1000), "", [("p:0", 0, 1)]))[0]["conflicts"]
            return conflicts

        await stores[0].floor_positions({"p:0": 0})
        await asyncio.gather(*(run(s) for s in stores))
        got = report(await stores[1].totals(int(now * 1000)), RULES.windows)
        segments = {e["segment"] for _, e in valid if e.get("segment")}
        kept = {"segment": segments, "team": {t.decode() for t in await clients[0].smembers(f"{ns}:admitted:team")}}
        assert len(kept["team"]) == 3
        assert got == expected_kpis(valid, now, WINDOWS, ATTRIBUTION, kept=kept)
        assert await stores[0].positions(["p:0"]) == {"p:0": 1}
        nodes = {clients[0].get_node_from_key(shard.meta).name for shard in stores[0].shards}
        assert len(nodes) == 3, f"12 shards sit on {len(nodes)} of 3 masters"
        masters = [int(n.port) for n in clients[0].get_primaries()]
        before = [_scripts_run(port) for port in masters]
        assert report(await stores[0].totals(int(now * 1000)), RULES.windows) == got
        after = [_scripts_run(port) for port in masters]
        assert sum(a - b for a, b in zip(after, before, strict=True)) == 2 * 12
        await stores[0].prune(int(now * 1000))
        assert report(await stores[0].totals(int(now * 1000)), RULES.windows) == got
        plain = aioredis.Redis.from_url(redis_cluster.url)  # ADVOCACY_REDIS_CLUSTER forgotten
        try:
            with pytest.raises(StateError, match="set ADVOCACY_REDIS_CLUSTER=true"):
                await Store(plain, ns, RULES, shards=12).check_rules()
        finally:
            await plain.aclose()
    finally:
        for c in clients:
            await c.aclose()


async def test_a_redis_cluster_with_no_node_answering_is_unavailable_not_an_error() -> None:
    """The cluster client finding no node is StateUnavailable (retried, /health 503), like a single Redis down."""
    from stream.embedded import free_port

    settings = load_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_cluster=True)
    client = redis_client(settings)
    try:
        with pytest.raises(StateUnavailable):
            await Store(client, "nobody", RULES).has_state()
    finally:
        await client.aclose()


def _scripts_run(port: int) -> int:
    """Lua calls a node has served (commandstats also count the commands run inside scripts)."""
    import redis

    with redis.Redis(port=port) as node:
        return int(node.info("commandstats").get("cmdstat_evalsha", {"calls": 0})["calls"])
