"""One customer's record within retention, and ``step``: a batch of their events added to it.

``step`` settles duplicates and differing copies (``copy_rank``), keeps the latest registration,
forgets what can no longer count in any window, and attributes actions to teams (contract
section 3). It returns a plain ``Change`` (events added and pruned, registrations, credits
before and after) and knows nothing of the shared totals: ``totals.Tally`` consumes changes.
tests/unit/test_kpi_change.py checks it against the full recomputation of tests/reference.py.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stream.event import Event, is_advocacy
from stream.kpi.windows import Rules

__all__ = ["ACTION_KEY_PREFIX", "UNKNOWN_SEGMENT", "Change", "Customer", "Registration", "advocates",
           "advocates_of", "copy_rank", "credited_team", "expires_at_ms", "registration_segment", "step",
           "tickets_of"]

UNKNOWN_SEGMENT = "unknown"
ACTION_KEY_PREFIX = {"review": "r:", "referral": "f:"}
_FAR = 1 << 62
_MANY = 32  # tickets above which a record caches them sorted; actions above which ``_credit`` searches integers

Registration = tuple[int, str, str, str]  # at_us, event_id, segment, status
Action = tuple[int, str | None]  # at_us, own segment
Ticket = tuple[int, str]  # at_us, team
Tickets = list[tuple[int, str, str]]  # a customer's tickets sorted: (time, event id, team)


@dataclass(slots=True)
class Customer:
    """Everything the KPIs need of one customer, within retention.

    ``version`` is the store's token for the record it was read as ("" = none stored).
    ``advocates`` caches the attribution of the current events (``advocates_of``).
    """

    version: str = ""
    registration: Registration | None = None
    actions: dict[str, Action] = field(default_factory=dict)  # key -> at_us, seg
    tickets: dict[str, Ticket] = field(default_factory=dict)  # event_id -> at_us, team
    advocates: dict[str, int] | None = field(default=None, compare=False)  # team -> at_us
    floor: tuple[int, int] | None = field(default=None, compare=False)  # cached ``oldest()``
    index: Tickets | None = field(default=None, compare=False)  # cached ``tickets_of``
    # what ``step`` added to the record it was made from, when it only added events (a
    # store may write just that); None when the registration changed or events were pruned
    added: tuple[dict[str, Action], dict[str, Ticket]] | None = field(default=None, compare=False)
    legacy: bool = field(default=False, compare=False)  # read from a record in milliseconds: write it whole

    def is_empty(self) -> bool:
        return self.registration is None and not self.actions and not self.tickets

    def oldest(self) -> tuple[int, int]:
        """Oldest action and ticket times (a far future when there are none), cached."""
        if self.floor is None:
            self.floor = (min((v[0] for v in self.actions.values()), default=_FAR),
                          min((v[0] for v in self.tickets.values()), default=_FAR))
        return self.floor


def copy_rank(value: tuple[int, str | None]) -> tuple[int, str]:
    """How two differing copies of one action or ticket (same topic and event id) are ordered: by
    event time, then segment (actions; none sorts first) or team (tickets). The greatest is kept,
    so the copy kept does not depend on the order the copies arrive in (docs/architecture.md)."""
    return value[0], value[1] or ""


def registration_segment(registration: Registration | None) -> str:
    """The registered segment, else ``unknown`` (an action's own segment, when it has one, comes first)."""
    return registration[2] if registration is not None else UNKNOWN_SEGMENT


def expires_at_ms(customer: Customer, rules: Rules) -> int | None:
    """When the whole record may be dropped (a whole ms after its last event is pruned); ``None``
    while it holds a registration."""
    if customer.registration is not None:
        return None
    last_action = max((at for at, _ in customer.actions.values()), default=0)
    last_ticket = max((at for at, _ in customer.tickets.values()), default=0)
    return max(last_action + rules.action_retention_us, last_ticket + rules.ticket_retention_us) // 1000 + 1


# --- attribution (contract section 3, Customer Advocacy Creation) ------------------------------


def _ordered(tickets: Mapping[str, Ticket]) -> Tickets:
    ordered = [(v[0], k, v[1]) for k, v in tickets.items()]  # a list, not a generator: most hold one or two
    ordered.sort()
    return ordered


def tickets_of(customer: Customer) -> Tickets:
    """The customer's tickets sorted for ``credited_team``; cached when there are many (tickets change
    far less often than actions come: a customer with thousands is not sorted again for each action;
    a few are sorted in no time, and not caching them keeps the records' objects few for the GC)."""
    if customer.index is not None:
        return customer.index
    ordered = _ordered(customer.tickets)
    if len(ordered) > _MANY:
        customer.index = ordered
    return ordered


def credited_team(tickets: Tickets, at_us: int, attribution_us: int, times: list[int] | None = None) -> str | None:
    """Team of the latest ticket with t0 <= t <= t0 + attribution (contract section 3).

    ``tickets`` are sorted by (t0, event id) and the search compares times only, so the last
    ticket at or before ``at_us`` is found (the greatest id among tickets at the same instant)
    whatever characters the ids hold. ``times``, the same tickets' times, makes it a search of plain
    integers (no key function): worth building when one customer's many actions are searched.
    """
    index = (bisect_right(times, at_us) if times is not None else bisect_right(tickets, at_us, key=_time)) - 1
    if index < 0:
        return None
    t0, _, team = tickets[index]
    return team if at_us <= t0 + attribution_us else None


def _time(ticket: tuple[int, str, str]) -> int:
    return ticket[0]


def _credit(credits: dict[str, int], tickets: Tickets, actions: Collection[Action], attribution_us: int) -> None:
    times = [t[0] for t in tickets] if len(actions) > _MANY else None
    for at_us, _ in actions:
        team = credited_team(tickets, at_us, attribution_us, times)
        if team is not None and at_us > credits.get(team, -1):
            credits[team] = at_us


def advocates(customer: Customer, rules: Rules) -> dict[str, int]:
    """Team (its own name) -> latest action time credited to it. Names are folded only where the
    credit is stored (``totals.advocate_entry``)."""
    credits: dict[str, int] = {}
    if customer.tickets:
        _credit(credits, tickets_of(customer), customer.actions.values(), rules.attribution_us)
    return credits


def advocates_of(customer: Customer, rules: Rules) -> dict[str, int]:
    """``advocates``, cached on the customer."""
    if customer.advocates is None:
        customer.advocates = advocates(customer, rules) if customer.tickets else {}
    return customer.advocates


# --- the step -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Change:
    """What ``step`` did to one customer's record: ``new`` is the record after it (``old`` while it
    runs, when ``registration``, ``actions`` and ``tickets`` are the record being built, copied
    from ``old`` on first write)."""

    old: Customer
    new: Customer
    registration: Registration | None
    actions: dict[str, Action]
    tickets: dict[str, Ticket]
    added_actions: dict[str, Action] = field(default_factory=dict)
    added_tickets: dict[str, Ticket] = field(default_factory=dict)
    pruned_actions: list[Action] = field(default_factory=list)
    pruned_tickets: list[Ticket] = field(default_factory=list)
    replaced: bool = False  # a held copy gave way to a greater one (``copy_rank``)
    # ``advocates`` of old and of new: set by ``step`` on every change it returns
    credits_before: dict[str, int] | None = None
    credits_after: dict[str, int] | None = None


def step(old: Customer, events: Sequence[Event], now_ms: int, rules: Rules, outcomes: dict[str, int],
         rejected: list[Event] | None = None) -> Change | None:
    """Add ``events`` to a copy of ``old`` (``old`` is left as it was); ``None`` if nothing changes.

    ``outcomes`` counts each event: ``applied`` (new, or a differing copy that replaces the one
    held: ``copy_rank``), ``duplicate`` (that copy, or a greater one, already held on that
    topic), ``ignored`` (valid but not an advocacy action, or an older registration). The cost
    is that of the events added or pruned, not of every event the customer holds.

    Over the cap (``rules.max_events``), see ``cap.cap``: events of this batch it turns away are
    appended to ``rejected`` and counted ``capped`` instead of ``applied``; held ones it pushes
    out are counted ``evicted``.
    """
    change = Change(old, old, old.registration, old.actions, old.tickets)
    _add_events(old, change, events, outcomes)
    floor = _prune(old, change, now_ms, rules)
    if rules.max_events and len(change.actions) + len(change.tickets) > rules.max_events:
        from stream.kpi.cap import cap  # only over the cap; cap.py builds on this module
        floor = cap(change, events, rules, outcomes, rejected)
    if not (change.added_actions or change.added_tickets or change.pruned_actions or change.pruned_tickets) \
            and change.registration == old.registration:
        return None
    new = Customer(old.version, change.registration, change.actions, change.tickets, floor=floor)
    if change.tickets is old.tickets:
        new.index = old.index
    if change.registration == old.registration and not (change.pruned_actions or change.pruned_tickets):
        new.added = (change.added_actions, change.added_tickets)
    change.new = new
    _credits(change, rules)
    return change


def _add_events(old: Customer, change: Change, events: Iterable[Event], outcomes: dict[str, int]) -> None:
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


def _prune(old: Customer, change: Change, now_ms: int, rules: Rules) -> tuple[int, int]:
    """Forget events that can no longer count in any window: O(1) unless the oldest kept event
    expires. Returns the new floor (``Customer.oldest``)."""
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


def _credits(change: Change, rules: Rules) -> None:
    """Credits before and after: new tickets or pruning can re-credit every action; new actions
    only add credits (each to the team of the latest ticket before it)."""
    old, new = change.old, change.new
    before = advocates_of(old, rules) if (old.tickets or old.advocates) else {}
    if not new.tickets:
        after: dict[str, int] = {}
    elif change.added_tickets or change.pruned_actions or change.pruned_tickets:
        after = advocates(new, rules)
    elif change.added_actions:
        after = dict(before)
        _credit(after, tickets_of(new), change.added_actions.values(), rules.attribution_us)
    else:
        after = before
    new.advocates = after
    change.credits_before, change.credits_after = before, after
