"""The shared state in Redis and its atomic updates.

Each customer's events live in one record ``{ns}:c:{customer_id}`` carrying a version.
A batch is applied optimistically: read the records (one MGET), compute the new
records and the change to the totals in pure Python (``stream.kpi``), then one Lua
call writes every record whose version is unchanged *together with* its change to the
totals. A record changed meanwhile by another worker is re-read and retried. Replaying
an event is a no-op because the record already holds its id: at-least-once delivery
gives exactly-once counts.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.errors import StateError, StateUnavailable
from stream.event import Event
from stream.kpi.record import Customer, expires_at_ms
from stream.kpi.totals import Tally, Totals
from stream.kpi.windows import Rules, Window, sum_window
from stream.labels import LabelCap

_COMMIT = """
local ns = ARGV[1]
-- an empty state (Redis restarted empty) starts again: positions are missing, so every
-- partition is read again from its earliest offset
redis.call('HSETNX', ns .. ':meta', 'rules', ARGV[7])
local heads = cjson.decode(ARGV[2])
local conflicts = {}
for i, h in ipairs(heads) do
  local cur = redis.call('GETRANGE', h[1], 0, 63)
  if (string.match(cur, '^([^|]*)|') or '') ~= h[2] then conflicts[#conflicts + 1] = i end
end
if #conflicts > 0 then return {conflicts, {}} end
local blobs, pos, token = ARGV[3], 1, ARGV[5]
for _, h in ipairs(heads) do
  local stop = string.find(blobs, '\\0', pos, true)
  local blob = string.sub(blobs, pos, stop - 1)
  pos = stop + 1
  if h[4] == 2 then
    redis.call('DEL', h[1])
  elseif h[4] == 1 then
    redis.call('SETRANGE', h[1], 0, token)
    redis.call('APPEND', h[1], blob)
    if h[3] > 0 then redis.call('PEXPIREAT', h[1], h[3]) end
  elseif h[3] > 0 then
    redis.call('SET', h[1], blob, 'PXAT', h[3])
  else
    redis.call('SET', h[1], blob)
  end
end
local t = cjson.decode(ARGV[4])
for _, c in ipairs(t[1]) do redis.call('HINCRBY', c[1], c[2], c[3]) end
for _, a in ipairs(t[2]) do redis.call('HINCRBY', ns .. ':active', a[1], a[2]) end
for _, s in ipairs(t[3]) do redis.call('ZADD', ns .. ':adv:' .. s[1], s[2], s[3]) end
for _, r in ipairs(t[4]) do redis.call('ZREM', ns .. ':adv:' .. r[1], r[2]) end
for _, g in ipairs(t[5]) do redis.call('SADD', ns .. ':segments', g) end
for _, m in ipairs(t[6]) do redis.call('SADD', ns .. ':teams', m) end
if t[7] ~= '' then
  local cur = redis.call('HGET', ns .. ':newest', t[7])
  if not cur or tonumber(cur) < t[8] then redis.call('HSET', ns .. ':newest', t[7], t[8]) end
end
-- positions: each partition's first unstored offset moves over a batch only if the batch
-- starts at or before it; otherwise the state lost writes and says from where to re-read
local behind = {}
for _, p in ipairs(cjson.decode(ARGV[6])) do
  local cur = redis.call('HGET', ns .. ':pos', p[1])
  if not cur then
    behind[#behind + 1] = {p[1], -1}
  elseif p[2] <= tonumber(cur) then
    if p[3] > tonumber(cur) then redis.call('HSET', ns .. ':pos', p[1], p[3]) end
  else
    behind[#behind + 1] = {p[1], tonumber(cur)}
  end
end
return {conflicts, behind}
"""

_FLOOR = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur or tonumber(cur) < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0
"""

_PRUNE_HASH = """
local first = tonumber(ARGV[1])
local removed = 0
for i, key in ipairs(KEYS) do
  local fields = redis.call('HKEYS', key)
  for _, f in ipairs(fields) do
    if tonumber(f) < first then redis.call('HDEL', key, f); removed = removed + 1 end
  end
end
return removed
"""

def partition_name(topic: str, partition: int) -> str:
    """How the state names a partition in its positions (Kafka topic names have no colon)."""
    return f"{topic}:{partition}"


MAX_ATTEMPTS = 50
_SET, _APPEND, _DELETE = 0, 1, 2  # how the commit writes a record


# Event times in a record are microseconds, marked by a fourth element of the head; a head of three
# elements is a record written before microseconds (times in milliseconds): it is read as the same
# times x 1000, and rewritten whole (never appended to) the first time it changes.
MICROS = "us"


def encode(customer: Customer) -> bytes:
    """The whole record: ``version|[registration, actions, tickets, "us"]``."""
    body = orjson.dumps([customer.registration, customer.actions, customer.tickets, MICROS])
    return customer.version.encode() + b"|" + body


def encode_added(added: tuple[dict[str, Any], dict[str, Any]]) -> bytes:
    """Events appended to a stored record: a newline, then ``[actions, tickets]`` (JSON has none)."""
    return b"\n" + orjson.dumps(added)


def decode(blob: bytes | None) -> Customer:
    """A record as written by ``encode``, with any appended events merged in."""
    if blob is None:
        return Customer()
    head, _, body = blob.partition(b"|")
    parts = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
    registration, actions, tickets, *unit = parts[0]
    for added_actions, added_tickets in parts[1:]:
        actions.update(added_actions)
        tickets.update(added_tickets)
    if unit != [MICROS]:
        return _from_milliseconds(head.decode(), registration, actions, tickets)
    return Customer(
        version=head.decode(),
        registration=(registration[0], registration[1], registration[2], registration[3]) if registration else None,
        # JSON arrays unpack like the (time, name) tuples they were: no per-event copy
        actions=actions,
        tickets=tickets,
    )


def _from_milliseconds(version: str, registration: list[Any] | None, actions: dict[str, list[Any]],
                       tickets: dict[str, list[Any]]) -> Customer:
    """A record written before microseconds, its times x 1000; marked to be rewritten whole."""
    return Customer(
        version=version,
        registration=(registration[0] * 1000, registration[1], registration[2], registration[3])
        if registration else None,
        actions={k: (at * 1000, seg) for k, (at, seg) in actions.items()},
        tickets={k: (at * 1000, team) for k, (at, team) in tickets.items()},
        legacy=True,
    )


class Tokens:
    """Record versions that never repeat: a random prefix per process and a counter, one
    per commit (every record a commit writes gets the commit's token). Fixed width, so an
    appending commit overwrites the version in place.

    A version is compared for equality only, so a record deleted (expired) and written
    again by another worker can never be mistaken for the one a cache holds.
    """

    WIDTH = 24

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}.{next(self.counter):011x}"


class Store:
    """KPI state shared by every worker; ``namespace`` is the app id.

    ``cache_size`` customers' records are kept in memory (least recently used out): a
    record read from the cache is as good as one read from Redis, because the commit
    checks its version and a stale one comes back as a conflict, re-read from Redis.
    """

    def __init__(self, client: aioredis.Redis, namespace: str, rules: Rules,
                 max_segments: int = 1000, max_teams: int = 1000, cache_size: int = 100_000) -> None:
        self.client = client
        self.ns = namespace
        self.rules = rules
        self.labels = LabelCap(client, namespace, {"segment": max_segments, "team": max_teams})
        self._commit = client.register_script(_COMMIT)
        self._floor = client.register_script(_FLOOR)
        self._prune_hash = client.register_script(_PRUNE_HASH)
        self.cache: OrderedDict[str, Customer] = OrderedDict()
        self.cache_size = cache_size
        self.tokens = Tokens()

    def customer_key(self, customer_id: str) -> str:
        return f"{self.ns}:c:{customer_id}"

    def count_key(self, kind: str, name: str, window: str) -> str:
        return f"{self.ns}:{kind}:{window}:{name}"

    async def ping(self) -> None:
        await self._call(self.client.ping())

    @property
    def fingerprint(self) -> str:
        """The rules the totals are built under (windows, attribution, caps)."""
        fingerprint = ",".join(f"{w.name}={w.seconds}" for w in self.rules.windows)
        fingerprint += f";attribution={self.rules.attribution_ms}"
        return fingerprint + f";caps={self.labels.caps['segment']},{self.labels.caps['team']}"

    async def check_rules(self) -> None:
        """Refuse to mix totals built under other windows or attribution window."""
        fingerprint = self.fingerprint
        key = f"{self.ns}:meta"
        await self._call(self.client.hsetnx(key, "rules", fingerprint))
        stored = await self._call(self.client.hget(key, "rules"))
        if stored is not None and stored.decode() != fingerprint:
            raise StateError(
                f"Redis state of app {self.ns!r} was built with {stored.decode()!r}, not "
                f"{fingerprint!r}: use another ADVOCACY_APP_ID or replay into empty state"
            )

    async def has_state(self) -> bool:
        """Whether this app's state exists (its meta record is written at first start)."""
        return bool(await self._call(self.client.exists(f"{self.ns}:meta")))

    async def apply(self, events: Sequence[Event], now_ms: int, topic: str = "") -> dict[str, int]:
        """Apply valid events atomically, with no partition positions; return outcome counts."""
        outcomes, _ = await self.commit(events, now_ms, topic)
        return outcomes

    async def commit(self, events: Sequence[Event], now_ms: int, topic: str = "",
                     progress: Sequence[tuple[str, int, int]] = (), rejected: list[Event] | None = None,
                     ) -> tuple[dict[str, int], dict[str, int | None]]:
        """Apply valid events and move partition positions atomically.

        One commit per batch, all or nothing: if any customer's record changed since it was
        read, nothing is written, those records are re-read and the batch is recomputed.
        ``topic`` (optional) records the newest event time seen on it, for freshness.
        ``progress`` is (partition, start, end) per partition the batch covers; returns the
        outcome counts and, for partitions whose stored position is behind the batch's start
        (the state lost writes) or missing, that position (None where missing). Events the
        per-customer cap turned away (``Tally.rejected``) are appended to ``rejected``.
        """
        by_customer, newest, names = _group(events)
        olds = self._cached(by_customer)
        stale = [c for c in by_customer if c not in olds]
        conflicts = 0
        for _ in range(MAX_ATTEMPTS):
            if stale:
                olds.update(await self._read(stale))
            await self._resolve_labels([olds[c] for c in stale], names)
            tally, writes = self._step(by_customer, olds, now_ms)
            outcomes = {**tally.outcomes, "conflicts": conflicts, "folded": self._folded(events),
                        "largest": tally.largest}
            if rejected is not None:
                rejected[:] = tally.rejected  # the attempt that returns is the one that counts
            if not writes and not progress:
                self._remember(olds)
                return outcomes, {}
            payload = self._payload(writes, tally, now_ms, topic, newest)
            missed, behind = await self._call(self._commit(
                args=[self.ns, *payload, orjson.dumps(progress), self.fingerprint]))
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

    async def _read(self, customer_ids: list[str]) -> dict[str, Customer]:
        blobs = await self._call(self.client.mget([self.customer_key(c) for c in customer_ids]))
        return {c: decode(blob) for c, blob in zip(customer_ids, blobs, strict=True)}

    def _payload(self, writes: list[tuple[str, Customer, Customer]], tally: Tally, now_ms: int,
                 topic: str, newest: int) -> tuple[bytes, bytes, bytes, str]:
        """The commit's arguments. A record that only gained events gets them appended (cost
        O(new events)); a new one, one whose registration changed or that lost pruned events
        is written whole; an empty or expired one is deleted."""
        heads = []
        chunks = []
        token = self.tokens.next()
        for customer_id, old, new in writes:
            expires = expires_at_ms(new, self.rules)
            if new.is_empty() or (expires is not None and expires <= now_ms):
                new.version, mode, chunk = "", _DELETE, b""
            elif new.added is not None and len(old.version) == Tokens.WIDTH and not old.legacy:
                new.version, mode, chunk = token, _APPEND, encode_added(new.added)
            else:
                new.version = token
                mode, chunk = _SET, encode(new)
            new.added = None  # written: the cached record is the stored one
            heads.append((self.customer_key(customer_id), old.version, expires or 0, mode))
            chunks.append(chunk)
        chunks.append(b"")
        count_key = self.count_key
        totals = (
            [(count_key(kind, name, window), str(bucket), n)
             for (kind, name, window, bucket), n in tally.counts(self.rules, now_ms).items()],
            [(segment, n) for segment, n in tally.active.items() if n],
            tally.advocates_set,
            tally.advocates_removed,
            sorted(tally.segments),
            sorted(tally.teams),
            topic,
            newest,
        )
        return orjson.dumps(heads), b"\0".join(chunks), orjson.dumps(totals), token

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

    async def positions(self, partitions: Sequence[str]) -> dict[str, int | None]:
        """Each partition's stored position (its first unstored offset), None where there is none."""
        if not partitions:
            return {}
        values = await self._call(self.client.hmget(f"{self.ns}:pos", list(partitions)))
        return {p: int(v) if v is not None else None for p, v in zip(partitions, values, strict=True)}

    async def floor_positions(self, offsets: dict[str, int]) -> None:
        """Raise positions that are missing or lower than ``offsets`` (nothing is readable below)."""
        if offsets:
            args = [x for p, offset in offsets.items() for x in (p, offset)]
            await self._call(self._floor(keys=[f"{self.ns}:pos"], args=args))

    async def totals(self, now_ms: int) -> Totals:
        """Read the totals for every window, summed, in two round trips."""
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(f"{self.ns}:segments")
        pipe.smembers(f"{self.ns}:teams")
        pipe.hgetall(f"{self.ns}:active")
        pipe.exists(f"{self.ns}:meta")
        pipe.hgetall(f"{self.ns}:newest")
        segments_raw, teams_raw, active_raw, _has_meta, newest_raw = await self._call(pipe.execute())
        segments = sorted(s.decode() for s in segments_raw)
        teams = sorted(t.decode() for t in teams_raw)
        windows = self.rules.windows
        pipe = self.client.pipeline(transaction=False)
        for window in windows:
            for segment in segments:
                pipe.hgetall(self.count_key("a", segment, window.name))
            for team in teams:
                pipe.hgetall(self.count_key("t", team, window.name))
                pipe.zcount(f"{self.ns}:adv:{team}", window.start_ms(now_ms), "+inf")
        replies = iter(await self._call(pipe.execute()))
        actions, interactions, advocates = {}, {}, {}
        for window in windows:
            for segment in segments:
                actions[(segment, window.name)] = _sum(next(replies), window, now_ms)
            for team in teams:
                interactions[(team, window.name)] = _sum(next(replies), window, now_ms)
                advocates[(team, window.name)] = int(next(replies))
        active = {k.decode(): int(v) for k, v in active_raw.items()}
        newest = {k.decode(): int(v) for k, v in newest_raw.items()}
        return Totals(actions, active, interactions, advocates, newest)

    async def prune(self, now_ms: int) -> int:
        """Drop buckets and advocates older than every window; safe on any worker."""
        segments = await self._call(self.client.smembers(f"{self.ns}:segments"))
        teams = await self._call(self.client.smembers(f"{self.ns}:teams"))
        removed = 0
        for window in self.rules.windows:
            keys = [self.count_key("a", s.decode(), window.name) for s in segments]
            keys += [self.count_key("t", t.decode(), window.name) for t in teams]
            if keys:
                removed += int(await self._call(
                    self._prune_hash(keys=keys, args=[window.first_bucket(now_ms) - 2])))
        oldest = now_ms - self.rules.action_retention_ms
        for team in teams:
            removed += int(await self._call(
                self.client.zremrangebyscore(f"{self.ns}:adv:{team.decode()}", "-inf", oldest)))
        return removed

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StateUnavailable(f"redis unavailable: {type(exc).__name__}") from None
        except RedisError as exc:
            raise StateError(f"redis error: {exc}") from None


def _sum(buckets: dict[bytes, bytes], window: Window, now_ms: int) -> int:
    return sum_window({int(k): int(n) for k, n in buckets.items()}, window, now_ms)


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
