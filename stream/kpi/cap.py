"""The per-customer cap (``ADVOCACY_MAX_EVENTS_PER_CUSTOMER``, docs/contract.md "Bounded records"):
which of a full record's actions and tickets stay, which of the batch's are turned away, which
held ones are evicted. Called by ``step.step`` when a record would hold more than the cap."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from stream.event import Event
from stream.kpi.record import ACTION_KEY_PREFIX, FAR, Change
from stream.kpi.windows import Rules

__all__ = ["cap"]


def cap(change: Change, events: Sequence[Event], rules: Rules, outcomes: dict[str, int],
         rejected: list[Event] | None) -> tuple[int, int]:
    """Keep the ``rules.max_events`` actions and tickets that expire last (event time + their
    retention; ties by kind and key): a function of the set of events, not of their order, so
    the totals stay independent of arrival order. Of the rest, those added by this batch are
    turned away (``rejected``: the pipeline dead-letters them) and those held before leave the
    record and the totals like pruned ones (evicted). ``change`` holds private copies
    (``record.private_copies``). Returns the new floor."""
    action_us, ticket_us = rules.action_retention_us, rules.ticket_retention_us
    ranked = [(at + action_us, "a", key) for key, (at, _) in change.actions.items()]
    ranked += [(at + ticket_us, "t", key) for key, (at, _) in change.tickets.items()]
    out = heapq.nsmallest(len(ranked) - rules.max_events, ranked)
    turned_away: dict[str, tuple[int, str | None]] = {}  # the batch's key -> the copy it held
    evicted = 0
    kinds: dict[str, tuple[dict[str, Any], dict[str, Any], list[Any]]] = {
        "a": (change.actions, change.added_actions, change.pruned_actions),
        "t": (change.tickets, change.added_tickets, change.pruned_tickets)}
    for _, kind, key in out:
        held, added, pruned = kinds[kind]
        value = held.pop(key)
        if added.pop(key, None) is None:
            pruned.append(value)
            evicted += 1
        else:
            turned_away[kind + key] = value
    if turned_away:
        outcomes["applied"] -= len(turned_away)
        outcomes["capped"] = outcomes.get("capped", 0) + len(turned_away)
        if rejected is not None:
            rejected += _events_of(turned_away, events)
    if evicted:
        outcomes["evicted"] = outcomes.get("evicted", 0) + evicted
        change.replaced = True
    return (min((v[0] for v in change.actions.values()), default=FAR),
            min((v[0] for v in change.tickets.values()), default=FAR))


def _events_of(turned_away: dict[str, tuple[int, str | None]], events: Sequence[Event]) -> list[Event]:
    """The batch's event behind each copy turned away (one per key: the copy that was held)."""
    found: list[Event] = []
    value: tuple[int, str | None]
    for event in events:
        if event.kind == "ticket":
            key, value = "t" + event.event_id, (event.at_us, event.team or "")
        elif event.kind in ACTION_KEY_PREFIX:
            key, value = "a" + ACTION_KEY_PREFIX[event.kind] + event.event_id, (event.at_us, event.segment)
        else:
            continue
        if turned_away.get(key) == value:
            del turned_away[key]
            found.append(event)
    return found
