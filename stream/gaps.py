"""Partitions whose records were fetched but never stored: found, reported and re-read.

A worker must never say ready with lag 0 while a partition it owns has records it never
stored. The consumer reads, per assigned partition, the first offset not known to be
stored and the fetcher's position. When the position stays ahead of the stored offset
while nothing is on its way to the state, the records in between were fetched and lost
on the way: a gap. The worker reports it (log, metric, /health) and re-reads from the
stored offset. A range that a re-read shows to hold no records (transaction markers, or
offsets removed by compaction) is remembered and not reported again.

Pure logic, no I/O: ``GapWatch.update`` takes readings and says what to re-read.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GapWatch", "Reading"]

P = TypeVar("P", bound=Hashable)  # a partition


@dataclass(frozen=True, slots=True)
class Reading:
    """One partition at one moment."""

    stored: int  # the first offset not known to be stored
    position: int  # the fetcher's next offset
    busy: bool  # records past ``stored`` may still be on their way to the state


@dataclass
class GapWatch(Generic[P]):
    """Decides, reading after reading, which partitions have a gap to re-read.

    A partition has a gap when ``checks`` readings in a row show the same stored offset and
    position, the position ahead, and nothing busy. The first time a range is found it is
    re-read; found again unchanged after that re-read, it holds no records and is ignored
    until either offset moves.
    """

    checks: int = 3
    _seen: dict[P, tuple[int, int, int]] = field(default_factory=dict)  # tp -> stored, position, times
    _reread: dict[P, tuple[int, int]] = field(default_factory=dict)  # ranges re-read once
    _empty: dict[P, tuple[int, int]] = field(default_factory=dict)  # ranges with no records
    open: dict[P, tuple[int, int]] = field(default_factory=dict)  # gaps being re-read

    def update(self, readings: Mapping[P, Reading]) -> dict[P, tuple[int, int]]:
        """The gaps to re-read now, as partition -> (stored, position)."""
        found: dict[P, tuple[int, int]] = {}
        for tp in {*self._seen, *self._reread, *self._empty, *self.open}:
            if tp not in readings:  # no longer assigned
                self._forget(tp)
        for tp, reading in readings.items():
            span = (reading.stored, reading.position)
            if reading.position <= reading.stored or reading.busy:
                self._seen.pop(tp, None)
                if reading.position <= reading.stored:
                    self.open.pop(tp, None)
                    self._reread.pop(tp, None)
                continue
            stored, position, times = self._seen.get(tp, (-1, -1, 0))
            times = times + 1 if (stored, position) == span else 1
            self._seen[tp] = (*span, times)
            if times < self.checks or self._empty.get(tp) == span:
                continue
            self._seen.pop(tp)
            if self._reread.get(tp) == span:  # re-read, and nothing came: no records there
                self._empty[tp] = span
                self.open.pop(tp, None)
                continue
            self._reread[tp] = span
            self.open[tp] = span
            found[tp] = span
        return found

    def _forget(self, tp: P) -> None:
        for table in (self._seen, self._reread, self._empty, self.open):
            table.pop(tp, None)
