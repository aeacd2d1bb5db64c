"""One customer's record within retention, and ``step``: a batch of their events added to it.

``step`` settles duplicates and differing copies (``copy_rank``), keeps the latest registration,
forgets what can no longer count in any window, and attributes actions to teams (contract
section 3). It returns a plain ``Change`` (events added and pruned, registrations, credits
before and after) and knows nothing of the shared totals: ``totals.Tally`` consumes changes.
tests/unit/test_kpi_change.py checks it against the full recomputation of tests/reference.py.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.event import Event, is_advocacy
from stream.kpi.windows import Rules

__all__ = ["ACTION_KEY_PREFIX", "UNKNOWN_SEGMENT", "Change", "Customer", "Registration", "advocates",
           "advocates_of", "copy_rank", "credited_team", "expires_at_ms", "registration_segment", "step",
           "tickets_of"]

UNKNOWN_SEGMENT = "unknown"
ACTION_KEY_PREFIX = {"review": "r:", "referral": "f:"}
_FAR = 1 << 62
_MANY = 32  # tickets above which a record caches them sorted; actions above which ``_credit`` searches integers
HAND_OVER = 128  # events from which a record's dicts are handed over rather than copied (``Customer``)

Registration = tuple[int, str, str, str]  # at_us, event_id, segment, status
Action = tuple[int, str | None]  # at_us, own segment
Ticket = tuple[int, str]  # at_us, team
Tickets = list[tuple[int, str, str]]  # a customer's tickets sorted: (time, event id, team)


class Customer:
    """Everything the KPIs need of one customer, within retention.

    ``version`` is the store's token for the record it was read as ("" = none stored).
    ``advocates`` caches the attribution of the current events (``advocates_of``); ``floor``,
    ``ceiling``, ``index`` and ``times`` cache ``oldest()``, ``newest()``, ``tickets_of`` and
    ``action_times``.

    A record is a value: ``step`` never changes the one it is given. It does not copy its
    ``actions`` and ``tickets`` either (that would cost the whole record for each batch):
    when it only adds events, it writes them into the old record's dicts and hands those
    to the new record, and the old one keeps what undoes the writes (``_Handed``). The old
    record, read again (a retried commit steps it again), restores its own dicts then,
    once (a copy). Equality compares the version, registration, actions and tickets.
    """

    __slots__ = ("_actions", "_tickets", "added", "advocates", "ceiling", "floor", "index", "legacy", "registration",
                 "shared", "times", "version")

    def __init__(self, version: str = "", registration: Registration | None = None,
                 actions: dict[str, Action] | None = None, tickets: dict[str, Ticket] | None = None,
                 advocates: dict[str, int] | None = None, floor: tuple[int, int] | None = None,
                 ceiling: tuple[int, int] | None = None, index: Tickets | None = None,
                 added: tuple[dict[str, Action], dict[str, Ticket]] | None = None, legacy: bool = False) -> None:
        self.version = version
        self.registration = registration
        self._actions: dict[str, Action] | _Handed = {} if actions is None else actions  # key -> at_us, seg
        self._tickets: dict[str, Ticket] | _Handed = {} if tickets is None else tickets  # event_id -> at_us, team
        self.advocates = advocates  # team -> at_us
        self.floor = floor
        self.ceiling = ceiling
        self.index = index
        self.times: list[int] | None = None  # cached ``action_times``
        # what ``step`` added to the record it was made from, when it only added events (a
        # store may write just that); None when the registration changed or events were pruned
        self.added = added
        self.legacy = legacy  # read from a record in milliseconds: write it whole
        self.shared = False  # a dict of this record may be another record's too: copied, never handed over

    @property
    def actions(self) -> dict[str, Action]:
        held = self._actions
        return held if type(held) is dict else _restore(self, "_actions")

    @actions.setter
    def actions(self, value: dict[str, Action]) -> None:
        self._actions = value

    @property
    def tickets(self) -> dict[str, Ticket]:
        held = self._tickets
        return held if type(held) is dict else _restore(self, "_tickets")

    @tickets.setter
    def tickets(self, value: dict[str, Ticket]) -> None:
        self._tickets = value

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Customer:
            return NotImplemented
        assert isinstance(other, Customer)
        return (self.version, self.registration, self.actions, self.tickets) == \
            (other.version, other.registration, other.actions, other.tickets)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (f"Customer(version={self.version!r}, registration={self.registration!r}, "
                f"actions={self.actions!r}, tickets={self.tickets!r})")

    def is_empty(self) -> bool:
        return self.registration is None and not self.actions and not self.tickets

    def oldest(self) -> tuple[int, int]:
        """Oldest action and ticket times (a far future when there are none), cached."""
        if self.floor is None:
            self.floor = (min((v[0] for v in self.actions.values()), default=_FAR),
                          min((v[0] for v in self.tickets.values()), default=_FAR))
        return self.floor

    def newest(self) -> tuple[int, int]:
        """Newest action and ticket times (-1 when there are none), cached."""
        if self.ceiling is None:
            self.ceiling = (max((v[0] for v in self.actions.values()), default=-1),
                            max((v[0] for v in self.tickets.values()), default=-1))
        return self.ceiling


_GONE: Any = object()  # in an undo: the key was not there


class _Handed:
    """What a record holds in place of a dict it handed to the record ``step`` made of it: that
    record, and what undoes the writes (key -> the value it had, or ``_GONE``)."""

    __slots__ = ("heir", "undo")

    def __init__(self, heir: Customer, undo: dict[str, Any]) -> None:
        self.heir, self.undo = heir, undo


def _restore(customer: Customer, slot: str) -> dict[str, Any]:
    """``customer``'s own dict again: a copy of the dict's current holder (down the chain of
    records made since), with the writes made since undone, newest first."""
    undos = []
    held = getattr(customer, slot)
    while type(held) is _Handed:
        undos.append(held.undo)
        held = getattr(held.heir, slot)
    restored = dict(held)
    for undo in reversed(undos):
        for key, value in undo.items():
            if value is _GONE:
                del restored[key]
            else:
                restored[key] = value
    setattr(customer, slot, restored)
    return restored


def _hand_over(old: Customer, slot: str, added: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``old``'s dict with ``added`` written in (O(added)), and the undo ``old`` keeps."""
    live = getattr(old, slot)
    assert type(live) is dict
    undo = {key: live.get(key, _GONE) for key in added}
    live.update(added)
    return live, undo


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
    last_action, last_ticket = customer.newest()
    return max(max(last_action, 0) + rules.action_retention_us,
               max(last_ticket, 0) + rules.ticket_retention_us) // 1000 + 1


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
    # the times of many tickets are listed only for at least as many actions (a few actions added
    # to a record of thousands of tickets are searched by key: the list would cost more)
    times = [t[0] for t in tickets] if len(actions) > _MANY and len(actions) * 8 > len(tickets) else None
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
    runs). While it runs, ``actions`` and ``tickets`` are ``old``'s dicts, the events added
    being in ``added_actions`` and ``added_tickets``, until something must be taken out
    (pruning, a copy replaced, the cap): then they are private copies holding both
    (``private_copies``). At the end they are the new record's."""

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
    private: bool = False  # ``actions`` and ``tickets`` are copies, holding the events added
    # ``advocates`` of old and of new: set by ``step`` on every change it returns
    credits_before: dict[str, int] | None = None
    credits_after: dict[str, int] | None = None


def private_copies(change: Change) -> None:
    """Make ``change.actions`` and ``change.tickets`` copies of the old record's holding the events
    added (O(record)): what pruning, a replaced copy and the cap take events out of."""
    if not change.private:
        change.actions = {**change.actions, **change.added_actions}
        change.tickets = {**change.tickets, **change.added_tickets}
        change.private = True


def step(old: Customer, events: Sequence[Event], now_ms: int, rules: Rules, outcomes: dict[str, int],
         rejected: list[Event] | None = None) -> Change | None:
    """Add ``events`` to ``old`` as a new record (``old`` stays as it was); ``None`` if nothing changes.

    ``outcomes`` counts each event: ``applied`` (new, or a differing copy that replaces the one
    held: ``copy_rank``), ``duplicate`` (that copy, or a greater one, already held on that
    topic), ``ignored`` (valid but not an advocacy action, or an older registration). The cost
    is that of the events added when the batch only adds events to the record (it does not
    copy the record: ``Customer``) and, when it adds tickets, no held action is later than the
    earliest of them; a ticket older than some held actions costs those actions too
    (``_credit_from``; the whole record when they are more than a quarter of it). Pruning, a
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
        from stream.kpi.cap import cap  # only over the cap; cap.py builds on this module
        private_copies(change)
        floor = cap(change, events, rules, outcomes, rejected)
    if not (change.added_actions or change.added_tickets or change.pruned_actions or change.pruned_tickets) \
            and change.registration == old.registration:
        return None
    # before ``old`` hands its dicts over: its credits, and whether they all stand
    before = advocates_of(old, rules) if (held_tickets or old.advocates) else {}
    stand = _credits_stand(change)
    change.new = _new_record(change, floor)
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


def _new_record(change: Change, floor: tuple[int, int]) -> Customer:
    """The record after ``change``: ``old``'s dicts handed over with the events added written in
    when it only added events (O(added)), else the private copies. The sorted tickets are handed
    over too (the added ones inserted) when no ticket left."""
    old = change.old
    new = Customer(old.version, change.registration, floor=floor)
    if not change.private and change.registration == old.registration and not old.shared \
            and len(change.actions) + len(change.tickets) >= HAND_OVER:
        actions, undo_actions = _hand_over(old, "_actions", change.added_actions)
        tickets, undo_tickets = _hand_over(old, "_tickets", change.added_tickets)
        old._actions, old._tickets = _Handed(new, undo_actions), _Handed(new, undo_tickets)
        if old.ceiling is not None:
            newest_action, newest_ticket = old.ceiling
            new.ceiling = (max([newest_action, *(at for at, _ in change.added_actions.values())]),
                           max([newest_ticket, *(at for at, _ in change.added_tickets.values())]))
    elif change.private:
        actions, tickets = change.actions, change.tickets
    else:  # a small record, or a changed registration: a copy of the dict that changed, the other shared
        actions = {**change.actions, **change.added_actions} if change.added_actions else change.actions
        tickets = {**change.tickets, **change.added_tickets} if change.added_tickets else change.tickets
        if actions is change.actions or tickets is change.tickets:
            old.shared = new.shared = True
    new._actions, new._tickets = change.actions, change.tickets = actions, tickets
    if old.index is not None and not change.pruned_tickets:  # new.tickets: old's and the added ones
        index, old.index = old.index, None
        for key, (at_us, team) in change.added_tickets.items():
            insort(index, (at_us, key, team))
        new.index = index
    if old.times is not None and not change.pruned_actions:  # likewise the sorted action times
        times, old.times = old.times, None
        for at_us, _ in change.added_actions.values():
            insort(times, at_us)
        new.times = times
    if change.registration == old.registration and not (change.pruned_actions or change.pruned_tickets):
        new.added = (change.added_actions, change.added_tickets)
    return new


def _add_events(change: Change, events: Iterable[Event], outcomes: dict[str, int]) -> None:
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
        private_copies(change)
        change.pruned_actions += [v for v in change.actions.values() if v[0] < cut]
        change.actions = {k: v for k, v in change.actions.items() if v[0] >= cut}
        oldest_action = min((v[0] for v in change.actions.values()), default=_FAR)
    cut = now_ms * 1000 - rules.ticket_retention_us
    if oldest_ticket < cut:
        private_copies(change)
        change.pruned_tickets += [v for v in change.tickets.values() if v[0] < cut]
        change.tickets = {k: v for k, v in change.tickets.items() if v[0] >= cut}
        oldest_ticket = min((v[0] for v in change.tickets.values()), default=_FAR)
    return oldest_action, oldest_ticket


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
    from the earliest added ticket on (``_credit_from``); otherwise every action is credited again."""
    new = change.new
    after: dict[str, int] | None
    if not change.tickets:  # new's
        after = {}
    elif stand:
        after = before
        if change.added_actions:
            after = dict(before)
            _credit(after, tickets_of(new), change.added_actions.values(), rules.attribution_us)
    else:
        after = None
        if not (change.pruned_actions or change.pruned_tickets) and len(new.actions) >= HAND_OVER:
            after = _credit_from(_first(change.added_tickets), before, new, change.added_actions, rules.attribution_us)
        if after is None:
            after = advocates(new, rules)
    new.advocates = after
    change.credits_before, change.credits_after = before, after


def action_times(customer: Customer) -> list[int]:
    """The times of the customer's actions, sorted; cached."""
    if customer.times is None:
        customer.times = sorted(at_us for at_us, _ in customer.actions.values())
    return customer.times


_WALK = 1024  # tickets ``_credit_from`` looks back over before it credits every action again instead
_SHARE = 4  # ``_credit_from`` credits every action again when over 1/_SHARE of them are to be credited again


def _credit_from(first: int, before: dict[str, int], new: Customer, added: dict[str, Action],
                 attribution_us: int) -> dict[str, int] | None:
    """``advocates(new)`` when the tickets added, all at or after ``first``, are new's only change to
    the tickets, nothing left the record, and ``before`` is the old record's credits. Tickets
    credit only actions at or after them, so an action before ``first`` keeps its credit: a team
    whose latest credit came before it keeps that credit; for a team whose latest came after it,
    the latest of its credits before ``first`` is found walking the tickets back from ``first``
    (each ticket credits the actions from its time to the next ticket's, within the attribution
    window). The actions from ``first`` on, and those added, are credited again. ``None`` when
    that is most of the actions, or the walk gets long: then crediting every action costs as much."""
    times = action_times(new)
    start = bisect_left(times, first)
    if (len(times) - start) * _SHARE > len(times):
        return None
    tickets = tickets_of(new)
    after = {team: at_us for team, at_us in before.items() if at_us < first}
    need = {team for team, at_us in before.items() if at_us >= first}
    j = bisect_left(tickets, first, key=_time) - 1  # the last ticket before ``first``
    stop = max(j - _WALK, -1)
    while need and j > stop:
        t0, _, team = tickets[j]
        if team in need:
            # up to the next ticket (there is one: the added ticket at ``first`` at least), within the window
            last = min(t0 + attribution_us, tickets[j + 1][0] - 1)
            k = bisect_right(times, last) - 1
            if k >= 0 and times[k] >= t0:
                after[team] = times[k]
                need.discard(team)
        j -= 1
    if need and j > -1:
        return None
    later = [(at_us, None) for at_us in times[start:]]
    _credit(after, tickets, later, attribution_us)
    _credit(after, tickets, [a for a in added.values() if a[0] < first], attribution_us)
    return after
