"""Pure KPI math: windows, per-customer state, attribution, contributions, rates, bands.

No I/O here. The shared state is the sum, over customers, of what each customer's
events *contribute* (see ``contributions``). A customer's contribution is a pure
function of the set of their events, so the totals do not depend on arrival order;
applying an event twice leaves the set, and so the totals, unchanged.

Event times are integer microseconds since the epoch (``at_us``): every comparison
("latest", "follows") keeps microsecond precision. Windows, buckets and the clock
(``now_ms``) stay in milliseconds: a bucket is a whole number of milliseconds, so an
event's bucket is the same whether read from its microseconds or its milliseconds.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

UNKNOWN_SEGMENT = "unknown"
HIGH, MODERATE = 0.8, 0.6
BUCKETS_PER_WINDOW = 24
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")


def parse_duration(text: object) -> int:
    """``"90d"`` -> seconds. Units: s, m, h, d, w."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}; use e.g. 30m, 1h, 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Window:
    """A rolling window ending now, counted in 24 event-time buckets (+1 partial)."""

    name: str
    seconds: int
    bucket_ms: int = field(init=False, repr=False, compare=False)
    bucket_us: int = field(init=False, repr=False, compare=False)  # the same bucket, for event times

    def __post_init__(self) -> None:  # computed once: it sits on the hot path
        object.__setattr__(self, "bucket_ms", max(1, self.seconds * 1000 // BUCKETS_PER_WINDOW))
        object.__setattr__(self, "bucket_us", self.bucket_ms * 1000)

    def bucket(self, at_ms: int) -> int:
        return at_ms // self.bucket_ms

    def first_bucket(self, now_ms: int) -> int:
        """Oldest bucket in the window: the one holding ``now - window``."""
        return (now_ms - self.seconds * 1000) // self.bucket_ms

    def start_ms(self, now_ms: int) -> int:
        """Event times >= this are in the window (at most one bucket before now-W)."""
        return self.first_bucket(now_ms) * self.bucket_ms


def band(rate: float | None) -> str | None:
    """high >= 80%, moderate 60-80%, low < 60%; no rate, no band."""
    if rate is None:
        return None
    if rate >= HIGH:
        return "high"
    return "moderate" if rate >= MODERATE else "low"


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def band_of(numerator: int, denominator: int) -> str | None:
    """``band(numerator / denominator)`` compared exactly, in integers (no float rounding at 60 or 80%)."""
    if denominator <= 0:
        return None
    if numerator * 5 >= denominator * 4:
        return "high"
    return "moderate" if numerator * 5 >= denominator * 3 else "low"


def percent(numerator: int, denominator: int) -> float | None:
    """``rate`` x 100 rounded down to two decimals, exactly (79.996% is 79.99): a shown percent never
    crosses a band line its rate has not crossed (contract section 3, ``percent``)."""
    if denominator <= 0:
        return None
    return (numerator * 10_000 // denominator) / 100


# --- events as the state sees them -------------------------------------------------


@dataclass(slots=True, unsafe_hash=True)
class Event:
    """One valid event. ``kind`` is the logical topic: review, referral, ticket, customer.

    Not frozen only because a frozen dataclass's ``__init__`` costs 1.5 us against 0.2 us,
    once per consumed event; nothing changes an Event after ``events.parse`` builds it (it is
    hashed by value, as a frozen one would be).
    """

    kind: str
    event_id: str
    customer_id: str
    at_us: int  # event time, microseconds since the epoch
    segment: str | None = None
    review_kind: str | None = None
    rating: int | None = None
    nps: int | None = None
    team: str | None = None
    status: str | None = None


def is_advocacy(event: Event) -> bool:
    """Contract section 2: which events are advocacy actions."""
    if event.kind == "referral":
        return True
    if event.kind != "review":
        return False
    if event.review_kind == "review":
        return (event.rating or 0) >= 4
    if event.review_kind == "survey":
        return (event.nps or 0) >= 9
    return event.review_kind in ("testimonial", "case_study", "social")


# --- one customer's state -------------------------------------------------------------

Registration = tuple[int, str, str, str]  # at_us, event_id, segment, status


@dataclass(slots=True)
class Customer:
    """Everything the KPIs need of one customer, within retention.

    ``version`` is the store's token for the record it was read as ("" = none stored).
    ``advocates`` caches the attribution of the current events (``advocates_of``).
    """

    version: str = ""
    registration: Registration | None = None
    actions: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # key -> at_us, seg
    tickets: dict[str, tuple[int, str]] = field(default_factory=dict)  # event_id -> at_us, team
    advocates: dict[str, int] | None = field(default=None, compare=False)  # team -> at_us
    floor: tuple[int, int] | None = field(default=None, compare=False)  # cached ``oldest()``
    # what ``step`` added to the record it was made from, when it only added events (a
    # store may write just that); None when the registration changed or events were pruned
    added: tuple[dict[str, tuple[int, str | None]], dict[str, tuple[int, str]]] | None = \
        field(default=None, compare=False)
    legacy: bool = field(default=False, compare=False)  # read from a record in milliseconds: write it whole

    def is_empty(self) -> bool:
        return self.registration is None and not self.actions and not self.tickets

    def oldest(self) -> tuple[int, int]:
        """Oldest action and ticket times (a far future when there are none), cached."""
        if self.floor is None:
            self.floor = (min((v[0] for v in self.actions.values()), default=_FAR),
                          min((v[0] for v in self.tickets.values()), default=_FAR))
        return self.floor


_FAR = 1 << 62


@dataclass(frozen=True, slots=True)
class Rules:
    """The KPI parameters: windows and attribution window (in ms; ``*_us`` the same in microseconds)."""

    windows: tuple[Window, ...]
    attribution_ms: int
    longest_ms: int = field(init=False, repr=False, compare=False)
    action_retention_ms: int = field(init=False, repr=False, compare=False)
    ticket_retention_ms: int = field(init=False, repr=False, compare=False)
    attribution_us: int = field(init=False, repr=False, compare=False)
    action_retention_us: int = field(init=False, repr=False, compare=False)
    ticket_retention_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # computed once: read for every event
        longest = max(w.seconds for w in self.windows) * 1000
        action = longest + max(w.bucket_ms for w in self.windows) * 2
        object.__setattr__(self, "longest_ms", longest)
        object.__setattr__(self, "action_retention_ms", action)
        object.__setattr__(self, "ticket_retention_ms", action + self.attribution_ms)
        object.__setattr__(self, "attribution_us", self.attribution_ms * 1000)
        object.__setattr__(self, "action_retention_us", action * 1000)
        object.__setattr__(self, "ticket_retention_us", (action + self.attribution_ms) * 1000)


ACTION_KEY_PREFIX = {"review": "r:", "referral": "f:"}


def copy_rank(value: tuple[int, str | None]) -> tuple[int, str]:
    """How two differing copies of one action or ticket (same topic and event id) are ordered: by
    event time, then segment (actions; none sorts first) or team (tickets). The greatest is kept,
    so the copy kept does not depend on the order the copies arrive in (docs/architecture.md)."""
    return value[0], value[1] or ""


def apply(customer: Customer, events: Iterable[Event], now_ms: int,
          rules: Rules) -> tuple[Customer, dict[str, int]]:
    """Add events to a copy of ``customer``; return it and outcome counts.

    Outcomes: ``applied`` (new, or a differing copy that replaces the one held: ``copy_rank``),
    ``duplicate`` (that copy, or a greater one, already held on that topic), ``ignored`` (valid
    but not an advocacy action, or an older registration).
    """
    new = Customer(customer.version, customer.registration, dict(customer.actions), dict(customer.tickets))
    outcomes = {"applied": 0, "duplicate": 0, "ignored": 0}
    for event in events:
        outcomes[_apply_one(new, event)] += 1
    prune(new, now_ms, rules)
    return new, outcomes


def _apply_one(customer: Customer, event: Event) -> str:
    if event.kind == "customer":
        assert event.segment is not None and event.status is not None
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
    if any(at < oldest_action for at, _ in customer.actions.values()):
        customer.actions = {k: v for k, v in customer.actions.items() if v[0] >= oldest_action}
    if any(at < oldest_ticket for at, _ in customer.tickets.values()):
        customer.tickets = {k: v for k, v in customer.tickets.items() if v[0] >= oldest_ticket}


def expires_at_ms(customer: Customer, rules: Rules) -> int | None:
    """When the whole record may be dropped (a whole ms after its last event is pruned); ``None``
    while it holds a registration."""
    if customer.registration is not None:
        return None
    last_action = max((at for at, _ in customer.actions.values()), default=0)
    last_ticket = max((at for at, _ in customer.tickets.values()), default=0)
    return max(last_action + rules.action_retention_us, last_ticket + rules.ticket_retention_us) // 1000 + 1


def segment_of(customer: Customer, own_segment: str | None) -> str:
    """The event's own segment, else the latest registration's, else ``unknown``."""
    if own_segment:
        return own_segment
    return customer.registration[2] if customer.registration else UNKNOWN_SEGMENT


def credited_team(tickets: list[tuple[int, str, str]], at_us: int, attribution_us: int) -> str | None:
    """Team of the latest ticket with t0 <= t <= t0 + attribution; tickets sorted by (t0, id).

    The search compares times only, so the last ticket at or before ``at_us`` is found (the
    greatest id among tickets at the same instant) whatever characters the ids hold.
    """
    index = bisect_right(tickets, at_us, key=_time) - 1
    if index < 0:
        return None
    t0, _, team = tickets[index]
    return team if at_us <= t0 + attribution_us else None


def _time(ticket: tuple[int, str, str]) -> int:
    return ticket[0]


# --- contributions: what one customer adds to the shared totals ------------------------

CountKey = tuple[str, str, str, int]  # ("a", segment, window) or ("t", team, window), bucket


@dataclass(frozen=True, slots=True)
class Contribution:
    """One customer's share of the totals."""

    counts: Mapping[CountKey, int]
    active_segment: str | None  # counted as an active customer of this segment
    advocate_of: Mapping[str, int]  # team (its own name, not folded) -> latest credited action time (us)
    segments: frozenset[str]
    teams: frozenset[str]


OVERFLOW_LABEL = "_other"
Labeler = Callable[[str, str], str]  # (kind "segment" | "team", name) -> label


def same_label(kind: str, name: str) -> str:
    return name


def advocate_entry(customer_id: str, team: str, label: Labeler) -> tuple[str, str]:
    """Where a customer's credit to ``team`` is kept: the team's label, and the member in that label's
    set of advocates. A member is one (customer, team): under a team's own name the customer id;
    under ``_other``, which several teams share, the team, a NUL and the customer id (a team name
    holds no control character), so a customer credited to two folded teams counts twice there, as
    under the two names (contract section 3, "Label caps")."""
    name = label("team", team)
    return (name, customer_id) if name != OVERFLOW_LABEL else (name, f"{team}\x00{customer_id}")


def advocate_score(at_us: int) -> int:
    """An advocate's score in the store: the credited action's millisecond. A window starts on a whole
    millisecond (a bucket edge), so ``at_us >= start_ms * 1000`` exactly when ``score >= start_ms``."""
    return at_us // 1000


def _count(customer: Customer, actions: Mapping[str, tuple[int, str | None]],
           tickets: Mapping[str, tuple[int, str]], rules: Rules, label: Labeler, sign: int,
           counts: dict[CountKey, int], segments: set[str], teams: set[str]) -> None:
    """Add ``sign`` per bucket and window for each action (segment as ``customer`` resolves it)
    and each ticket."""
    get = counts.get
    sizes = [(w.name, w.bucket_us) for w in rules.windows]
    for at_us, own in actions.values():
        segment = label("segment", segment_of(customer, own))
        segments.add(segment)
        for name, size in sizes:
            key = ("a", segment, name, at_us // size)
            counts[key] = get(key, 0) + sign
    for at_us, raw_team in tickets.values():
        team = label("team", raw_team)
        teams.add(team)
        for name, size in sizes:
            key = ("t", team, name, at_us // size)
            counts[key] = get(key, 0) + sign


def _advocates(customer: Customer, rules: Rules) -> dict[str, int]:
    """Team (its own name) -> latest action time credited to it (attribution, contract section 3).
    Names are folded only where the credit is stored (``advocate_entry``)."""
    advocate_of: dict[str, int] = {}
    if customer.tickets:
        ordered = sorted((at, eid, team) for eid, (at, team) in customer.tickets.items())
        for at_us, _ in customer.actions.values():
            credited = credited_team(ordered, at_us, rules.attribution_us)
            if credited is not None and at_us > advocate_of.get(credited, -1):
                advocate_of[credited] = at_us
    return advocate_of


def contribution(customer: Customer, rules: Rules, label: Labeler = same_label) -> Contribution:
    """What ``customer`` adds to the totals; ``label`` folds names over the cardinality cap."""
    counts: dict[CountKey, int] = {}
    segments: set[str] = set()
    teams: set[str] = set()
    _count(customer, customer.actions, customer.tickets, rules, label, 1, counts, segments, teams)
    advocate_of = _advocates(customer, rules)
    active = None
    if customer.registration is not None:
        registered = label("segment", customer.registration[2])
        segments.add(registered)
        if customer.registration[3] == "active":
            active = registered
    return Contribution(counts, active, advocate_of, frozenset(segments), frozenset(teams))


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


@dataclass(slots=True)
class Tally:
    """What a batch of customer updates changes in the shared totals, summed over customers.

    Event times are kept per (kind, label) and turned into per-window bucket counts once
    per batch (``counts``), so the cost per event is an append, not a dict update per window.
    """

    plus: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # ("a"|"t", name) -> times (us)
    minus: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)  # segment -> active customers
    # team label, score (``advocate_score``), member (``advocate_entry``)
    advocates_set: list[tuple[str, int, str]] = field(default_factory=list)
    advocates_removed: list[tuple[str, str]] = field(default_factory=list)  # team label, member
    segments: set[str] = field(default_factory=set)
    teams: set[str] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=lambda: {"applied": 0, "duplicate": 0, "ignored": 0})

    def add(self, sign: int, kind: str, name: str, at_us: int) -> None:
        """Count an event at ``at_us`` once more (sign 1) or once less (-1) for segment or team
        ``name`` (kind "a" or "t"); names counted once more are the batch's names seen."""
        side = self.plus if sign > 0 else self.minus
        times = side.get((kind, name))
        if times is None:
            side[(kind, name)] = [at_us]
            if sign > 0:
                (self.segments if kind == "a" else self.teams).add(name)
        else:
            times.append(at_us)

    def counts(self, rules: Rules, now_ms: int) -> dict[CountKey, int]:
        """Per (kind, name, window, bucket) change, leaving out buckets no reader looks at."""
        counts: dict[CountKey, int] = {}
        for side, sign in ((self.plus, 1), (self.minus, -1)):
            for (kind, name), times in side.items():
                for window in rules.windows:
                    size, first = window.bucket_us, window.first_bucket(now_ms) - 1
                    for bucket, n in Counter([t // size for t in times]).items():
                        if bucket >= first:
                            key = (kind, name, window.name, bucket)
                            counts[key] = counts.get(key, 0) + sign * n
        return {k: n for k, n in counts.items() if n}


def _credit(tickets: Mapping[str, tuple[int, str]], at_us: int, attribution_us: int) -> str | None:
    """``credited_team`` by one scan of the tickets (a customer holds few)."""
    best: tuple[int, str, str] | None = None
    for event_id, (t0, team) in tickets.items():
        if t0 <= at_us and (best is None or (t0, event_id) > (best[0], best[1])):
            best = (t0, event_id, team)
    return best[2] if best is not None and at_us <= best[0] + attribution_us else None


def advocates_of(customer: Customer, rules: Rules) -> dict[str, int]:
    """``_advocates``, cached on the customer."""
    if customer.advocates is None:
        customer.advocates = _advocates(customer, rules) if customer.tickets else {}
    return customer.advocates


@dataclass(slots=True)
class _Change:
    """One customer's record being updated by ``step``."""

    registration: Registration | None
    actions: dict[str, tuple[int, str | None]]
    tickets: dict[str, tuple[int, str]]
    added_actions: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    added_tickets: dict[str, tuple[int, str]] = field(default_factory=dict)
    pruned_actions: list[tuple[int, str | None]] = field(default_factory=list)
    pruned_tickets: list[tuple[int, str]] = field(default_factory=list)
    replaced: bool = False  # a held copy gave way to a greater one (``copy_rank``)


def step(customer_id: str, old: Customer, events: Iterable[Event], now_ms: int, rules: Rules,
         tally: Tally, label: Labeler = same_label) -> Customer | None:
    """Add ``events`` to a copy of ``old`` and what that changes to ``tally``; ``None`` if nothing.

    Equal to ``delta(contribution(old), contribution(new))`` (tests/unit/test_kpi_change.py),
    at the cost of the events added or pruned, not of every event the customer holds.
    """
    change = _Change(old.registration, old.actions, old.tickets)
    _add_events(old, change, events, tally.outcomes)
    floor = _prune_change(old, change, now_ms, rules)
    if not (change.added_actions or change.added_tickets or change.pruned_actions or change.pruned_tickets) \
            and change.registration == old.registration:
        return None
    new = Customer(old.version, change.registration, change.actions, change.tickets, floor=floor)
    if change.registration == old.registration and not (change.pruned_actions or change.pruned_tickets):
        new.added = (change.added_actions, change.added_tickets)
    _tally_counts(old, change, tally, label)
    _tally_advocates(customer_id, old, new, change, tally, rules, label)
    return new


def _add_events(old: Customer, change: _Change, events: Iterable[Event], outcomes: dict[str, int]) -> None:
    for event in events:
        kind = event.kind
        if kind == "customer":
            record = (event.at_us, event.event_id, event.segment or UNKNOWN_SEGMENT, event.status or "")
            current = change.registration
            if current is not None and record <= current:
                outcomes["duplicate" if record[:2] == current[:2] else "ignored"] += 1
                continue
            change.registration = record
        elif kind == "ticket":
            ticket = (event.at_us, event.team or "")
            held = change.tickets.get(event.event_id)
            if held is not None and copy_rank(ticket) <= copy_rank(held):
                outcomes["duplicate"] += 1
                continue
            if change.tickets is old.tickets:  # copy on first write: ``old`` stays as it was
                change.tickets = dict(old.tickets)
            if held is not None and event.event_id not in change.added_tickets:
                change.pruned_tickets.append(held)  # the stored copy gives way
                change.replaced = True
            change.tickets[event.event_id] = ticket
            change.added_tickets[event.event_id] = ticket
        else:
            if not is_advocacy(event):
                outcomes["ignored"] += 1
                continue
            key = ACTION_KEY_PREFIX[kind] + event.event_id
            action = (event.at_us, event.segment)
            held_action = change.actions.get(key)
            if held_action is not None and copy_rank(action) <= copy_rank(held_action):
                outcomes["duplicate"] += 1
                continue
            if change.actions is old.actions:
                change.actions = dict(old.actions)
            if held_action is not None and key not in change.added_actions:
                change.pruned_actions.append(held_action)
                change.replaced = True
            change.actions[key] = action
            change.added_actions[key] = action
        outcomes["applied"] += 1


def _prune_change(old: Customer, change: _Change, now_ms: int, rules: Rules) -> tuple[int, int]:
    """``prune`` for a change: O(1) unless the oldest kept event expires. Returns the new floor."""
    if change.replaced:  # the copy given way may have been the oldest (rare: count again)
        oldest_action = min((v[0] for v in change.actions.values()), default=_FAR)
        oldest_ticket = min((v[0] for v in change.tickets.values()), default=_FAR)
    else:
        oldest_action, oldest_ticket = old.floor or old.oldest()
        for at_us, _ in change.added_actions.values():
            oldest_action = min(oldest_action, at_us)
        for at_us, _ in change.added_tickets.values():
            oldest_ticket = min(oldest_ticket, at_us)
    cut = now_ms * 1000 - rules.action_retention_us
    if oldest_action < cut:
        change.pruned_actions += [v for v in change.actions.values() if v[0] < cut]
        change.actions = {k: v for k, v in change.actions.items() if v[0] >= cut}
        oldest_action = min((v[0] for v in change.actions.values()), default=_FAR)
    cut = now_ms * 1000 - rules.ticket_retention_us
    if oldest_ticket < cut:
        change.pruned_tickets += [v for v in change.tickets.values() if v[0] < cut]
        change.tickets = {k: v for k, v in change.tickets.items() if v[0] >= cut}
        oldest_ticket = min((v[0] for v in change.tickets.values()), default=_FAR)
    return oldest_action, oldest_ticket


def _tally_counts(old: Customer, change: _Change, tally: Tally, label: Labeler) -> None:
    """Pruned actions leave under the old segment, added ones come under the new one, and kept
    ones without their own segment move when the registration's segment does."""
    add = tally.add
    old_segment = label("segment", registration_segment(old.registration))
    new_segment = label("segment", registration_segment(change.registration))
    for at_us, own in change.pruned_actions:
        add(-1, "a", label("segment", own) if own else old_segment, at_us)
    for at_us, own in change.added_actions.values():
        add(1, "a", label("segment", own) if own else new_segment, at_us)
    if old_segment != new_segment:
        _move_unsegmented(old, change, tally, old_segment, new_segment)
    for at_us, team in change.pruned_tickets:
        add(-1, "t", label("team", team), at_us)
    for at_us, team in change.added_tickets.values():
        add(1, "t", label("team", team), at_us)
    if change.registration is not old.registration:
        _tally_active(old.registration, change.registration, tally, old_segment, new_segment)


def _tally_active(old: Registration | None, new: Registration | None, tally: Tally, old_segment: str,
                  new_segment: str) -> None:
    """Active customers per segment: the latest registration's status and segment."""
    old_active = old_segment if old is not None and old[3] == "active" else None
    new_active = new_segment if new is not None and new[3] == "active" else None
    if new is not None:
        tally.segments.add(new_segment)
    if old_active != new_active:
        if old_active is not None:
            tally.active[old_active] = tally.active.get(old_active, 0) - 1
        if new_active is not None:
            tally.active[new_active] = tally.active.get(new_active, 0) + 1


def _move_unsegmented(old: Customer, change: _Change, tally: Tally, old_segment: str, new_segment: str) -> None:
    """Kept actions without their own segment follow the registration to its new segment (those
    added by this change were counted under the new segment already)."""
    added = change.added_actions
    for key, (at_us, own) in change.actions.items():
        if not own and key in old.actions and key not in added:
            tally.add(-1, "a", old_segment, at_us)
            tally.add(1, "a", new_segment, at_us)


def _tally_advocates(customer_id: str, old: Customer, new: Customer, change: _Change, tally: Tally,
                     rules: Rules, label: Labeler) -> None:
    """New tickets or pruning can re-credit every action; new actions only add credits."""
    before = advocates_of(old, rules) if (old.tickets or old.advocates) else {}
    if not new.tickets:
        after: dict[str, int] = {}
    elif change.added_tickets or change.pruned_actions or change.pruned_tickets:
        after = _advocates(new, rules)
    elif change.added_actions:
        after = dict(before)
        for at_us, _ in change.added_actions.values():
            team = _credit(new.tickets, at_us, rules.attribution_us)
            if team is not None and at_us > after.get(team, -1):
                after[team] = at_us
    else:
        after = before
    new.advocates = after
    for team, at_us in after.items():
        if before.get(team) != at_us:
            name, member = advocate_entry(customer_id, team, label)
            tally.advocates_set.append((name, advocate_score(at_us), member))
    for team in before:
        if team not in after:
            tally.advocates_removed.append(advocate_entry(customer_id, team, label))


def registration_segment(registration: Registration | None) -> str:
    return registration[2] if registration is not None else UNKNOWN_SEGMENT


# --- reading the totals -----------------------------------------------------------------


def sum_window(buckets: Mapping[int, int], window: Window, now_ms: int) -> int:
    """Total of the buckets inside the window ending at ``now_ms``."""
    first = window.first_bucket(now_ms)
    return sum(n for k, n in buckets.items() if k >= first)


@dataclass(frozen=True, slots=True)
class Totals:
    """The shared totals, already summed per window, as read from the store."""

    actions: Mapping[tuple[str, str], int]  # (segment, window) -> actions
    active: Mapping[str, int]  # segment -> active customers
    interactions: Mapping[tuple[str, str], int]  # (team, window) -> tickets
    advocates: Mapping[tuple[str, str], int]  # (team, window) -> distinct customers
    newest: Mapping[str, int] = field(default_factory=dict)  # topic -> newest event time (ms)


def report(totals: Totals, windows: Iterable[Window]) -> dict[str, list[dict[str, object]]]:
    """The four KPI lists of ``GET /kpis`` (contract section 4)."""
    names = [w.name for w in windows]
    # a segment is listed while it has active customers or actions; a team while it has
    # tickets or advocates: names that only ever held expired events drop out
    segments = sorted({s for (s, _), n in totals.actions.items() if n}
                      | {s for s, n in totals.active.items() if n > 0})
    teams = sorted({t for (t, _), n in totals.interactions.items() if n}
                   | {t for (t, _), n in totals.advocates.items() if n})
    out: dict[str, list[dict[str, object]]] = {
        "advocacy_actions": [], "advocacy_actions_overall": [],
        "advocacy_creation": [], "advocacy_creation_overall": [],
    }
    all_customers = sum(max(0, n) for n in totals.active.values())
    for name in names:
        total_actions = 0
        for segment in segments:
            actions = totals.actions.get((segment, name), 0)
            customers = max(0, totals.active.get(segment, 0))
            total_actions += actions
            out["advocacy_actions"].append(_action_row({"segment": segment}, name, actions, customers))
        out["advocacy_actions_overall"].append(_action_row({}, name, total_actions, all_customers))
        total_adv = total_int = 0
        for team in teams:
            advocates = totals.advocates.get((team, name), 0)
            interactions = totals.interactions.get((team, name), 0)
            total_adv += advocates
            total_int += interactions
            out["advocacy_creation"].append(_creation_row({"team": team}, name, advocates, interactions))
        out["advocacy_creation_overall"].append(_creation_row({}, name, total_adv, total_int))
    return out


def _action_row(label: dict[str, object], window: str, actions: int, customers: int) -> dict[str, object]:
    return {**label, "window": window, "actions": actions, "customers": customers,
            "rate": ratio(actions, customers), "band": band_of(actions, customers)}


def _creation_row(label: dict[str, object], window: str, advocates: int, interactions: int) -> dict[str, object]:
    return {**label, "window": window, "advocates_created": advocates,
            "support_interactions": interactions, "rate": ratio(advocates, interactions),
            "percent": percent(advocates, interactions), "band": band_of(advocates, interactions)}
