"""Expected KPIs for tens of thousands of events, in O(n log n).

An independent second reading of contract section 3 (it shares no code with
``stream.kpi`` nor with ``tests/oracle.py``, whose attribution is quadratic): events are
grouped per customer, each advocacy action is credited by a binary search over that
customer's tickets, and each window is a cut on exact event times. Tests keep event
times away from window edges, where the service's buckets may legitimately differ.
``test_oracles.py`` checks it against ``tests/oracle.py`` on small scenarios.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from datetime import datetime
from typing import Any

ALWAYS = frozenset({"testimonial", "case_study", "social"})
LAST = "\U0010ffff"


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()


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


def band(rate: float | None) -> str | None:
    if rate is None:
        return None
    if rate >= 0.8:
        return "high"
    return "moderate" if rate >= 0.6 else "low"


def expected(events: list[tuple[str, dict[str, Any]]], now: float, windows: dict[str, int],
             attribution: int) -> dict[str, list[dict[str, Any]]]:
    """``events``: (kind, payload) of valid events, duplicates allowed, in any order."""
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, event in events:
        unique.setdefault((kind, event["event_id"]), event)
    registration: dict[str, tuple[float, str, str, str]] = {}  # customer -> (at, id, segment, status)
    tickets: dict[str, list[tuple[float, str, str]]] = defaultdict(list)  # customer -> (at, id, team)
    actions: list[tuple[str, float, str | None]] = []  # customer, at, own segment
    for (kind, event_id), event in unique.items():
        customer, at = event["customer_id"], seconds(event["occurred_at"])
        if kind == "customer":
            record = (at, event_id, event["segment"], event["status"])
            if customer not in registration or record[:2] > registration[customer][:2]:
                registration[customer] = record
        elif kind == "ticket":
            tickets[customer].append((at, event_id, event["team"]))
        elif advocacy(kind, event):
            actions.append((customer, at, event.get("segment") or None))
    for held in tickets.values():
        held.sort()

    active: dict[str, int] = defaultdict(int)
    for _, _, segment, status in registration.values():
        if status == "active":
            active[segment] += 1
    # each action: (at, segment, credited team or None)
    resolved: list[tuple[str, float, str, str | None]] = []
    for customer, at, own in actions:
        segment = own or (registration[customer][2] if customer in registration else "unknown")
        team = None
        held = tickets.get(customer)
        if held:
            i = bisect_right(held, (at, LAST, LAST)) - 1  # the latest ticket at or before the action
            if i >= 0 and at <= held[i][0] + attribution:
                team = held[i][2]
        resolved.append((customer, at, segment, team))
    # distinct advocates per team: a customer counts in a window if any credited action is in it,
    # i.e. if their latest credited action is
    latest_credit: dict[tuple[str, str], float] = {}
    for customer, at, _, team in resolved:
        if team is not None and at > latest_credit.get((team, customer), float("-inf")):
            latest_credit[(team, customer)] = at

    horizon = now - max(windows.values())
    segment_names = sorted({s for _, at, s, _ in resolved if at >= horizon} | {s for s, n in active.items() if n})
    team_names = sorted({team for held in tickets.values() for at, _, team in held if at >= horizon}
                        | {team for (team, _), at in latest_credit.items() if at >= horizon})
    out: dict[str, list[dict[str, Any]]] = {"advocacy_actions": [], "advocacy_actions_overall": [],
                                            "advocacy_creation": [], "advocacy_creation_overall": []}
    all_tickets = [(at, team) for held in tickets.values() for at, _, team in held]
    customers_total = sum(active.values())
    for name, length in sorted(windows.items(), key=lambda item: item[1]):
        start = now - length
        per_segment: dict[str, int] = defaultdict(int)
        for _, at, segment, _ in resolved:
            if at >= start:
                per_segment[segment] += 1
        per_team: dict[str, int] = defaultdict(int)
        for at, team in all_tickets:
            if at >= start:
                per_team[team] += 1
        advocates: dict[str, int] = defaultdict(int)
        for (team, _), at in latest_credit.items():
            if at >= start:
                advocates[team] += 1
        for segment in segment_names:
            out["advocacy_actions"].append(_actions(segment, name, per_segment[segment], active.get(segment, 0)))
        overall = _actions(None, name, sum(per_segment[s] for s in segment_names), customers_total)
        out["advocacy_actions_overall"].append(overall)
        for team in team_names:
            out["advocacy_creation"].append(_creation(team, name, advocates[team], per_team[team]))
        out["advocacy_creation_overall"].append(_creation(
            None, name, sum(advocates[t] for t in team_names), sum(per_team[t] for t in team_names)))
    return out


def _actions(segment: str | None, window: str, actions: int, customers: int) -> dict[str, Any]:
    rate = actions / customers if customers > 0 else None
    row: dict[str, Any] = {} if segment is None else {"segment": segment}
    row.update(window=window, actions=actions, customers=customers, rate=rate, band=band(rate))
    return row


def _creation(team: str | None, window: str, advocates: int, interactions: int) -> dict[str, Any]:
    rate = advocates / interactions if interactions > 0 else None
    row: dict[str, Any] = {} if team is None else {"team": team}
    row.update(window=window, advocates_created=advocates, support_interactions=interactions, rate=rate,
               percent=None if rate is None else rate * 100, band=band(rate))
    return row
