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

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.errors import StateError, StateLost, StateUnavailable
from stream.kpi import Customer, Event, Rules, Totals, Window, apply, expires_at_ms, sum_window
from stream.kpi import change as changes
from stream.labels import LabelCap

_COMMIT = """
local ns = ARGV[1]
if redis.call('EXISTS', ns .. ':meta') == 0 then return redis.error_reply('STATE_LOST') end
local entries = cjson.decode(ARGV[2])
local conflicts = {}
for i, e in ipairs(entries) do
  local cur = redis.call('GET', e.k)
  local v = 0
  if cur then v = tonumber(string.match(cur, '^(%d+)|')) end
  if v ~= e.v then
    conflicts[#conflicts + 1] = i
  else
    if e.b == '' then
      redis.call('DEL', e.k)
    elseif e.x > 0 then
      redis.call('SET', e.k, e.b, 'PXAT', e.x)
    else
      redis.call('SET', e.k, e.b)
    end
    for _, c in ipairs(e.c) do redis.call('HINCRBY', c[1], c[2], c[3]) end
    for _, a in ipairs(e.a) do redis.call('HINCRBY', ns .. ':active', a[1], a[2]) end
    for _, s in ipairs(e.s) do redis.call('ZADD', ns .. ':adv:' .. s[1], s[2], e.id) end
    for _, r in ipairs(e.r) do redis.call('ZREM', ns .. ':adv:' .. r, e.id) end
    for _, g in ipairs(e.g) do redis.call('SADD', ns .. ':segments', g) end
    for _, t in ipairs(e.t) do redis.call('SADD', ns .. ':teams', t) end
  end
end
if ARGV[3] ~= '' then
  local cur = redis.call('HGET', ns .. ':newest', ARGV[3])
  if not cur or tonumber(cur) < tonumber(ARGV[4]) then redis.call('HSET', ns .. ':newest', ARGV[3], ARGV[4]) end
end
return conflicts
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

MAX_ATTEMPTS = 50


def encode(customer: Customer) -> bytes:
    body = orjson.dumps([customer.registration, customer.actions, customer.tickets])
    return b"%d|" % customer.version + body


def decode(blob: bytes | None) -> Customer:
    if blob is None:
        return Customer()
    head, _, body = blob.partition(b"|")
    registration, actions, tickets = orjson.loads(body)
    return Customer(
        version=int(head),
        registration=(registration[0], registration[1], registration[2], registration[3]) if registration else None,
        # JSON arrays unpack like the (time, name) tuples they were: no per-event copy
        actions=actions,
        tickets=tickets,
    )


class Store:
    """KPI state shared by every worker; ``namespace`` is the app id."""

    def __init__(self, client: aioredis.Redis, namespace: str, rules: Rules,
                 max_segments: int = 1000, max_teams: int = 1000) -> None:
        self.client = client
        self.ns = namespace
        self.rules = rules
        self.labels = LabelCap(client, namespace, {"segment": max_segments, "team": max_teams})
        self._commit = client.register_script(_COMMIT)
        self._prune_hash = client.register_script(_PRUNE_HASH)

    def customer_key(self, customer_id: str) -> str:
        return f"{self.ns}:c:{customer_id}"

    def count_key(self, kind: str, name: str, window: str) -> str:
        return f"{self.ns}:{kind}:{window}:{name}"

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def check_rules(self) -> None:
        """Refuse to mix totals built under other windows or attribution window."""
        fingerprint = ",".join(f"{w.name}={w.seconds}" for w in self.rules.windows)
        fingerprint += f";attribution={self.rules.attribution_ms}"
        fingerprint += f";caps={self.labels.caps['segment']},{self.labels.caps['team']}"
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
        """Apply valid events atomically per customer; return outcome counts.

        ``topic`` (optional) records the newest event time seen on it, for freshness.
        """
        newest = max((e.at_ms for e in events), default=0)
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_customer[event.customer_id].append(event)
        outcomes = {"applied": 0, "duplicate": 0, "ignored": 0, "conflicts": 0, "folded": 0}
        pending = list(by_customer)
        for _ in range(MAX_ATTEMPTS):
            if not pending:
                return outcomes
            blobs = await self._call(self.client.mget([self.customer_key(c) for c in pending]))
            olds = [decode(blob) for blob in blobs]
            await self._resolve_labels(olds, [by_customer[c] for c in pending])
            entries: list[dict[str, Any]] = []
            staged: list[dict[str, int]] = []
            for customer_id, old in zip(pending, olds, strict=True):
                new, result = apply(old, by_customer[customer_id], now_ms, self.rules)
                result["folded"] = sum(1 for e in by_customer[customer_id] if self._folded(e))
                entry = self._entry(customer_id, old, new, now_ms)
                if entry is None:
                    _add(outcomes, result)
                    continue
                entries.append(entry)
                staged.append(result)
            if not entries:
                return outcomes
            payload = orjson.dumps(entries)
            conflicts = await self._call(self._commit(args=[self.ns, payload, topic, newest]))
            retry = {int(i) - 1 for i in conflicts}
            pending = [entries[i]["id"] for i in sorted(retry)]
            outcomes["conflicts"] += len(retry)
            for i, result in enumerate(staged):
                if i not in retry:
                    _add(outcomes, result)
        raise StateError(f"gave up after {MAX_ATTEMPTS} conflicting updates of the same customers")

    async def _resolve_labels(self, olds: list[Customer], batches: list[list[Event]]) -> None:
        segments: set[str] = set()
        teams: set[str] = set()
        for customer in olds:
            if customer.registration is not None:
                segments.add(customer.registration[2])
            segments.update(seg for _, seg in customer.actions.values() if seg)
            teams.update(team for _, team in customer.tickets.values())
        for batch in batches:
            segments.update(e.segment for e in batch if e.segment)
            teams.update(e.team for e in batch if e.team)
        await self.labels.resolve("segment", self.labels.unknown("segment", segments), self._call)
        await self.labels.resolve("team", self.labels.unknown("team", teams), self._call)

    def _folded(self, event: Event) -> bool:
        return bool((event.segment and self.labels.is_folded("segment", event.segment))
                    or (event.team and self.labels.is_folded("team", event.team)))

    def _entry(self, customer_id: str, old: Customer, new: Customer, now_ms: int) -> dict[str, Any] | None:
        if new.registration == old.registration and new.actions == old.actions and new.tickets == old.tickets:
            return None
        change = changes(old, new, now_ms, self.rules, self.labels.label)
        new.version = old.version + 1
        expires = expires_at_ms(new, self.rules)
        gone = new.is_empty() or (expires is not None and expires <= now_ms)
        return {
            "id": customer_id,
            "k": self.customer_key(customer_id),
            "v": old.version,
            "b": "" if gone else encode(new).decode(),
            "x": expires or 0,
            "c": [[self.count_key(kind, name, window), str(bucket), n]
                  for (kind, name, window, bucket), n in change.counts.items()],
            "a": [[segment, n] for segment, n in change.active.items()],
            "s": [[team, at] for team, at in change.advocates_set.items()],
            "r": sorted(change.advocates_removed),
            "g": sorted(change.new_segments),
            "t": sorted(change.new_teams),
        }

    async def totals(self, now_ms: int) -> Totals:
        """Read the totals for every window, summed, in two round trips."""
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(f"{self.ns}:segments")
        pipe.smembers(f"{self.ns}:teams")
        pipe.hgetall(f"{self.ns}:active")
        pipe.exists(f"{self.ns}:meta")
        pipe.hgetall(f"{self.ns}:newest")
        segments_raw, teams_raw, active_raw, has_meta, newest_raw = await self._call(pipe.execute())
        if not has_meta:
            raise self._lost()
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

    def _lost(self) -> StateLost:
        return StateLost(f"the Redis state of app {self.ns!r} is gone (Redis restarted empty?)")

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StateUnavailable(f"redis unavailable: {type(exc).__name__}") from None
        except RedisError as exc:
            if "STATE_LOST" in str(exc):
                raise self._lost() from None
            raise StateError(f"redis error: {exc}") from None


def _sum(buckets: dict[bytes, bytes], window: Window, now_ms: int) -> int:
    return sum_window({int(k): int(n) for k, n in buckets.items()}, window, now_ms)


def _add(outcomes: dict[str, int], result: dict[str, int]) -> None:
    for key, n in result.items():
        outcomes[key] += n
