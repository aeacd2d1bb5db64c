"""Expected KPIs for tens of thousands of events, in O(n log n).

An independent second reading of contract section 3 (it shares no code with
``stream.kpi`` nor with ``tests/oracle.py``, whose attribution is quadratic): events are
grouped per customer, each advocacy action is credited by a binary search over that
customer's tickets, and each window is a cut on exact event times (integer microseconds,
read with ``datetime``). Tests keep event times away from window edges, where the
service's buckets may legitimately differ. Copies of one event that differ, and label
caps (``kept``), follow the same rules as ``tests/oracle.py`` (see its docstring).
``test_generators_and_oracle.py`` checks it against ``tests/oracle.py`` on small scenarios.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

ALWAYS = frozenset({"testimonial", "case_study", "social"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OTHER = "_other"


def micros(text: str) -> int:
    """Epoch microseconds; a leap second (23:59:60 UTC) is the last microsecond of 23:59:59."""
    text = text.replace("Z", "+00:00").replace("z", "+00:00").replace("t", "T")
    leap = text[17:19] == "60"
    value = datetime.fromisoformat(text[:17] + "59" + text[19:] if leap else text)
    at = (value - EPOCH) // timedelta(microseconds=1)
    return at - at % 1_000_000 + 999_999 if leap else at


def advocacy(kind: str, event: dict[str, Any]) -> bool:
    """Contract section 2, the last column of the per-topic table."""
    if kind == "referral":
        return True
    if kind != "review":
        return False
    what = event["kind"]
    if what == "review":
        return bool(event["rating"] >= 4)
    if what == "survey":
        return bool(event["nps"] >= 9)
    return what in ALWAYS


def band(numerator: int, denominator: int) -> str | None:
    """Compared in integers: high when n/d >= 4/5, moderate when >= 3/5."""
    if denominator <= 0:
        return None
    if 5 * numerator >= 4 * denominator:
        return "high"
    return "moderate" if 5 * numerator >= 3 * denominator else "low"


def expected(events: list[tuple[str, dict[str, Any]]], now: float, windows: dict[str, int],
             attribution: int, kept: dict[str, set[str]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``events``: (kind, payload) of valid events, duplicates allowed, in any order."""
    unique: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {}
    for kind, event in events:
        rank = _rank(kind, event)
        if rank is not None:
            held = unique.get((kind, event["event_id"]))
            if held is None or rank > held[0]:
                unique[(kind, event["event_id"])] = (rank, event)

    def name(kind: str, value: str) -> str:
        return value if kept is None or value in ("unknown", OTHER) or value in kept[kind] else OTHER

    registration: dict[str, tuple[int, str, str, str]] = {}  # customer -> (at, id, segment, status)
    tickets: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # customer -> (at, id, team)
    actions: list[tuple[str, int, str | None]] = []  # customer, at, own segment
    for (kind, event_id), (_, event) in unique.items():
        customer, at = event["customer_id"], micros(event["occurred_at"])
        if kind == "customer":
            record = (at, event_id, event["segment"], event["status"])
            if customer not in registration or record[:2] > registration[customer][:2]:
                registration[customer] = record
        elif kind == "ticket":
            tickets[customer].append((at, event_id, event["team"]))
        else:
            actions.append((customer, at, event.get("segment") or None))
    for held in tickets.values():
        held.sort()

    active: dict[str, int] = defaultdict(int)
    for _, _, segment, status in registration.values():
        if status == "active":
            active[name("segment", segment)] += 1
    # each action: (at, segment, credited team or None)
    resolved: list[tuple[str, int, str, str | None]] = []
    for customer, at, own in actions:
        segment = name("segment", own or (registration[customer][2] if customer in registration else "unknown"))
        team = None
        held = tickets.get(customer)
        if held:
            # the latest ticket at or before the action: searched on times alone, whatever the ids hold
            i = bisect_right(held, at, key=lambda ticket: ticket[0]) - 1
            if i >= 0 and at <= held[i][0] + attribution * 1_000_000:
                team = held[i][2]
        resolved.append((customer, at, segment, team))
    # distinct advocates per team: a customer counts in a window if any credited action is in it,
    # i.e. if their latest credited action is; a folded team's advocates stay distinct per team
    latest_credit: dict[tuple[str, str], int] = {}
    for customer, at, _, team in resolved:
        if team is not None and at > latest_credit.get((team, customer), -1):
            latest_credit[(team, customer)] = at

    now_us = int(now * 1_000_000)
    horizon = now_us - max(windows.values()) * 1_000_000
    segment_names = sorted({s for _, at, s, _ in resolved if at >= horizon} | {s for s, n in active.items() if n})
    team_names = sorted({name("team", team) for held in tickets.values() for at, _, team in held if at >= horizon}
                        | {name("team", team) for (team, _), at in latest_credit.items() if at >= horizon})
    out: dict[str, list[dict[str, Any]]] = {"advocacy_actions": [], "advocacy_actions_overall": [],
                                            "advocacy_creation": [], "advocacy_creation_overall": []}
    all_tickets = [(at, team) for held in tickets.values() for at, _, team in held]
    customers_total = sum(active.values())
    for window, length in sorted(windows.items(), key=lambda item: item[1]):
        start = now_us - length * 1_000_000
        per_segment: dict[str, int] = defaultdict(int)
        for _, at, segment, _ in resolved:
            if at >= start:
                per_segment[segment] += 1
        per_team: dict[str, int] = defaultdict(int)
        for at, team in all_tickets:
            if at >= start:
                per_team[name("team", team)] += 1
        advocates: dict[str, int] = defaultdict(int)
        for (team, _), at in latest_credit.items():
            if at >= start:
                advocates[name("team", team)] += 1
        for segment in segment_names:
            out["advocacy_actions"].append(_actions(segment, window, per_segment[segment], active.get(segment, 0)))
        overall = _actions(None, window, sum(per_segment[s] for s in segment_names), customers_total)
        out["advocacy_actions_overall"].append(overall)
        for team in team_names:
            out["advocacy_creation"].append(_creation(team, window, advocates[team], per_team[team]))
        out["advocacy_creation_overall"].append(_creation(
            None, window, sum(advocates[t] for t in team_names), sum(per_team[t] for t in team_names)))
    return out


def _rank(kind: str, event: dict[str, Any]) -> tuple[Any, ...] | None:
    """Which copy of an event wins (the greatest); None: not counted (a copy that is no advocacy action)."""
    at = micros(event["occurred_at"])
    if kind == "customer":
        return at, event["segment"], event["status"]
    if kind == "ticket":
        return at, event["team"]
    return (at, event.get("segment") or "") if advocacy(kind, event) else None


def _actions(segment: str | None, window: str, actions: int, customers: int) -> dict[str, Any]:
    rate = actions / customers if customers > 0 else None
    row: dict[str, Any] = {} if segment is None else {"segment": segment}
    row.update(window=window, actions=actions, customers=customers, rate=rate, band=band(actions, customers))
    return row


def _creation(team: str | None, window: str, advocates: int, interactions: int) -> dict[str, Any]:
    rate = advocates / interactions if interactions > 0 else None
    hundredths = advocates * 10_000 // interactions if interactions > 0 else None  # rate x 100, rounded down
    row: dict[str, Any] = {} if team is None else {"team": team}
    row.update(window=window, advocates_created=advocates, support_interactions=interactions, rate=rate,
               percent=None if hundredths is None else hundredths / 100, band=band(advocates, interactions))
    return row
