"""The state's positions, for the batch consumer: where each assigned partition is read from.

After an assignment, after a fetch dropped across a rebalance or a pause, after the state was
found behind a batch (it lost writes) and for a gap: each partition is sought to the state's
position (its first unstored offset), never to the group's commit. ``StatePositions`` is a part
of ``stream.batching.BatchConsumer``, kept apart because it knows the state, not the fetch loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stream.gaps import Reading

if TYPE_CHECKING:  # batching builds on this module
    from stream.batching import Batch

__all__ = ["Positions", "StatePositions", "named"]

log = logging.getLogger("stream.batching")


class Positions(Protocol):
    """Where the state says each partition's next unstored record is (``stream.state``)."""

    async def read(self, tps: Sequence[Any]) -> dict[Any, int | None]: ...

    async def floor(self, offsets: Mapping[Any, int]) -> None:
        """Raise positions that are missing or below these offsets (nothing is readable below)."""


class StatePositions:
    """Seeking to the state's positions; ``BatchConsumer`` provides the rest (Faust's consumer)."""

    positions: Positions | None = None  # the state's positions, set by the adapter
    epoch: int
    rewinds: int
    resyncs: int
    rebuilding: dict[Any, tuple[int, int]]
    _durable: dict[Any, int]
    _next: dict[Any, int]
    _seeks: dict[Any, int]
    _delivered: dict[Any, int]
    _deliveries: int
    _rewind_pending: bool
    # Faust's consumer
    assignment: Any
    seek_wait: Any
    earliest_offsets: Any
    highwaters: Any
    position: Any
    flow_active: Any

    async def perform_seek(self) -> None:
        """After an assignment (Faust's recovery calls this): each partition from the state's position.

        Not from the group's commit: the state may have come back without its latest writes
        (restored, failed over), and then it re-reads exactly what it lacks. If the state
        cannot be read now, nothing is fetched until a rewind succeeds.
        """
        epoch = self.epoch
        try:
            targets = await self._stored_positions(self.assignment())
            if epoch == self.epoch:
                await self._seek_to(targets)
                # every record below the state's position is stored: the group may commit up to
                # there now. Else a partition whose last commit was refused (a stale generation)
                # or lost with its owner keeps a stale commit, and tools a false lag, until its next
                # record arrives.
                for tp, offset in targets.items():
                    if offset > self._durable.get(tp, -1):
                        self._durable[tp] = offset
        except Exception as exc:  # noqa: BLE001 - Redis, broker or rebalance: retried before any fetch
            log.warning("could not seek to the state's positions (%r); retrying before fetching", exc)
            self._rewind_pending = True

    async def _rewind(self) -> None:
        """Seek every assigned partition to the state's position (its first unstored offset).

        On failure (the assignment changed meanwhile, the broker or Redis is away) nothing
        is fetched until a later attempt succeeds.
        """
        epoch = self.epoch
        try:
            targets = await self._stored_positions(self.assignment())
            if epoch != self.epoch:
                return  # assigned again meanwhile: start over with the new assignment
            await self._seek_to(targets)
        except Exception as exc:  # noqa: BLE001 - Redis, broker or rebalance: retried before any fetch
            log.warning("rewind after a dropped fetch failed (%r); retrying before fetching again", exc)
            await asyncio.sleep(0.5)
            return
        if epoch == self.epoch:
            self._rewind_pending = False
            self.rewinds += 1
            log.info("dropped a fetch that spanned a rebalance or a pause; rewound %s", named(targets))

    async def _seek_to(self, targets: Mapping[Any, int]) -> None:
        await self.seek_wait(dict(targets))
        for tp, offset in targets.items():
            self._next[tp] = offset
            self._seeks[tp] = self._seeks.get(tp, 0) + 1

    async def _stored_positions(self, tps: Iterable[Any]) -> dict[Any, int]:
        """The first offset of each partition that the state does not hold.

        Where the state has no position (a new partition, an empty state) or one below the
        earliest retained offset, the earliest offset (taken explicitly: a seek "to the
        committed offset" does nothing where there is no commit) becomes its position.
        """
        assert self.positions is not None, "BatchConsumer.positions must be set before the worker starts"
        tps = list(tps)
        stored = await self.positions.read(tps)
        earliest = await self.earliest_offsets(*tps) if tps else {}
        raised: dict[Any, int] = {}
        for tp in tps:
            position, first = stored.get(tp), earliest.get(tp, 0)
            if position is None or position < first:
                raised[tp] = first
                if position is not None:
                    log.warning("%s[%d]: offsets %d-%d were deleted before they were stored; they are not "
                                "counted", tp.topic, tp.partition, position, first - 1)
        if raised:
            await self.positions.floor(raised)
            missing = [tp for tp in raised if stored.get(tp) is None]
            ends = await self.highwaters(*missing) if missing else {}
            for tp in missing:
                if ends.get(tp, 0) > raised[tp]:
                    self.rebuilding[tp] = (raised[tp], ends[tp])
        return {tp: raised.get(tp, stored.get(tp) or 0) for tp in tps}

    def rebuilt(self, stored: Mapping[Any, int]) -> tuple[int, int]:
        """Messages re-read so far and in all by partitions being rebuilt; forgets finished ones."""
        done = total = 0
        for tp, (first, end) in list(self.rebuilding.items()):
            at = stored.get(tp)
            if at is None:
                continue
            if at >= end:
                del self.rebuilding[tp]
                continue
            done += max(0, at - first)
            total += end - first
        return done, total

    async def resync(self, batch: Batch, behind: Mapping[Any, int | None]) -> None:
        """The state's position of these partitions was behind ``batch``'s start (it lost writes):
        read them again from there, unless a seek or a rebalance came after the batch."""
        if batch.epoch != self.epoch:
            return
        tps = [tp for tp in behind if batch.seeks.get(tp) == self._seeks.get(tp, 0)]
        if not tps:
            return
        targets = await self._stored_positions(tps)
        if batch.epoch == self.epoch:
            log.warning("the state lost stored records; reading again from %s", named(targets))
            await self._seek_to(targets)
            self.resyncs += 1

    async def readings(self, topics: set[str]) -> dict[Any, Reading]:
        """The state's position and the fetch position of each assigned partition of ``topics``.

        Empty while a rebalance or a rewind is under way: positions mean nothing then.
        """
        epoch = self.epoch
        if not self.flow_active or self._rewind_pending or self.positions is None:
            return {}
        tps = [tp for tp in self.assignment() if tp.topic in topics]
        stored = await self.positions.read(tps)
        missing = [tp for tp in tps if stored.get(tp) is None]
        earliest = await self.earliest_offsets(*missing) if missing else {}
        out: dict[Any, Reading] = {}
        for tp in tps:
            at = stored.get(tp)
            if at is None:
                at = earliest.get(tp)
            position = await asyncio.wait_for(self.position(tp), 2.0)
            if at is None or position is None:
                continue
            # records handed to an agent and not yet stored by it (not: ahead of the state's
            # position, which a state that lost writes stays behind of for good)
            busy = self._deliveries > 0 or self._delivered.get(tp, -1) > self._durable.get(tp, -1)
            out[tp] = Reading(at, position, busy)
        return out if epoch == self.epoch and self.flow_active and not self._rewind_pending else {}

    async def reread(self, gaps: Mapping[Any, tuple[int, int]]) -> None:
        """Seek each partition back to the state's position, to read a gap again."""
        await self._seek_to(await self._stored_positions(gaps))


def named(offsets: Mapping[Any, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in sorted(offsets.items()))
