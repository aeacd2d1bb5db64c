"""The shared state in Redis and its atomic updates.

The state is split by customer into shards (``stream.shards``), each under one hash tag,
so that it runs the same on a single Redis and on Redis Cluster. Each customer's events
live in one record of its shard, carrying a version. A batch is applied optimistically:
read the records (one MGET per shard), compute the new records and the change to the
totals in pure Python (``stream.kpi``), then one Lua call per shard writes every record
whose version is unchanged *together with* the shard's change to the totals and its
partition positions. A record changed meanwhile by another worker is re-read and that
shard retried. Replaying an event is a no-op because the record already holds its id:
at-least-once delivery gives exactly-once counts.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import orjson

from stream.codec import APPEND, DELETE, SET, Tokens, decode, encode, encode_added
from stream.errors import StateError
from stream.event import Event
from stream.kpi.record import Customer, expires_at_ms
from stream.kpi.totals import Tally
from stream.kpi.windows import Rules
from stream.labels import Client, LabelCap
from stream.redis_client import call
from stream.scripts import CHANGED, COMMIT, FLOOR, PRUNE_HASH
from stream.shards import HEAD, SUM_WINDOWS, Shard, lowest, shard_of
from stream.state_reads import Reads

__all__ = ["DEFAULT_SHARDS", "MAX_ATTEMPTS", "Store", "TurnedAway"]

T = TypeVar("T")
TurnedAway = Callable[[list[Event]], Awaitable[None]]  # events the per-customer cap turned away
DEFAULT_SHARDS = 8

MAX_ATTEMPTS = 50


class Store(Reads):
    """KPI state shared by every worker; ``namespace`` is the app id, split into ``shards``.

    ``cache_size`` customers' records are kept in memory (least recently used out): a
    record read from the cache is as good as one read from Redis, because the commit
    checks its version and a stale one comes back as a conflict, re-read from Redis.
    """

    def __init__(self, client: Client, namespace: str, rules: Rules, max_segments: int = 1000,
                 max_teams: int = 1000, cache_size: int = 100_000, shards: int = DEFAULT_SHARDS) -> None:
        self.client = client
        self.ns = namespace
        self.rules = rules
        self.shards = [Shard(namespace, k) for k in range(shards)]
        self.labels = LabelCap(client, namespace, {"segment": max_segments, "team": max_teams})
        self._commit = client.register_script(COMMIT)
        self._floor = client.register_script(FLOOR)
        self._prune_hash = client.register_script(PRUNE_HASH)
        self._head = client.register_script(HEAD)
        self._sum_windows = client.register_script(SUM_WINDOWS)
        self.cache: OrderedDict[str, Customer] = OrderedDict()
        self.cache_size = cache_size
        self.tokens = Tokens()

    def shard_of(self, customer_id: str) -> int:
        return shard_of(customer_id, len(self.shards))

    def customer_key(self, customer_id: str) -> str:
        return self.shards[self.shard_of(customer_id)].customer(customer_id)

    def count_key(self, kind: str, name: str, window: str, shard: int = 0) -> str:
        return self.shards[shard].count(kind, name, window)

    async def ping(self) -> None:
        """Every shard answers (on a cluster, a PING to any node would not say that)."""
        await self._each(lambda shard: self.client.hexists(shard.meta, "rules"))

    @property
    def fingerprint(self) -> str:
        """The rules the totals are built under (windows, attribution, caps, shards)."""
        fingerprint = ",".join(f"{w.name}={w.seconds}" for w in self.rules.windows)
        fingerprint += f";attribution={self.rules.attribution_ms}"
        fingerprint += f";caps={self.labels.caps['segment']},{self.labels.caps['team']}"
        return fingerprint + f";shards={len(self.shards)}"

    async def check_rules(self) -> None:
        """Refuse to mix totals built under other windows, attribution window, caps or shard count,
        or in the layout of before shards."""
        if await self._call(self.client.exists(self.legacy_meta)):
            raise StateError(
                f"Redis holds state of app {self.ns!r} in the unsharded layout of earlier versions "
                f"(key {self.legacy_meta!r}): replay it into a new app id (python -m stream replay --into "
                "NEW_ID) and run the workers with ADVOCACY_APP_ID=NEW_ID; see docs/runbook.md")
        fingerprint = self.fingerprint
        await self._each(lambda shard: self.client.hsetnx(shard.meta, "rules", fingerprint))
        for raw in await self._each(lambda shard: self.client.hget(shard.meta, "rules")):
            stored = raw.decode() if isinstance(raw, bytes) else raw
            if stored is not None and stored != fingerprint:
                raise StateError(
                    f"Redis state of app {self.ns!r} was built with {stored!r}, not "
                    f"{fingerprint!r}: use another ADVOCACY_APP_ID or replay into empty state"
                    " (ADVOCACY_STATE_SHARDS is part of the state's layout)")
        # state written before the mark (by a version without it): marked now, so that a mark
        # that goes missing later says the state was lost (``changes``)
        await self._each(lambda shard: self.client.hsetnx(shard.meta, CHANGED, self.tokens.next()))

    @property
    def legacy_meta(self) -> str:
        """The meta record of the unsharded layout (before shards)."""
        return f"{self.ns}:meta"

    async def has_state(self) -> bool:
        """Whether this app's state exists (each shard's meta record is written at first start)."""
        found = await self._each(lambda shard: self.client.exists(shard.meta))
        return any(found) or bool(await self._call(self.client.exists(self.legacy_meta)))

    async def apply(self, events: Sequence[Event], now_ms: int, topic: str = "") -> dict[str, int]:
        """Apply valid events atomically, with no partition positions; return outcome counts."""
        outcomes, _ = await self.commit(events, now_ms, topic)
        return outcomes

    async def commit(self, events: Sequence[Event], now_ms: int, topic: str = "",
                     progress: Sequence[tuple[str, int, int]] = (), turned_away: TurnedAway | None = None,
                     ) -> tuple[dict[str, int], dict[str, int | None]]:
        """Apply valid events and move partition positions: one atomic call per shard, all shards at once.

        Per shard, all or nothing: if any of its customers' records changed since it was read,
        nothing of that shard is written, those records are re-read and its part recomputed.
        ``topic`` (optional) records the newest event time seen on it, for freshness.
        ``progress`` is (partition, start, end) per partition the batch covers; every shard
        moves its own positions, even one with no events in the batch. Returns the outcome
        counts and, for partitions whose position in some shard is behind the batch's start
        (the shard lost writes) or missing, the lowest such position (None where missing).
        A shard that fails raises once every other shard is done; the batch is then retried
        whole, which is harmless: the shards that committed find its events and positions.
        Events the per-customer cap turns away (``Tally.rejected``) are passed to ``turned_away``,
        and awaited, *before* the write that leaves them out: a crash between the two then
        re-reads the batch and turns them away again (a dead letter sent twice), never loses
        one. An event turned away stays out whatever comes later (the record's events that
        expire later than it cannot leave before it expires), so an attempt retried after a
        conflict never counts an event already passed on.
        """
        by_customer, newest, names = _group(events)
        await self._resolve_labels([], names)
        parts: dict[int, dict[str, list[Event]]] = {}
        for customer_id, group in by_customer.items():
            parts.setdefault(self.shard_of(customer_id), {})[customer_id] = group
        called = range(len(self.shards)) if progress else sorted(parts)
        progress_arg = orjson.dumps(progress)
        results = await asyncio.gather(
            *(self._commit_shard(self.shards[k], parts.get(k, {}), now_ms, topic, newest, progress_arg, turned_away)
              for k in called), return_exceptions=True)
        outcomes = {"applied": 0, "duplicate": 0, "ignored": 0, "conflicts": 0}
        behinds = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            counts, behind = result
            for name, n in counts.items():
                outcomes[name] = max(outcomes.get(name, 0), n) if name == "largest" else outcomes.get(name, 0) + n
            behinds.append(behind)
        outcomes["folded"] = self._folded(events)
        return outcomes, lowest(behinds)

    async def _commit_shard(self, shard: Shard, by_customer: dict[str, list[Event]], now_ms: int, topic: str,
                            newest: int, progress: bytes, turned_away: TurnedAway | None = None,
                            ) -> tuple[dict[str, int], dict[str, int | None]]:
        olds = self._cached(by_customer)
        stale = [c for c in by_customer if c not in olds]
        conflicts = 0
        for _ in range(MAX_ATTEMPTS):
            if stale:
                read = await self._read(shard, stale)
                olds.update(read)
                await self._resolve_labels(list(read.values()), {"segment": set(), "team": set()})
            tally, writes = self._step(by_customer, olds, now_ms)
            outcomes = {**tally.outcomes, "conflicts": conflicts, "largest": tally.largest}
            if turned_away is not None and tally.rejected:
                await turned_away(tally.rejected)  # before the write: see ``commit``
            if not writes and progress == b"[]":
                self._remember(olds)
                return outcomes, {}
            keys, args = self._payload(shard, writes, tally, now_ms, topic, newest)
            missed, behind = await self._call(self._commit(keys=keys, args=[*args, progress, self.fingerprint]))
            if not missed:
                for customer_id, _, new in writes:
                    olds[customer_id] = new
                self._remember(olds)
                return outcomes, {p.decode() if isinstance(p, bytes) else p: (int(at) if int(at) >= 0 else None)
                                  for p, at in behind}
            stale = [writes[int(i) - 1][0] for i in missed]
            conflicts += len(stale)
            for customer_id in stale:
                self.cache.pop(customer_id, None)
        raise StateError(f"gave up after {MAX_ATTEMPTS} conflicting updates of the same customers")

    def _step(self, by_customer: dict[str, list[Event]], olds: dict[str, Customer],
              now_ms: int) -> tuple[Tally, list[tuple[str, Customer, Customer]]]:
        """Every customer's new record and the batch's summed change (pure: ``Tally.step``)."""
        tally = Tally()
        writes: list[tuple[str, Customer, Customer]] = []
        label, rules = self.labels.label, self.rules
        for customer_id, group in by_customer.items():
            old = olds[customer_id]
            new = tally.step(customer_id, old, group, now_ms, rules, label)
            if new is not None:
                writes.append((customer_id, old, new))
        return tally, writes

    def _cached(self, by_customer: dict[str, list[Event]]) -> dict[str, Customer]:
        cache = self.cache
        found: dict[str, Customer] = {}
        for customer_id in by_customer:
            customer = cache.get(customer_id)
            if customer is not None:
                found[customer_id] = customer
        return found

    def _remember(self, customers: dict[str, Customer]) -> None:
        if not self.cache_size:
            return
        cache = self.cache
        for customer_id, customer in customers.items():
            cache[customer_id] = customer
            cache.move_to_end(customer_id)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    async def _read(self, shard: Shard, customer_ids: list[str]) -> dict[str, Customer]:
        blobs = await self._call(self.client.mget([shard.customer(c) for c in customer_ids]))
        return {c: decode(blob) for c, blob in zip(customer_ids, blobs, strict=True)}

    def _payload(self, shard: Shard, writes: list[tuple[str, Customer, Customer]], tally: Tally, now_ms: int,
                 topic: str, newest: int) -> tuple[list[str], tuple[bytes, bytes, bytes, str]]:
        """The commit's keys and arguments. A record that only gained events gets them appended (cost
        O(new events)); a new one, one whose registration changed or that lost pruned events
        is written whole; an empty or expired one is deleted. Every key the call touches is in
        the keys (Redis Cluster routes by them); the arguments name them by index."""
        keys = [shard.meta, shard.pos, shard.active, shard.segments, shard.teams, shard.newest]
        index: dict[str, int] = {}

        def at(key: str) -> int:
            found = index.get(key)
            if found is None:
                keys.append(key)
                found = index[key] = len(keys)  # Lua counts from 1
            return found

        heads = []
        chunks = []
        token = self.tokens.next()
        for customer_id, old, new in writes:
            expires = expires_at_ms(new, self.rules)
            if new.is_empty() or (expires is not None and expires <= now_ms):
                new.version, mode, chunk = "", DELETE, b""
            elif new.added is not None and len(old.version) == Tokens.WIDTH and not old.legacy:
                new.version, mode, chunk = token, APPEND, encode_added(new.added)
            else:
                new.version = token
                mode, chunk = SET, encode(new)
            new.added = None  # written: the cached record is the stored one
            heads.append((at(shard.customer(customer_id)), old.version, expires or 0, mode))
            chunks.append(chunk)
        chunks.append(b"")
        totals = (
            [(at(shard.count(kind, name, window)), str(bucket), n)
             for (kind, name, window, bucket), n in tally.counts(self.rules, now_ms).items()],
            [(segment, n) for segment, n in tally.active.items() if n],
            [(at(shard.advocates(team)), score, member) for team, score, member in tally.advocates_set],
            [(at(shard.advocates(team)), member) for team, member in tally.advocates_removed],
            sorted(tally.segments),
            sorted(tally.teams),
            topic,
            newest,
        )
        return keys, (orjson.dumps(heads), b"\0".join(chunks), orjson.dumps(totals), token)

    async def _resolve_labels(self, read: list[Customer], names: dict[str, set[str]]) -> None:
        """Ask Redis about names this worker has not labelled yet: the batch's (``names``), and
        those of records just read (cached records' names were resolved when they were read)."""
        segments = set(names["segment"])
        teams = set(names["team"])
        for customer in read:
            if customer.registration is not None:
                segments.add(customer.registration[2])
            segments.update(seg for _, seg in customer.actions.values() if seg)
            teams.update(team for _, team in customer.tickets.values())
        for kind, wanted in (("segment", segments), ("team", teams)):
            unknown = self.labels.unknown(kind, wanted)
            if unknown:
                await self.labels.resolve(kind, unknown, self._call)

    def _folded(self, events: Sequence[Event]) -> int:
        if not self.labels.folds():
            return 0
        is_folded = self.labels.is_folded
        return sum(1 for e in events if (e.segment and is_folded("segment", e.segment))
                   or (e.team and is_folded("team", e.team)))

    def lost_writes(self) -> None:
        """The state came back without writes this worker made: forget every cached record.

        A cached record newer than the stored one would otherwise make the re-read events
        look like duplicates (a batch that writes nothing is not checked against Redis).
        """
        self.cache.clear()

    async def _each(self, call: Callable[[Shard], Awaitable[T]], wrap: bool = True) -> list[T]:
        """``call`` on every shard at once; the first failure is raised once all are done."""
        results = await asyncio.gather(*((self._call(call(s)) if wrap else call(s)) for s in self.shards),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return cast("list[T]", results)

    async def _call(self, awaitable: Any) -> Any:
        return await call(awaitable)



def _group(events: Sequence[Event]) -> tuple[dict[str, list[Event]], int, dict[str, set[str]]]:
    """One pass over a batch: events by customer, the newest event time, names to label."""
    newest = 0
    by_customer: dict[str, list[Event]] = {}
    segments: set[str] = set()
    teams: set[str] = set()
    for event in events:
        group = by_customer.get(event.customer_id)
        if group is None:
            by_customer[event.customer_id] = [event]
        else:
            group.append(event)
        newest = max(newest, event.at_us // 1000)
        if event.segment is not None:
            segments.add(event.segment)
        if event.team is not None:
            teams.add(event.team)
    return by_customer, newest, {"segment": segments, "team": teams}
