"""The reference model of the KPI state: full recomputation, the oracle that ``kpi.step.step`` and
``kpi.totals.Tally`` are checked against (tests/unit/test_kpi_change.py).

Where ``tests/oracle.py`` and ``tests/reliability/fast_oracle.py`` read the contract from the
published payloads to the ``/kpis`` lists (sharing no code with ``stream``), this model works one
level lower, on the service's own record (``Customer``) and bucket counts, so that one customer's
step can be checked on its own: ``delta(contribution(old), contribution(new))`` is what the step
must add to the totals, recomputed from every event the customer holds. It shares the data
shapes and the per-event rules (``is_advocacy``, ``copy_rank``) with the service, and none of the
incremental code; its attribution scans the tickets where the service's searches sorted ones.
``Ledger`` keeps the running sum of every ``delta``, as the store keeps the totals.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stream.event import Event, is_advocacy
from stream.kpi.record import ACTION_KEY_PREFIX, UNKNOWN_SEGMENT, Customer, copy_rank
from stream.kpi.totals import CountKey, Labeler, Totals, advocate_entry, advocate_score, same_label
from stream.kpi.windows import Rules, Window, sum_window


@dataclass(frozen=True, slots=True)
class Contribution:
    """One customer's share of the totals."""

    counts: Mapping[CountKey, int]
    active_segment: str | None  # counted as an active customer of this segment
    advocate_of: Mapping[str, int]  # team (its own name, not folded) -> latest credited action time (us)
    segments: frozenset[str]
    teams: frozenset[str]


@dataclass(frozen=True, slots=True)
class Delta:
    """How the shared totals change when one customer's state changes."""

    counts: Mapping[CountKey, int]
    active: Mapping[str, int]
    advocates_set: Mapping[str, int]  # team -> score
    advocates_removed: frozenset[str]
    new_segments: frozenset[str]
    new_teams: frozenset[str]

    def is_empty(self) -> bool:
        return not (self.counts or self.active or self.advocates_set or self.advocates_removed
                    or self.new_segments or self.new_teams)


def apply(customer: Customer, events: Iterable[Event], now_ms: int,
          rules: Rules) -> tuple[Customer, dict[str, int]]:
    """Add events to a copy of ``customer``; return it and outcome counts (as ``step.step`` counts them)."""
    new = Customer(customer.version, customer.registration, dict(customer.actions), dict(customer.tickets))
    outcomes = {"applied": 0, "duplicate": 0, "ignored": 0}
    for event in events:
        outcomes[_apply_one(new, event)] += 1
    prune(new, now_ms, rules)
    return new, outcomes


def _apply_one(customer: Customer, event: Event) -> str:
    if event.kind == "customer":
        assert event.segment is not None
        assert event.status is not None
        record = (event.at_us, event.event_id, event.segment, event.status)
        current = customer.registration
        if current is not None and record <= current:  # the whole record decides between differing copies
            return "duplicate" if record[:2] == current[:2] else "ignored"
        customer.registration = record
        return "applied"
    if event.kind == "ticket":
        assert event.team is not None
        value = (event.at_us, event.team)
        held = customer.tickets.get(event.event_id)
        if held is not None and copy_rank(value) <= copy_rank(held):
            return "duplicate"
        customer.tickets[event.event_id] = value
        return "applied"
    if not is_advocacy(event):
        return "ignored"
    key = ACTION_KEY_PREFIX[event.kind] + event.event_id
    action = (event.at_us, event.segment)
    held_action = customer.actions.get(key)
    if held_action is not None and copy_rank(action) <= copy_rank(held_action):
        return "duplicate"
    customer.actions[key] = action
    return "applied"


def prune(customer: Customer, now_ms: int, rules: Rules) -> None:
    """Forget events that can no longer count in any window."""
    oldest_action = now_ms * 1000 - rules.action_retention_us
    oldest_ticket = now_ms * 1000 - rules.ticket_retention_us
    customer.actions = {k: v for k, v in customer.actions.items() if v[0] >= oldest_action}
    customer.tickets = {k: v for k, v in customer.tickets.items() if v[0] >= oldest_ticket}


def segment_of(customer: Customer, own_segment: str | None) -> str:
    """The event's own segment, else the latest registration's, else ``unknown``."""
    if own_segment:
        return own_segment
    return customer.registration[2] if customer.registration else UNKNOWN_SEGMENT


def credited(tickets: Mapping[str, tuple[int, str]], at_us: int, attribution_us: int) -> str | None:
    """Team of the latest ticket (by time, then event id) with t0 <= t <= t0 + attribution: one scan."""
    best: tuple[int, str, str] | None = None
    for event_id, (t0, team) in tickets.items():
        if t0 <= at_us and (best is None or (t0, event_id) > (best[0], best[1])):
            best = (t0, event_id, team)
    return best[2] if best is not None and at_us <= best[0] + attribution_us else None


def advocates(customer: Customer, rules: Rules) -> dict[str, int]:
    """Team (its own name) -> latest action time credited to it."""
    advocate_of: dict[str, int] = {}
    for at_us, _ in customer.actions.values():
        team = credited(customer.tickets, at_us, rules.attribution_us)
        if team is not None and at_us > advocate_of.get(team, -1):
            advocate_of[team] = at_us
    return advocate_of


def _count(customer: Customer, rules: Rules, label: Labeler, counts: dict[CountKey, int],
           segments: set[str], teams: set[str]) -> None:
    """One per bucket and window for each action (segment as ``customer`` resolves it) and ticket."""
    for at_us, own in customer.actions.values():
        segment = label("segment", segment_of(customer, own))
        segments.add(segment)
        for window in rules.windows:
            key = ("a", segment, window.name, at_us // window.bucket_us)
            counts[key] = counts.get(key, 0) + 1
    for at_us, raw_team in customer.tickets.values():
        team = label("team", raw_team)
        teams.add(team)
        for window in rules.windows:
            key = ("t", team, window.name, at_us // window.bucket_us)
            counts[key] = counts.get(key, 0) + 1


def contribution(customer: Customer, rules: Rules, label: Labeler = same_label) -> Contribution:
    """What ``customer`` adds to the totals; ``label`` folds names over the cardinality cap."""
    counts: dict[CountKey, int] = {}
    segments: set[str] = set()
    teams: set[str] = set()
    _count(customer, rules, label, counts, segments, teams)
    active = None
    if customer.registration is not None:
        registered = label("segment", customer.registration[2])
        segments.add(registered)
        if customer.registration[3] == "active":
            active = registered
    return Contribution(counts, active, advocates(customer, rules), frozenset(segments), frozenset(teams))


def delta(old: Contribution, new: Contribution, now_ms: int, rules: Rules) -> Delta:
    """``new - old``, leaving out buckets already older than every reader looks."""
    first = {w.name: w.first_bucket(now_ms) - 1 for w in rules.windows}
    counts: dict[CountKey, int] = {}
    for key in old.counts.keys() | new.counts.keys():
        change = new.counts.get(key, 0) - old.counts.get(key, 0)
        if change and key[3] >= first[key[2]]:
            counts[key] = change
    active: dict[str, int] = {}
    if old.active_segment != new.active_segment:
        if old.active_segment is not None:
            active[old.active_segment] = -1
        if new.active_segment is not None:
            active[new.active_segment] = active.get(new.active_segment, 0) + 1
    advocates_set = {t: at for t, at in new.advocate_of.items() if old.advocate_of.get(t) != at}
    removed = frozenset(old.advocate_of.keys() - new.advocate_of.keys())
    return Delta(counts, active, advocates_set, removed,
                 new.segments - old.segments, new.teams - old.teams)


class Ledger:
    """The shared totals as the store keeps them: the running sum of every ``delta``."""

    def __init__(self, rules: Rules, now: int) -> None:
        self.rules, self.now = rules, now
        self.customers: dict[str, Customer] = {}
        self.counts: Counter[CountKey] = Counter()
        self.active: Counter[str] = Counter()
        self.advocates: dict[str, dict[str, int]] = defaultdict(dict)  # team -> customer -> at
        self.segments: set[str] = set()
        self.teams: set[str] = set()
        self.outcomes: Counter[str] = Counter()

    def feed(self, batch: Sequence[Event]) -> Ledger:
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for event in batch:
            by_customer[event.customer_id].append(event)
        for cid, events in by_customer.items():
            old = self.customers.get(cid, Customer())
            new, outcomes = apply(old, events, self.now, self.rules)
            self.outcomes.update(outcomes)
            change = delta(contribution(old, self.rules), contribution(new, self.rules), self.now, self.rules)
            for key, n in change.counts.items():
                self.counts[key] += n
            for segment, n in change.active.items():
                self.active[segment] += n
            for team, at_us in change.advocates_set.items():
                label, member = advocate_entry(cid, team, same_label)
                self.advocates[label][member] = advocate_score(at_us)
            for team in change.advocates_removed:
                label, member = advocate_entry(cid, team, same_label)
                del self.advocates[label][member]
            self.segments |= change.new_segments
            self.teams |= change.new_teams
            self.customers[cid] = new
        return self

    def _buckets(self, kind: str, name: str, window: Window) -> dict[int, int]:
        return {b: n for (k, s, w, b), n in self.counts.items() if (k, s, w) == (kind, name, window.name)}

    def totals(self) -> Totals:
        """Like the store: an entry for every segment/team ever seen, summed per window."""
        actions, interactions, advocates = {}, {}, {}
        for window in self.rules.windows:
            for segment in self.segments:
                actions[(segment, window.name)] = sum_window(self._buckets("a", segment, window), window, self.now)
            for team in self.teams:
                interactions[(team, window.name)] = sum_window(self._buckets("t", team, window), window, self.now)
                start = window.start_ms(self.now)
                advocates[(team, window.name)] = sum(1 for at in self.advocates[team].values() if at >= start)
        return Totals(actions, dict(self.active), interactions, advocates)

    def snapshot(self) -> tuple[dict[object, int], dict[str, int], dict[str, dict[str, int]]]:
        return ({k: n for k, n in self.counts.items() if n}, {k: n for k, n in self.active.items() if n},
                {t: dict(c) for t, c in self.advocates.items() if c})
