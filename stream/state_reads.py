"""What the workers and the endpoints read of the state, and its pruning: the part of ``stream.state.Store``
that writes no record. Positions are the lowest over the shards; totals are summed over them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from stream.codec import Tokens
from stream.kpi.totals import Totals
from stream.kpi.windows import Rules
from stream.labels import Client
from stream.scripts import CHANGED
from stream.shards import Shard, add, lowest

__all__ = ["Reads"]

T = TypeVar("T")


class Reads:
    """Reading and pruning the sharded state (``Store`` sets these attributes)."""

    client: Client
    rules: Rules
    shards: list[Shard]
    tokens: Tokens
    _floor: Any
    _head: Any
    _sum_windows: Any
    _prune_hash: Any

    async def _each(self, call: Callable[[Shard], Awaitable[T]], wrap: bool = True) -> list[T]:
        raise NotImplementedError

    async def _call(self, awaitable: Any) -> Any:
        raise NotImplementedError

    async def positions(self, partitions: Sequence[str]) -> dict[str, int | None]:
        """Each partition's position (its first unstored offset): the lowest over the shards, None
        where a shard has none."""
        if not partitions:
            return {}
        names = list(partitions)
        per_shard = await self._each(lambda shard: self.client.hmget(shard.pos, names))
        return lowest({p: int(v) if v is not None else None for p, v in zip(names, values, strict=True)}
                      for values in per_shard)

    async def floor_positions(self, offsets: dict[str, int]) -> None:
        """Raise positions that are missing or lower than ``offsets`` in every shard (nothing is readable below)."""
        if offsets:
            args = [x for p, offset in offsets.items() for x in (p, offset)]
            await self._each(lambda shard: self._floor(keys=[shard.pos], args=args))

    async def changes(self) -> tuple[bytes | str | None, ...]:
        """Each shard's mark (``CHANGED``), one command a shard: while it is the same, so are the shard's
        totals as read at any time whose windows start in the same buckets. Read it before the totals:
        a batch stored between the two is then read again next time, never missed."""
        return tuple(await self._each(lambda shard: self.client.hget(shard.meta, CHANGED)))

    async def totals(self, now_ms: int) -> Totals:
        """The totals for every window, summed over the shards: two Lua calls per shard, all shards at once."""
        return add(await self._each(lambda shard: self._shard_totals(shard, now_ms), wrap=False))

    async def _shard_totals(self, shard: Shard, now_ms: int) -> Totals:
        segments_raw, teams_raw, active_raw, newest_raw = await self._call(
            self._head(keys=[shard.segments, shard.teams, shard.active, shard.newest]))
        segments = sorted(s.decode() for s in segments_raw)
        teams = sorted(t.decode() for t in teams_raw)
        active = {k.decode(): int(v) for k, v in zip(active_raw[::2], active_raw[1::2], strict=True)}
        newest = {k.decode(): int(v) for k, v in zip(newest_raw[::2], newest_raw[1::2], strict=True)}
        actions: dict[tuple[str, str], int] = {}
        interactions: dict[tuple[str, str], int] = {}
        advocates: dict[tuple[str, str], int] = {}
        windows = self.rules.windows
        if segments or teams:
            keys = [shard.count(kind, name, w.name) for w in windows
                    for kind, names in (("a", segments), ("t", teams)) for name in names]
            keys += [shard.advocates(team) for team in teams]
            args = [len(segments), len(teams)]
            for w in windows:
                args += [w.first_bucket(now_ms), w.start_ms(now_ms)]
            replies = iter(await self._call(self._sum_windows(keys=keys, args=args)))
            for w in windows:
                for segment in segments:
                    actions[(segment, w.name)] = int(next(replies))
                for team in teams:
                    interactions[(team, w.name)] = int(next(replies))
                for team in teams:
                    advocates[(team, w.name)] = int(next(replies))
        return Totals(actions, active, interactions, advocates, newest)

    async def prune(self, now_ms: int) -> int:
        """Drop buckets and advocates older than every window; safe on any worker."""
        return sum(await self._each(lambda shard: self._prune_shard(shard, now_ms), wrap=False))

    async def _prune_shard(self, shard: Shard, now_ms: int) -> int:
        segments = await self._call(self.client.smembers(shard.segments))
        teams = await self._call(self.client.smembers(shard.teams))
        removed = 0
        for window in self.rules.windows:
            keys = [shard.count("a", s.decode(), window.name) for s in segments]
            keys += [shard.count("t", t.decode(), window.name) for t in teams]
            if keys:
                removed += int(await self._call(
                    self._prune_hash(keys=keys, args=[window.first_bucket(now_ms) - 2])))
        oldest = now_ms - self.rules.action_retention_ms
        for team in teams:
            removed += int(await self._call(
                self.client.zremrangebyscore(shard.advocates(team.decode()), "-inf", oldest)))
        if removed:  # only what no window sums any more was removed; marked all the same (``changes``)
            await self._call(self.client.hset(shard.meta, CHANGED, self.tokens.next()))
        return removed
