"""One customer's record within retention: the ``Customer`` value, and how a step's new record takes
over the old one's dicts instead of copying them (``new_record``); ``Change``, what a step did.

``stream.kpi.step`` adds a batch's events to a record; ``stream.kpi.attribution`` credits actions
to teams. tests/unit/test_kpi_change.py and test_kpi_huge.py check them against the full
recomputation of tests/reference.py.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.windows import Rules

__all__ = ["ACTION_KEY_PREFIX", "FAR", "HAND_OVER", "UNKNOWN_SEGMENT", "Action", "Change", "Customer", "Registration",
           "Ticket", "Tickets", "copy_rank", "expires_at_ms", "new_record", "private_copies", "registration_segment"]

UNKNOWN_SEGMENT = "unknown"
ACTION_KEY_PREFIX = {"review": "r:", "referral": "f:"}
FAR = 1 << 62
MANY = 32  # tickets above which a record caches them sorted; actions above which ``credit`` searches integers
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
            self.floor = (min((v[0] for v in self.actions.values()), default=FAR),
                          min((v[0] for v in self.tickets.values()), default=FAR))
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


def new_record(change: Change, floor: tuple[int, int]) -> Customer:
    """The record after ``change``: ``old``'s dicts handed over with the events added written in
    when it only added events (O(added)), else the private copies. The sorted tickets are handed
    over too (the added ones inserted) when no ticket left."""
    old = change.old
    new = Customer(old.version, change.registration, floor=floor)
    if not change.private and change.registration == old.registration and not old.shared \
            and len(change.actions) + len(change.tickets) >= HAND_OVER:
        actions, undo_actions = _hand_over(old, "_actions", change.added_actions)
        tickets, undo_tickets = _hand_over(old, "_tickets", change.added_tickets)
        old._actions, old._tickets = _Handed(new, undo_actions), _Handed(new, undo_tickets)  # noqa: SLF001 - this module's record
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
    new.actions, new.tickets = change.actions, change.tickets = actions, tickets
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
