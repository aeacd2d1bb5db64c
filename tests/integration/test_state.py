"""The Redis state against a real redis-server: atomic, idempotent, concurrent-safe."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from stream.errors import StateError, StateUnavailable
from stream.event import Event
from stream.events import parse
from stream.kpi.record import Customer
from stream.kpi.totals import report
from stream.kpi.windows import Rules, Window
from stream.state import Store
from tests.conftest import Stack
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build

pytestmark = pytest.mark.integration

RULES = Rules(tuple(Window(n, s) for n, s in WINDOWS.items()), ATTRIBUTION * 1000)
KIND_TOPICS = {k: k for k in ("review", "referral", "ticket", "customer")}


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(stack.redis_url)
    yield c
    await c.aclose()


def _events(seed: int, now: float) -> tuple[list[tuple[str, dict]], list[Event]]:
    sc = build(now, KIND_TOPICS, seed=seed, customers=30)
    valid = sc.all_valid()
    import orjson

    events = [parse(kind, orjson.dumps(e), int(now * 1000), longest_window_ms=90 * 86400 * 1000,
                    attribution_ms=7 * 86400 * 1000, future_tolerance_ms=300_000, max_bytes=10**6) for kind, e in valid]
    return valid, events


async def _store(client: aioredis.Redis, prefix: str, **caps: int) -> Store:
    store = Store(client, f"{prefix}-{random.getrandbits(32)}", RULES, **caps)
    await store.check_rules()  # what a worker does at start-up: writes the state's meta record
    return store


async def _kpis(store: Store, now: float) -> dict:
    return report(await store.totals(int(now * 1000)), RULES.windows)


async def test_replaying_every_batch_changes_nothing(client: aioredis.Redis) -> None:
    """Applying the same events again (a crash replay) leaves the totals as they were."""
    now = time.time()
    valid, events = _events(3, now)
    store = await _store(client, "idem")
    first = await store.apply(events, int(now * 1000))
    before = await _kpis(store, now)
    again = await store.apply(events, int(now * 1000))
    assert again["applied"] == 0
    assert again["duplicate"] == first["applied"] + first["duplicate"] - (again["ignored"] - first["ignored"])
    assert await _kpis(store, now) == before == expected_kpis(valid, now, WINDOWS, ATTRIBUTION)


@pytest.mark.parametrize("cache_size", [100_000, 0])
async def test_concurrent_workers_racing_on_the_same_customers_count_each_event_once(
        stack: Stack, cache_size: int) -> None:
    """Four stores on four connections apply overlapping shuffled batches at once: exact totals,
    whether each store keeps records in its cache (stale ones caught on commit) or not."""
    now = time.time()
    valid, events = _events(8, now)
    ns = f"race-{random.getrandbits(32)}"
    clients = [aioredis.Redis.from_url(stack.redis_url) for _ in range(4)]
    stores = [Store(c, ns, RULES, cache_size=cache_size) for c in clients]
    await stores[0].check_rules()
    rng = random.Random(8)

    async def run(store: Store) -> dict[str, int]:
        mine = events[:] + rng.sample(events, len(events) // 3)  # overlap = duplicate delivery
        rng.shuffle(mine)
        totals = {"conflicts": 0}
        for i in range(0, len(mine), 17):
            out = await store.apply(mine[i:i + 17], int(now * 1000))
            totals["conflicts"] += out["conflicts"]
        return totals

    try:
        results = await asyncio.gather(*(run(s) for s in stores))
        assert sum(r["conflicts"] for r in results) > 0, "the race never happened; the test proves nothing"
        assert await _kpis(stores[0], now) == expected_kpis(valid, now, WINDOWS, ATTRIBUTION)
    finally:
        for c in clients:
            await c.aclose()


async def test_a_registration_arriving_last_moves_counted_actions_out_of_unknown(
        client: aioredis.Redis) -> None:
    """Actions stored under 'unknown' move to the segment of a registration processed later."""
    now = time.time()
    now_ms = int(now * 1000)
    store = await _store(client, "late")
    action = Event("referral", "r1", "c1", (now_ms - 600_000) * 1000)
    await store.apply([action], now_ms)
    assert (await store.totals(now_ms)).actions[("unknown", "1h")] == 1
    await store.apply([Event("customer", "g1", "c1", (now_ms - 86_400_000) * 1000, segment="smb",
                             status="active")], now_ms)
    totals = await store.totals(now_ms)
    assert totals.actions[("unknown", "1h")] == 0
    assert totals.actions[("smb", "1h")] == 1
    assert totals.active == {"smb": 1}


async def test_changing_windows_on_existing_state_is_refused(client: aioredis.Redis) -> None:
    """State built with one set of windows is not silently mixed with another."""
    ns = f"rules-{random.getrandbits(32)}"
    await Store(client, ns, RULES).check_rules()
    other = Rules(RULES.windows[:2], RULES.attribution_ms)
    with pytest.raises(StateError, match="ADVOCACY_APP_ID"):
        await Store(client, ns, other).check_rules()


async def test_an_unreachable_redis_raises_state_unavailable() -> None:
    """A dead Redis is reported as StateUnavailable (the pipeline retries), not a crash."""
    from stream.embedded import free_port

    c = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(StateUnavailable):
            await Store(c, "x", RULES).apply([Event("referral", "r1", "c1", int(time.time() * 1_000_000))],
                                             int(time.time() * 1000))
    finally:
        await c.aclose()


async def test_pruning_drops_only_what_no_window_can_see(client: aioredis.Redis) -> None:
    """After prune, every window reads the same totals as before."""
    now = time.time()
    _, events = _events(4, now)
    store = await _store(client, "prune")
    await store.apply(events, int(now * 1000))
    before = await _kpis(store, now)
    await store.prune(int(now * 1000))
    assert await _kpis(store, now) == before


async def test_names_over_the_cap_fold_into_other_and_stay_there(client: aioredis.Redis) -> None:
    """With a cap of 3 segments, later names count under '_other', whatever the order of batches."""
    now_ms = int(time.time() * 1000)
    store = await _store(client, "cap", max_segments=3, max_teams=2)
    actions = [Event("referral", f"r{i}", f"c{i}", (now_ms - 60_000) * 1000, segment=f"s{i}") for i in range(6)]
    tickets = [Event("ticket", f"t{i}", f"c{i}", (now_ms - 120_000) * 1000, team=f"team{i}") for i in range(4)]
    first = await store.apply(actions[:2] + tickets[:1], now_ms)
    assert first["folded"] == 0
    out = await store.apply(actions[2:] + tickets[1:], now_ms)
    assert out["folded"] == 3 + 2  # s3, s4, s5 and team2, team3 (names are admitted in sorted order)
    totals = await store.totals(now_ms)
    segments = {s for s, w in totals.actions if w == "1h" and totals.actions[(s, w)]}
    assert segments == {"s0", "s1", "s2", "_other"}
    assert totals.actions[("_other", "1h")] == 3
    assert totals.interactions[("_other", "1h")] == 2
    again = await store.apply(actions + tickets, now_ms)  # a replay changes nothing
    assert again["applied"] == 0
    assert await store.totals(now_ms) == totals


async def test_positions_move_only_over_batches_that_start_at_or_before_them(client: aioredis.Redis) -> None:
    """The commit moves a partition's position with the batch's records, in the same atomic call, and
    only over a batch that continues from it; otherwise (or where none is stored) it reports it."""
    now_ms = int(time.time() * 1000)
    store = await _store(client, "pos")
    event = Event("referral", "r1", "c1", (now_ms - 60_000) * 1000)
    _, behind = await store.commit([event], now_ms, "referrals", [("referrals:0", 0, 5)])
    assert behind == {"referrals:0": None}  # no position: nothing moves, the caller re-reads from earliest
    await store.floor_positions({"referrals:0": 0, "referrals:1": 40})
    assert await store.positions(["referrals:0", "referrals:1", "referrals:2"]) == {
        "referrals:0": 0, "referrals:1": 40, "referrals:2": None}
    _, behind = await store.commit([event], now_ms, "referrals", [("referrals:0", 0, 5), ("referrals:1", 45, 50)])
    assert behind == {"referrals:1": 40}  # offsets 40-44 are not in the state: read again from 40
    _, behind = await store.commit([], now_ms, "referrals", [("referrals:0", 3, 9), ("referrals:1", 40, 50)])
    assert behind == {}
    assert await store.positions(["referrals:0", "referrals:1"]) == {"referrals:0": 9, "referrals:1": 50}
    _, behind = await store.commit([], now_ms, "referrals", [("referrals:0", 2, 6)])  # a stale worker's batch
    assert behind == {}
    assert await store.positions(["referrals:0"]) == {"referrals:0": 9}
    await store.floor_positions({"referrals:0": 4, "referrals:1": 70})  # only ever raised
    assert await store.positions(["referrals:0", "referrals:1"]) == {"referrals:0": 9, "referrals:1": 70}


async def test_state_that_vanished_starts_again_and_asks_for_every_partition_from_its_start(
        client: aioredis.Redis) -> None:
    """If the app's keys disappear (Redis restarted empty), reads answer (empty) and the next commit
    stores its events, recreates the state's record of its rules, and reports the partition's position
    missing: the worker re-reads every partition from its earliest offset and the numbers come back."""
    now_ms = int(time.time() * 1000)
    store = await _store(client, "lost")
    await store.floor_positions({"referrals:0": 0})
    await store.commit([Event("referral", "r1", "c1", (now_ms - 60_000) * 1000)], now_ms, "referrals",
                       [("referrals:0", 0, 1)])
    keys = [k async for k in client.scan_iter(f"{store.ns}:*")]
    await client.delete(*keys)
    assert not await store.has_state()
    assert (await store.totals(now_ms)).actions == {}
    at_us = (now_ms - 60_000) * 1000
    outcomes, behind = await store.commit([Event("referral", "r2", "c1", at_us)], now_ms, "referrals",
                                          [("referrals:0", 1, 2)])
    assert outcomes["applied"] == 1
    assert behind == {"referrals:0": None}
    assert await store.has_state()
    await store.check_rules()  # the recreated record carries the same rules
    await store.floor_positions({"referrals:0": 0})
    outcomes, behind = await store.commit([Event("referral", "r1", "c1", at_us), Event("referral", "r2", "c1", at_us)],
                                          now_ms, "referrals", [("referrals:0", 0, 2)])
    assert (outcomes["applied"], outcomes["duplicate"], behind) == (1, 1, {})
    assert (await store.totals(now_ms)).actions[("unknown", "1h")] == 2


async def test_a_stale_cached_record_is_caught_and_re_read(stack: Stack) -> None:
    """Worker A caches a customer; worker B changes it; A's next batch conflicts, re-reads the
    record and counts on top of B's events, not over them."""
    now_ms = int(time.time() * 1000)
    ns = f"stale-{random.getrandbits(32)}"
    clients = [aioredis.Redis.from_url(stack.redis_url) for _ in range(2)]
    a, b = (Store(c, ns, RULES) for c in clients)
    await a.check_rules()
    try:
        await a.apply([Event("customer", "g1", "c1", (now_ms - 86_400_000) * 1000, segment="smb",
                             status="active")], now_ms)
        await b.apply([Event("referral", "f1", "c1", (now_ms - 60_000) * 1000)], now_ms)
        out = await a.apply([Event("referral", "f2", "c1", (now_ms - 60_000) * 1000),
                             Event("referral", "f1", "c1", (now_ms - 60_000) * 1000)], now_ms)
        assert out["conflicts"] == 1
        assert (out["applied"], out["duplicate"]) == (1, 1)  # f1 was B's: seen after the re-read
        assert (await a.totals(now_ms)).actions[("smb", "1h")] == 2
        assert a.cache["c1"].version == (await clients[0].get(a.customer_key("c1")) or b"").split(b"|")[0].decode()
    finally:
        for c in clients:
            await c.aclose()


async def test_a_record_deleted_and_written_again_is_not_mistaken_for_the_cached_one(
        stack: Stack) -> None:
    """A record expires (deleted) and another worker writes a new one for the same customer: the
    cache's copy never matches it (versions never repeat), so nothing is lost or counted twice."""
    now_ms = int(time.time() * 1000)
    ns = f"aba-{random.getrandbits(32)}"
    clients = [aioredis.Redis.from_url(stack.redis_url) for _ in range(2)]
    a, b = (Store(c, ns, RULES) for c in clients)
    await a.check_rules()
    try:
        await a.apply([Event("referral", "f1", "c1", (now_ms - 60_000) * 1000, segment="smb")], now_ms)
        await clients[0].delete(a.customer_key("c1"))  # as if its TTL ran out
        await b.apply([Event("referral", "f2", "c1", (now_ms - 60_000) * 1000, segment="smb")], now_ms)
        out = await a.apply([Event("referral", "f1", "c1", (now_ms - 60_000) * 1000, segment="smb"),
                             Event("referral", "f3", "c1", (now_ms - 60_000) * 1000, segment="smb")], now_ms)
        assert out["conflicts"] == 1
        assert out["applied"] == 2  # f1's record was gone: it is counted again, as Redis says
        stored = await clients[0].get(a.customer_key("c1"))
        assert stored is not None
        assert b'"f:f2"' in stored
        assert b'"f:f3"' in stored
        assert b'"f:f1"' in stored
    finally:
        for c in clients:
            await c.aclose()


async def test_the_cache_is_bounded(client: aioredis.Redis) -> None:
    """Least recently used records leave the cache beyond its size."""
    now_ms = int(time.time() * 1000)
    store = Store(client, f"lru-{random.getrandbits(32)}", RULES, cache_size=10)
    await store.check_rules()
    for i in range(30):
        await store.apply([Event("referral", f"f{i}", f"c{i}", (now_ms - 60_000) * 1000)], now_ms)
    assert len(store.cache) == 10
    assert set(store.cache) == {f"c{i}" for i in range(20, 30)}
    assert (await store.totals(now_ms)).actions[("unknown", "1h")] == 30


async def test_records_grow_by_appending_and_read_back_whole(client: aioredis.Redis) -> None:
    """Batches that only add events append them to the stored record; another worker (no cache)
    reads the record back whole: it knows every event (duplicates stay duplicates). A new
    registration rewrites the record whole; so does a record in an older format."""
    import orjson

    from stream.codec import decode

    def same(blob: bytes | None, customer: Customer) -> bool:  # JSON turns tuples into lists
        record = decode(blob)
        return orjson.dumps([record.version, record.registration, record.actions, record.tickets]) == \
            orjson.dumps([customer.version, customer.registration, customer.actions, customer.tickets])

    now_ms = int(time.time() * 1000)
    writer = await _store(client, "append")
    key = writer.customer_key("c1")
    await writer.apply([Event("customer", "g1", "c1", (now_ms - 86_400_000) * 1000, segment="smb",
                              status="active")], now_ms)
    for i in range(3):
        await writer.apply([Event("referral", f"f{i}", "c1", (now_ms - 60_000) * 1000),
                            Event("ticket", f"t{i}", "c1", (now_ms - 120_000) * 1000, team="billing")], now_ms)
    stored = await client.get(key)
    assert stored is not None
    assert stored.count(b"\n") == 3
    assert same(stored, writer.cache["c1"])
    reader = Store(client, writer.ns, RULES, cache_size=0)
    again = await reader.apply([Event("referral", "f1", "c1", (now_ms - 60_000) * 1000),
                                Event("ticket", "t2", "c1", (now_ms - 120_000) * 1000, team="billing")], now_ms)
    assert (again["applied"], again["duplicate"]) == (0, 2)
    await writer.apply([Event("customer", "g2", "c1", (now_ms - 3_600_000) * 1000, segment="ent",
                              status="active")], now_ms)
    stored = await client.get(key)
    assert stored is not None
    assert b"\n" not in stored
    assert same(stored, writer.cache["c1"])
    totals = await writer.totals(now_ms)
    assert (totals.actions[("ent", "1h")], totals.actions[("smb", "1h")]) == (3, 0)
    assert {s: n for s, n in totals.active.items() if n} == {"ent": 1}
    legacy = b'7|[null,{"f:f9":[%d,null]},{}]' % (now_ms - 60_000)
    await client.set(writer.customer_key("c2"), legacy)
    out = await reader.apply([Event("referral", "f9", "c2", (now_ms - 60_000) * 1000),
                              Event("referral", "f10", "c2", (now_ms - 60_000) * 1000)], now_ms)
    assert (out["applied"], out["duplicate"]) == (1, 1)
    stored = await client.get(writer.customer_key("c2"))
    assert stored is not None
    assert b"\n" not in stored
    assert not stored.startswith(b"7|")
    assert set(decode(stored).actions) == {"f:f9", "f:f10"}


# --- the numbers at their edges (issue 11) ------------------------------------------------------

DAY_MS = 86_400_000


def _overall_creation(out: dict, window: str) -> tuple[int, int]:
    [row] = [r for r in out["advocacy_creation_overall"] if r["window"] == window]
    return row["advocates_created"], row["support_interactions"]


@pytest.mark.parametrize("one_by_one", [False, True])
async def test_a_customer_credited_to_two_folded_teams_counts_twice_in_other(client: aioredis.Redis,
                                                                            one_by_one: bool) -> None:
    """Issue 11 case 1 in Redis: with the team cap taken by 'aaa', tech and ops fold into _other; a customer
    credited to both counts twice there, so the overall 7d row is 2 advocates / 3 interactions, as uncapped."""
    now_ms = int(time.time() * 1000)
    capped = await _store(client, "fold", max_teams=1)
    plain = await _store(client, "nofold")
    first = [Event("ticket", "t0", "c0", (now_ms - 6 * DAY_MS) * 1000, team="aaa")]
    events = [Event("ticket", "t1", "c1", (now_ms - 5 * DAY_MS) * 1000, team="tech"),
              Event("referral", "f1", "c1", (now_ms - 4 * DAY_MS) * 1000),
              Event("ticket", "t2", "c1", (now_ms - 3 * DAY_MS) * 1000, team="ops"),
              Event("referral", "f2", "c1", (now_ms - 2 * DAY_MS) * 1000)]
    for store in (capped, plain):
        await store.apply(first, now_ms)
        for batch in ([[e] for e in events] if one_by_one else [events]):
            await store.apply(batch, now_ms)
    folded = report(await capped.totals(now_ms), RULES.windows)
    assert _overall_creation(folded, "7d") == _overall_creation(report(await plain.totals(now_ms), RULES.windows),
                                                               "7d") == (2, 3)
    assert {(r["team"], r["advocates_created"]) for r in folded["advocacy_creation"] if r["window"] == "7d"} == {
        ("aaa", 0), ("_other", 2)}
    assert await client.zcard(capped.shards[capped.shard_of("c1")].advocates("_other")) == 2  # per (customer, team)
    # a later ticket of tech re-credits the second referral to tech: ops' credit goes, tech's stays
    await capped.apply([Event("ticket", "t3", "c1", (now_ms - 2 * DAY_MS - 60_000) * 1000, team="tech")], now_ms)
    assert _overall_creation(report(await capped.totals(now_ms), RULES.windows), "7d") == (1, 4)


async def test_a_record_written_in_milliseconds_is_read_and_rewritten_in_microseconds(
        client: aioredis.Redis) -> None:
    """A record stored before microseconds (times in ms, a three-element head, appended batches) is read
    with its times x 1000, recognises its events' copies, and is rewritten whole when it changes."""
    import orjson

    from stream.codec import Tokens

    now_ms = int(time.time() * 1000)
    store = await _store(client, "legacy")
    key = store.customer_key("c1")
    version = Tokens().next()
    old_head = [[now_ms - DAY_MS, "g1", "smb", "active"], {"f:f1": [now_ms - 60_000, None]},
                {"t1": [now_ms - 120_000, "billing"]}]
    await client.set(key, version.encode() + b"|" + orjson.dumps(old_head)
                     + b"\n" + orjson.dumps([{"r:r1": [now_ms - 30_000, "vip"]}, {}]))
    out = await store.apply([Event("referral", "f1", "c1", (now_ms - 60_000) * 1000),
                             Event("review", "r1", "c1", (now_ms - 30_000) * 1000, segment="vip",
                                   review_kind="social"),
                             Event("referral", "f2", "c1", (now_ms - 10_000) * 1000)], now_ms)
    assert (out["applied"], out["duplicate"]) == (1, 2)
    stored = await client.get(key)
    assert stored is not None
    assert b"\n" not in stored
    assert stored.endswith(b',"us"]')
    record = store.cache["c1"]
    assert record.registration == ((now_ms - DAY_MS) * 1000, "g1", "smb", "active")
    assert dict(record.actions) == {"f:f1": ((now_ms - 60_000) * 1000, None), "r:r1": ((now_ms - 30_000) * 1000, "vip"),
                                    "f:f2": ((now_ms - 10_000) * 1000, None)}
    assert dict(record.tickets) == {"t1": ((now_ms - 120_000) * 1000, "billing")}


async def test_differing_copies_of_a_ticket_end_the_same_in_any_order(client: aioredis.Redis) -> None:
    """A ticket re-sent with the same event_id and another team: the greater (time, team) copy is kept,
    whichever copy the store saw first, and the totals agree."""
    now_ms = int(time.time() * 1000)
    copies = [Event("ticket", "t1", "c1", (now_ms - 120_000) * 1000, team="billing"),
              Event("ticket", "t1", "c1", (now_ms - 120_000) * 1000, team="shipping")]
    results = []
    for order in (copies, copies[::-1]):
        store = await _store(client, "copies")
        for event in order:
            await store.apply([event], now_ms)
        totals = await store.totals(now_ms)
        results.append(({k: n for k, n in totals.interactions.items() if n}, dict(store.cache["c1"].tickets)))
    assert results[0] == results[1]
    assert results[0][0] == {(team, w): 1 for team in ["shipping"] for w in WINDOWS}


async def test_events_a_rolled_back_state_lacks_count_again_once_the_cache_is_dropped(client: aioredis.Redis) -> None:
    """After the state loses writes, the worker's cached records are ahead of it: until they are dropped
    (``lost_writes``, on a commit that finds its position behind), a re-read event looks like a duplicate."""
    now_ms = int(time.time() * 1000)
    store = await _store(client, "rollback")
    at_us = (now_ms - 60_000) * 1000
    await store.apply([Event("referral", "r1", "c1", at_us)], now_ms)
    await client.delete(store.customer_key("c1"), store.count_key("a", "unknown", "1h", store.shard_of("c1")))
    assert (await store.apply([Event("referral", "r1", "c1", at_us)], now_ms))["duplicate"] == 1  # the cache
    store.lost_writes()
    assert (await store.apply([Event("referral", "r1", "c1", at_us)], now_ms))["applied"] == 1
    assert (await store.totals(now_ms)).actions[("unknown", "1h")] == 1


async def test_events_the_cap_turns_away_are_passed_on_before_the_write_that_leaves_them_out(
        client: aioredis.Redis) -> None:
    """Over ADVOCACY_MAX_EVENTS_PER_CUSTOMER the turned-away events reach the hook (the pipeline's dead
    letters) before the shard's write: a crash in between leaves the batch unwritten, so it is read again
    and turned away again (sent twice, never lost). The hook sees only what the cap turned away."""
    import dataclasses

    now_ms = int(time.time() * 1000)
    store = Store(client, f"capped-{random.getrandbits(32)}", dataclasses.replace(RULES, max_events=2))
    await store.check_rules()
    await store.floor_positions({"referrals:0": 0})
    held = [Event("referral", f"r{n}", "c1", (now_ms - n * 60_000) * 1000) for n in (1, 2)]
    await store.commit(held, now_ms, "referrals", [("referrals:0", 0, 2)])
    older = Event("referral", "r9", "c1", (now_ms - 9 * 60_000) * 1000)
    other = Event("referral", "x1", "c2", (now_ms - 60_000) * 1000)
    seen: list[list[str]] = []

    async def crash(events: list[Event]) -> None:
        seen.append([e.event_id for e in events])
        assert await store.positions(["referrals:0"]) == {"referrals:0": 2}  # nothing of the batch written yet
        raise ConnectionResetError("worker killed between the dead letters and the write")

    with pytest.raises(ConnectionResetError):
        await store.commit([older, other], now_ms, "referrals", [("referrals:0", 2, 4)], crash)
    assert seen == [["r9"]]
    assert await store.positions(["referrals:0"]) == {"referrals:0": 2}
    store.lost_writes()  # a new worker: nothing cached

    async def send(events: list[Event]) -> None:
        seen.append([e.event_id for e in events])

    outcomes, _ = await store.commit([older, other], now_ms, "referrals", [("referrals:0", 2, 4)], send)
    assert seen == [["r9"], ["r9"]]
    assert outcomes["applied"] + outcomes["duplicate"] == 1  # x1 (its shard may have committed before the crash)
    assert await store.positions(["referrals:0"]) == {"referrals:0": 4}
