"""The production KPI path without Redis: ``Tally.step``, summed as the store sums it.

``Board`` does in memory what ``stream.state.Store`` does in Redis, with the same pure code
(``Tally.step``) and the same data shapes: per-bucket count hashes, an active count per
segment, one sorted set of advocates per team label (member -> score), and a label cap that
admits names first come, first served (a batch's unknown names in sorted order, as
``LabelCap.resolve`` does) and folds the rest into ``_other`` for good. Unit and property
tests compare what it reports with the independent oracles in ``tests/``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from stream.event import Event
from stream.kpi.record import UNKNOWN_SEGMENT, Customer
from stream.kpi.totals import OVERFLOW_LABEL, Tally, Totals, report
from stream.kpi.windows import Rules, sum_window


class Caps:
    """First come, first served label admission; names over the cap fold into ``_other`` for good."""

    def __init__(self, segments: int | None = None, teams: int | None = None) -> None:
        self.caps = {"segment": segments, "team": teams}
        self.admitted: dict[str, set[str]] = {"segment": set(), "team": set()}

    def resolve(self, kind: str, names: Iterable[str]) -> None:
        cap, admitted = self.caps[kind], self.admitted[kind]
        for name in sorted(set(names) - admitted - {UNKNOWN_SEGMENT, OVERFLOW_LABEL}):
            if cap is None or len(admitted) < cap:
                admitted.add(name)

    def label(self, kind: str, name: str) -> str:
        if name in (UNKNOWN_SEGMENT, OVERFLOW_LABEL) or self.caps[kind] is None or name in self.admitted[kind]:
            return name
        return OVERFLOW_LABEL


class Board:
    """The shared totals as the store keeps them, fed batch by batch through ``Tally.step``."""

    def __init__(self, rules: Rules, caps: Caps | None = None) -> None:
        self.rules = rules
        self.caps = caps or Caps()
        self.customers: dict[str, Customer] = {}
        self.counts: dict[tuple[str, str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.active: dict[str, int] = defaultdict(int)
        self.advocates: dict[str, dict[str, int]] = defaultdict(dict)  # team label -> member -> score (ms)
        self.segments: set[str] = set()
        self.teams: set[str] = set()
        self.outcomes: dict[str, int] = defaultdict(int)
        self.rejected: list[Event] = []  # turned away by the per-customer cap (the pipeline dead-letters them)

    def feed(self, batch: Iterable[Event], now_ms: int) -> Board:
        """One batch, as ``Store.apply`` handles it: names resolved first, then every customer stepped."""
        batch = list(batch)
        by_customer: dict[str, list[Event]] = {}
        for event in batch:
            by_customer.setdefault(event.customer_id, []).append(event)
        segments = {e.segment for e in batch if e.segment}
        teams = {e.team for e in batch if e.team}
        for customer_id in by_customer:
            old = self.customers.get(customer_id, Customer())
            if old.registration is not None:
                segments.add(old.registration[2])
            segments.update(seg for _, seg in old.actions.values() if seg)
            teams.update(team for _, team in old.tickets.values())
        self.caps.resolve("segment", segments)
        self.caps.resolve("team", teams)
        tally = Tally()
        for customer_id, events in by_customer.items():
            old = self.customers.get(customer_id, Customer())
            new = tally.step(customer_id, old, events, now_ms, self.rules, self.caps.label)
            if new is not None:
                self.customers[customer_id] = new
        for (kind, name, window, bucket), n in tally.counts(self.rules, now_ms).items():
            self.counts[(kind, name, window)][bucket] += n
        for segment, n in tally.active.items():
            self.active[segment] += n
        for team, score, member in tally.advocates_set:
            self.advocates[team][member] = score
        for team, member in tally.advocates_removed:
            self.advocates[team].pop(member, None)
        self.segments |= tally.segments
        self.teams |= tally.teams
        for outcome, n in tally.outcomes.items():
            self.outcomes[outcome] += n
        self.rejected += tally.rejected
        return self

    def totals(self, now_ms: int) -> Totals:
        """As ``Store.totals`` reads them: bucket sums per window, advocates scored from the window start."""
        actions, interactions, advocates = {}, {}, {}
        for window in self.rules.windows:
            for segment in self.segments:
                actions[(segment, window.name)] = sum_window(self.counts[("a", segment, window.name)], window, now_ms)
            for team in self.teams:
                interactions[(team, window.name)] = sum_window(self.counts[("t", team, window.name)], window, now_ms)
                start = window.start_ms(now_ms)
                advocates[(team, window.name)] = sum(1 for s in self.advocates[team].values() if s >= start)
        return Totals(actions, dict(self.active), interactions, advocates)

    def report(self, now_ms: int) -> dict[str, list[dict[str, object]]]:
        return report(self.totals(now_ms), self.rules.windows)
