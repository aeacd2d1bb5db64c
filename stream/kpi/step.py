"""``step``: a batch of one customer's events added to their record.

``step`` settles duplicates and differing copies (``copy_rank``), keeps the latest registration,
forgets what can no longer count in any window, and attributes actions to teams (contract
section 3). It returns a plain ``Change`` (events added and pruned, registrations, credits
before and after) and knows nothing of the shared totals: ``totals.Tally`` consumes changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from stream.event import Event, is_advocacy
from stream.kpi.attribution import advocates, advocates_of, credit, credit_from, tickets_of
from stream.kpi.cap import cap
from stream.kpi.record import (
    ACTION_KEY_PREFIX,
    FAR,
    HAND_OVER,
    UNKNOWN_SEGMENT,
    Action,
    Change,
    Customer,
    Ticket,
    copy_rank,
    new_record,
    private_copies,
)
from stream.kpi.windows import Rules

__all__ = ["step"]

T = TypeVar("T", Action, Ticket)  # an action or a ticket: (time, name)


def step(old: Customer, events: Sequence[Event], now_ms: int, rules: Rules, outcomes: dict[str, int],
         rejected: list[Event] | None = None) -> Change | None:
    """Add ``events`` to ``old`` as a new record (``old`` stays as it was); ``None`` if nothing changes.

    ``outcomes`` counts each event: ``applied`` (new, or a differing copy that replaces the one
    held: ``copy_rank``), ``duplicate`` (that copy, or a greater one, already held on that
    topic), ``ignored`` (valid but not an advocacy action, or an older registration). The cost
    is that of the events added when the batch only adds events to the record (it does not
    copy the record: ``Customer``) and, when it adds tickets, no held action is later than the
    earliest of them; a ticket older than some held actions costs those actions too
    (``credit_from``; the whole record when they are more than a quarter of it). Pruning, a
    replaced copy, a changed registration or the cap cost the whole record, as a full
    recomputation would.

    Over the cap (``rules.max_events``), see ``cap.cap``: events of this batch it turns away are
    appended to ``rejected`` and counted ``capped`` instead of ``applied``; held ones it pushes
    out are counted ``evicted``.
    """
    held_tickets = old.tickets
    change = Change(old, old, old.registration, old.actions, held_tickets)
    _add_events(change, events, outcomes)
    floor = _prune(old, change, now_ms, rules)
    if rules.max_events and _over(change, rules.max_events):
        private_copies(change)
        floor = cap(change, events, rules, outcomes, rejected)
    if not (change.added_actions or change.added_tickets or change.pruned_actions or change.pruned_tickets) \
            and change.registration == old.registration:
        return None
    # before ``old`` hands its dicts over: its credits, and whether they all stand
    before = advocates_of(old, rules) if (held_tickets or old.advocates) else {}
    stand = _credits_stand(change)
    change.new = new_record(change, floor)
    _credits(change, rules, before, stand)
    return change


def _over(change: Change, cap: int) -> bool:
    """Whether the new record would hold more than ``cap`` actions and tickets."""
    size = len(change.actions) + len(change.tickets)
    if change.private:
        return size > cap
    if size + len(change.added_actions) + len(change.added_tickets) <= cap:
        return False
    size += sum(1 for key in change.added_actions if key not in change.actions)
    return size + sum(1 for key in change.added_tickets if key not in change.tickets) > cap


def _add_events(change: Change, events: Iterable[Event], outcomes: dict[str, int]) -> None:  # noqa: C901 - one pass over a batch, a branch per kind: the hot path
    held_actions, held_tickets = change.actions, change.tickets  # the old record's
    added_actions, added_tickets = change.added_actions, change.added_tickets
    for event in events:
        kind = event.kind
        if kind == "customer":
            record = (event.at_us, event.event_id, event.segment or UNKNOWN_SEGMENT, event.status or "")
            current = change.registration
            if current is not None and record <= current:  # the whole record decides between differing copies
                outcomes["duplicate" if record[:2] == current[:2] else "ignored"] += 1
                continue
            change.registration = record
        elif kind == "ticket":
            ticket = (event.at_us, event.team or "")
            key = event.event_id
            held = added_tickets.get(key)
            if held is None:
                held = held_tickets.get(key)
                if held is not None and copy_rank(ticket) > copy_rank(held):
                    change.pruned_tickets.append(held)  # the stored copy gives way
                    change.replaced = True
            if held is not None and copy_rank(ticket) <= copy_rank(held):
                outcomes["duplicate"] += 1
                continue
            added_tickets[key] = ticket
        else:
            if not is_advocacy(event):
                outcomes["ignored"] += 1
                continue
            key = ACTION_KEY_PREFIX[kind] + event.event_id
            action = (event.at_us, event.segment)
            held_action = added_actions.get(key)
            if held_action is None:
                held_action = held_actions.get(key)
                if held_action is not None and copy_rank(action) > copy_rank(held_action):
                    change.pruned_actions.append(held_action)
                    change.replaced = True
            if held_action is not None and copy_rank(action) <= copy_rank(held_action):
                outcomes["duplicate"] += 1
                continue
            added_actions[key] = action
        outcomes["applied"] += 1


def _prune(old: Customer, change: Change, now_ms: int, rules: Rules) -> tuple[int, int]:
    """Forget events that can no longer count in any window: O(added) unless the oldest kept event
    expires. Returns the new floor (``Customer.oldest``)."""
    if change.replaced:  # the copy given way may have been the oldest (rare: count again)
        private_copies(change)
        oldest_action = min((v[0] for v in change.actions.values()), default=FAR)
        oldest_ticket = min((v[0] for v in change.tickets.values()), default=FAR)
    else:
        oldest_action, oldest_ticket = old.floor or old.oldest()
        for at_us, _ in change.added_actions.values():
            oldest_action = min(oldest_action, at_us)
        for at_us, _ in change.added_tickets.values():
            oldest_ticket = min(oldest_ticket, at_us)
    cut = now_ms * 1000 - rules.action_retention_us
    if oldest_action < cut:
        private_copies(change)
        change.actions, oldest_action = _kept(change.actions, cut, change.pruned_actions)
    cut = now_ms * 1000 - rules.ticket_retention_us
    if oldest_ticket < cut:
        private_copies(change)
        change.tickets, oldest_ticket = _kept(change.tickets, cut, change.pruned_tickets)
    return oldest_action, oldest_ticket


def _kept(held: dict[str, T], cut: int, pruned: list[T]) -> tuple[dict[str, T], int]:
    """The events of ``held`` at or after ``cut``, and the oldest of them; the rest go to ``pruned``."""
    pruned += [v for v in held.values() if v[0] < cut]
    kept = {k: v for k, v in held.items() if v[0] >= cut}
    return kept, min((v[0] for v in kept.values()), default=FAR)


def _credits_stand(change: Change) -> bool:
    """Whether every held action keeps its credit: nothing left the record, and every ticket added
    is later than every held action (a ticket credits only actions at or after it)."""
    if change.pruned_actions or change.pruned_tickets:
        return False
    if not change.added_tickets or not change.actions:
        return True
    if len(change.actions) + len(change.tickets) < HAND_OVER:  # credited again in no time
        return False
    return change.old.newest()[0] < _first(change.added_tickets)


def _first(tickets: dict[str, Ticket]) -> int:
    return min(at_us for at_us, _ in tickets.values())


def _credits(change: Change, rules: Rules, before: dict[str, int], stand: bool) -> None:
    """Credits before and after. When every held action keeps its credit (``stand``), the added
    actions only add credits, each to the team of the latest ticket before it. When tickets were
    added before some held actions (and nothing left), a big record credits again only the actions
    from the earliest added ticket on (``credit_from``); otherwise every action is credited again."""
    new = change.new
    after: dict[str, int] | None
    if not change.tickets:  # new's
        after = {}
    elif stand:
        after = before
        if change.added_actions:
            after = dict(before)
            credit(after, tickets_of(new), change.added_actions.values(), rules.attribution_us)
    else:
        after = None
        if not (change.pruned_actions or change.pruned_tickets) and len(new.actions) >= HAND_OVER:
            after = credit_from(_first(change.added_tickets), before, new, change.added_actions, rules.attribution_us)
        if after is None:
            after = advocates(new, rules)
    new.advocates = after
    change.credits_before, change.credits_after = before, after
