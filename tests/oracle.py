"""An independent, brute-force reading of contract section 3, used as the expected answer.

It shares no code with ``stream.kpi``: it works on the plain event dicts the tests
publish, with exact window edges (tests keep event times away from the edges, where
the service's 1/24-window buckets may legitimately differ).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

ADVOCACY_KINDS = {"testimonial", "case_study", "social"}


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


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


def band(rate: float | None) -> str | None:
    if rate is None:
        return None
    return "high" if rate >= 0.8 else "moderate" if rate >= 0.6 else "low"


def expected_kpis(events: list[tuple[str, dict[str, Any]]], now: float, windows: dict[str, int],
                  attribution: int) -> dict[str, list[dict[str, Any]]]:
    """``events``: (kind, payload) of VALID events, duplicates allowed, any order."""
    seen: set[tuple[str, str]] = set()
    unique: list[tuple[str, dict[str, Any]]] = []
    for kind, e in events:
        if (kind, e["event_id"]) not in seen:
            seen.add((kind, e["event_id"]))
            unique.append((kind, e))
    latest: dict[str, dict[str, Any]] = {}
    for kind, e in unique:
        if kind == "customer":
            cur = latest.get(e["customer_id"])
            if cur is None or (ts(e["occurred_at"]), e["event_id"]) > (ts(cur["occurred_at"]), cur["event_id"]):
                latest[e["customer_id"]] = e
    actions = [(e, ts(e["occurred_at"])) for kind, e in unique if is_action(kind, e)]
    tickets = [(e, ts(e["occurred_at"])) for kind, e in unique if kind == "ticket"]

    def segment(e: dict[str, Any]) -> str:
        if e.get("segment"):
            return str(e["segment"])
        reg = latest.get(e["customer_id"])
        return str(reg["segment"]) if reg else "unknown"

    def credit(e: dict[str, Any], t: float) -> str | None:
        best = None
        for ticket, t0 in tickets:
            if ticket["customer_id"] == e["customer_id"] and t0 <= t <= t0 + attribution:
                key = (t0, ticket["event_id"])
                if best is None or key > best[0]:
                    best = (key, ticket["team"])
        return best[1] if best else None

    active: dict[str, int] = {}
    for reg in latest.values():
        if reg["status"] == "active":
            active[reg["segment"]] = active.get(reg["segment"], 0) + 1
    longest = max(windows.values())
    seg_names = sorted({segment(e) for e, t in actions if t >= now - longest} | {s for s, n in active.items() if n})
    team_names = sorted({tk["team"] for tk, t0 in tickets if t0 >= now - longest}
                        | {c for e, t in actions if t >= now - longest for c in [credit(e, t)] if c})
    out: dict[str, list[dict[str, Any]]] = {"advocacy_actions": [], "advocacy_actions_overall": [],
                                            "advocacy_creation": [], "advocacy_creation_overall": []}
    for name, seconds in sorted(windows.items(), key=lambda kv: kv[1]):
        start = now - seconds
        total_actions = 0
        for seg in seg_names:
            n = sum(1 for e, t in actions if t >= start and segment(e) == seg)
            total_actions += n
            out["advocacy_actions"].append(_arow({"segment": seg}, name, n, active.get(seg, 0)))
        out["advocacy_actions_overall"].append(_arow({}, name, total_actions, sum(active.values())))
        total_adv = total_int = 0
        for team in team_names:
            interactions = sum(1 for tk, t0 in tickets if t0 >= start and tk["team"] == team)
            advocates = len({e["customer_id"] for e, t in actions if t >= start and credit(e, t) == team})
            total_adv += advocates
            total_int += interactions
            out["advocacy_creation"].append(_crow({"team": team}, name, advocates, interactions))
        out["advocacy_creation_overall"].append(_crow({}, name, total_adv, total_int))
    return out


def _arow(label: dict[str, Any], window: str, actions: int, customers: int) -> dict[str, Any]:
    rate = actions / customers if customers else None
    return {**label, "window": window, "actions": actions, "customers": customers, "rate": rate,
            "band": band(rate)}


def _crow(label: dict[str, Any], window: str, advocates: int, interactions: int) -> dict[str, Any]:
    rate = advocates / interactions if interactions else None
    return {**label, "window": window, "advocates_created": advocates,
            "support_interactions": interactions, "rate": rate,
            "percent": None if rate is None else rate * 100, "band": band(rate)}
