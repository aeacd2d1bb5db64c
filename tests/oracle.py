"""An independent, brute-force reading of contract section 3, used as the expected answer.

It shares no code with ``stream.kpi``: it works on the plain event dicts the tests
publish, with exact window edges (tests keep event times away from the edges, where
the service's 1/24-window buckets may legitimately differ). Event times are exact
integer microseconds, read with its own pattern and calendar arithmetic.

Copies of one event (same topic, same ``event_id``) that differ are settled by the rule
of docs/architecture.md: a registration keeps its greatest (occurred_at, segment,
status); a ticket its greatest (occurred_at, team); an action counts when any copy is an
advocacy action, with the greatest (occurred_at, segment) of those copies.

``kept`` (label caps, contract section 3): the segment and team names that keep their
own row; any other name counts under ``_other``, where advocates are distinct
(customer, team) pairs, as under the names folded into it.
"""

from __future__ import annotations

import calendar
import re
from fractions import Fraction
from typing import Any

ADVOCACY_KINDS = {"testimonial", "case_study", "social"}
OTHER = "_other"
ALWAYS_KEPT = {"unknown", OTHER}
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))")


def us(text: str) -> int:
    """RFC 3339 -> epoch microseconds (digits past the sixth cut; a leap second is the last us of 23:59:59)."""
    match = _STAMP.fullmatch(text)
    assert match is not None, text
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    offset = 0
    if match.group(8):
        offset = (int(match.group(9)) * 60 + int(match.group(10))) * 60 * (1 if match.group(8) == "+" else -1)
    seconds = calendar.timegm((year, month, day, hour, minute, min(second, 59))) - offset
    micros = 999_999 if second == 60 else int((match.group(7) or "").ljust(6, "0")[:6])
    return seconds * 1_000_000 + micros


def is_action(topic: str, e: dict[str, Any]) -> bool:
    if topic == "referral":
        return True
    if topic != "review":
        return False
    kind = e["kind"]
    if kind == "review":
        return e["rating"] >= 4
    if kind == "survey":
        return e["nps"] >= 9
    return kind in ADVOCACY_KINDS


def band(numerator: int, denominator: int) -> str | None:
    if denominator <= 0:
        return None
    rate = Fraction(numerator, denominator)
    return "high" if rate >= Fraction(4, 5) else "moderate" if rate >= Fraction(3, 5) else "low"


def settle(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One copy per (topic, event_id) by the rule above; actions only when a copy is one."""
    copies: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for kind, e in events:
        copies.setdefault((kind, e["event_id"]), []).append(e)
    out = []
    for (kind, _), found in copies.items():
        if kind == "customer":
            out.append((kind, max(found, key=lambda e: (us(e["occurred_at"]), e["segment"], e["status"]))))
        elif kind == "ticket":
            out.append((kind, max(found, key=lambda e: (us(e["occurred_at"]), e["team"]))))
        else:
            acting = [e for e in found if is_action(kind, e)]
            if acting:
                out.append((kind, max(acting, key=lambda e: (us(e["occurred_at"]), e.get("segment") or ""))))
    return out


def expected_kpis(events: list[tuple[str, dict[str, Any]]], now: float, windows: dict[str, int],
                  attribution: int, kept: dict[str, set[str]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``events``: (kind, payload) of VALID events, duplicates allowed, any order. ``now`` in seconds,
    ``windows`` and ``attribution`` in seconds."""
    unique = settle(events)
    now_us = int(now * 1_000_000)

    def label(kind: str, name: str) -> str:
        if kept is None or name in ALWAYS_KEPT or name in kept[kind]:
            return name
        return OTHER

    latest: dict[str, dict[str, Any]] = {}
    for kind, e in unique:
        if kind == "customer":
            cur = latest.get(e["customer_id"])
            if cur is None or (us(e["occurred_at"]), e["event_id"]) > (us(cur["occurred_at"]), cur["event_id"]):
                latest[e["customer_id"]] = e
    actions = [(e, us(e["occurred_at"])) for kind, e in unique if kind in ("review", "referral")]
    tickets = [(e, us(e["occurred_at"])) for kind, e in unique if kind == "ticket"]

    def segment(e: dict[str, Any]) -> str:
        if e.get("segment"):
            return label("segment", str(e["segment"]))
        reg = latest.get(e["customer_id"])
        return label("segment", str(reg["segment"]) if reg else "unknown")

    def credit(e: dict[str, Any], t: int) -> str | None:
        """The raw team of the latest ticket t0 <= t <= t0 + attribution (a tie: the greater event_id)."""
        best = None
        for ticket, t0 in tickets:
            if ticket["customer_id"] == e["customer_id"] and t0 <= t <= t0 + attribution * 1_000_000:
                key = (t0, ticket["event_id"])
                if best is None or key > best[0]:
                    best = (key, ticket["team"])
        return best[1] if best else None

    active: dict[str, int] = {}
    for reg in latest.values():
        if reg["status"] == "active":
            name = label("segment", reg["segment"])
            active[name] = active.get(name, 0) + 1
    horizon = now_us - max(windows.values()) * 1_000_000
    seg_names = sorted({segment(e) for e, t in actions if t >= horizon} | {s for s, n in active.items() if n})
    team_names = sorted({label("team", tk["team"]) for tk, t0 in tickets if t0 >= horizon}
                        | {label("team", c) for e, t in actions if t >= horizon for c in [credit(e, t)] if c})
    out: dict[str, list[dict[str, Any]]] = {"advocacy_actions": [], "advocacy_actions_overall": [],
                                            "advocacy_creation": [], "advocacy_creation_overall": []}
    for name, seconds in sorted(windows.items(), key=lambda kv: kv[1]):
        start = now_us - seconds * 1_000_000
        total_actions = 0
        for seg in seg_names:
            n = sum(1 for e, t in actions if t >= start and segment(e) == seg)
            total_actions += n
            out["advocacy_actions"].append(_arow({"segment": seg}, name, n, active.get(seg, 0)))
        out["advocacy_actions_overall"].append(_arow({}, name, total_actions, sum(active.values())))
        total_adv = total_int = 0
        for team in team_names:
            interactions = sum(1 for tk, t0 in tickets if t0 >= start and label("team", tk["team"]) == team)
            # distinct (customer, team) pairs: a customer under a kept name, twice in _other if two folded teams
            pairs = {(e["customer_id"], c) for e, t in actions if t >= start
                     for c in [credit(e, t)] if c is not None and label("team", c) == team}
            total_adv += len(pairs)
            total_int += interactions
            out["advocacy_creation"].append(_crow({"team": team}, name, len(pairs), interactions))
        out["advocacy_creation_overall"].append(_crow({}, name, total_adv, total_int))
    return out


def _arow(label: dict[str, Any], window: str, actions: int, customers: int) -> dict[str, Any]:
    rate = actions / customers if customers else None
    return {**label, "window": window, "actions": actions, "customers": customers, "rate": rate,
            "band": band(actions, customers)}


def _crow(label: dict[str, Any], window: str, advocates: int, interactions: int) -> dict[str, Any]:
    rate = advocates / interactions if interactions else None
    # percent: rate x 100 rounded down to two decimals, from the exact fraction
    percent = None if not interactions else float(Fraction(advocates * 10_000 // interactions, 100))
    return {**label, "window": window, "advocates_created": advocates,
            "support_interactions": interactions, "rate": rate, "percent": percent,
            "band": band(advocates, interactions)}
