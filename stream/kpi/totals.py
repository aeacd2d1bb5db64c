"""The shared totals: what a batch's record changes add to them (``Tally``), the totals as read
back (``Totals``), and the ``GET /kpis`` rows with their rates, percents and bands."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stream.event import Event
from stream.kpi.record import Change, Customer, Registration, registration_segment
from stream.kpi.step import step
from stream.kpi.windows import Rules, Window

__all__ = ["OVERFLOW_LABEL", "CountKey", "Labeler", "Tally", "Totals", "advocate_entry", "advocate_score",
           "band_of", "percent", "ratio", "report", "same_label"]

OVERFLOW_LABEL = "_other"
CountKey = tuple[str, str, str, int]  # ("a", segment, window) or ("t", team, window), bucket
Labeler = Callable[[str, str], str]  # (kind "segment" | "team", name) -> label


def same_label(kind: str, name: str) -> str:  # noqa: ARG001 - a Labeler's signature
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


# --- a batch's change to the totals ------------------------------------------------------------


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
    # per event: applied, duplicate, ignored; over the cap also capped (turned away) and evicted
    outcomes: dict[str, int] = field(default_factory=lambda: {"applied": 0, "duplicate": 0, "ignored": 0})
    rejected: list[Event] = field(default_factory=list)  # turned away by the cap: to dead-letter
    largest: int = 0  # most actions and tickets held by one record this batch wrote

    def step(self, customer_id: str, old: Customer, events: Sequence[Event], now_ms: int, rules: Rules,
             label: Labeler = same_label) -> Customer | None:
        """``step.step``, and what its change does to the totals; the new record, ``None`` if nothing."""
        change = step(old, events, now_ms, rules, self.outcomes, self.rejected)
        if change is None:
            return None
        size = len(change.actions) + len(change.tickets)
        self.largest = max(self.largest, size)
        _tally_counts(change, self, label)
        _tally_advocates(customer_id, change, self, label)
        return change.new

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


def _tally_counts(change: Change, tally: Tally, label: Labeler) -> None:
    """Pruned actions leave under the old segment, added ones come under the new one, and kept
    ones without their own segment move when the registration's segment does."""
    add = tally.add
    old = change.old
    old_segment = label("segment", registration_segment(old.registration))
    new_segment = label("segment", registration_segment(change.registration))
    for at_us, own in change.pruned_actions:
        add(-1, "a", label("segment", own) if own else old_segment, at_us)
    for at_us, own in change.added_actions.values():
        add(1, "a", label("segment", own) if own else new_segment, at_us)
    if old_segment != new_segment:
        _move_unsegmented(change, tally, old_segment, new_segment)
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


def _move_unsegmented(change: Change, tally: Tally, old_segment: str, new_segment: str) -> None:
    """Kept actions without their own segment follow the registration to its new segment (those
    added by this change were counted under the new segment already)."""
    held, added = change.old.actions, change.added_actions
    for key, (at_us, own) in change.actions.items():
        if not own and key in held and key not in added:
            tally.add(-1, "a", old_segment, at_us)
            tally.add(1, "a", new_segment, at_us)


def _tally_advocates(customer_id: str, change: Change, tally: Tally, label: Labeler) -> None:
    """Credits set or moved, and credits gone, as entries of the teams' sets of advocates."""
    before, after = change.credits_before or {}, change.credits_after or {}
    for team, at_us in after.items():
        if before.get(team) != at_us:
            name, member = advocate_entry(customer_id, team, label)
            tally.advocates_set.append((name, advocate_score(at_us), member))
    for team in before:
        if team not in after:
            tally.advocates_removed.append(advocate_entry(customer_id, team, label))


# --- reading the totals -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Totals:
    """The shared totals, already summed per window, as read from the store."""

    actions: Mapping[tuple[str, str], int]  # (segment, window) -> actions
    active: Mapping[str, int]  # segment -> active customers
    interactions: Mapping[tuple[str, str], int]  # (team, window) -> tickets
    advocates: Mapping[tuple[str, str], int]  # (team, window) -> distinct customers
    newest: Mapping[str, int] = field(default_factory=dict)  # topic -> newest event time (ms)


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def band_of(numerator: int, denominator: int) -> str | None:
    """High >= 80%, moderate 60-80%, low < 60%, no rate no band: compared exactly, in integers (no
    float rounding at 60 or 80%)."""
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
