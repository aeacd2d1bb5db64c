"""Attribution (contract section 3, Customer Advocacy Creation): each action is credited to the team of
the customer's latest ticket at or before it, within the attribution window; a team counts the
customer as an advocate once, at the latest action credited to it."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Mapping

from stream.kpi.record import MANY, Action, Customer, Ticket, Tickets
from stream.kpi.windows import Rules

__all__ = ["SHARE", "WALK", "action_times", "advocates", "advocates_of", "by_time", "credit", "credit_from",
           "credited_team", "tickets_of"]


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
    if len(ordered) > MANY:
        customer.index = ordered
    return ordered


def credited_team(tickets: Tickets, at_us: int, attribution_us: int, times: list[int] | None = None) -> str | None:
    """Team of the latest ticket with t0 <= t <= t0 + attribution (contract section 3).

    ``tickets`` are sorted by (t0, event id) and the search compares times only, so the last
    ticket at or before ``at_us`` is found (the greatest id among tickets at the same instant)
    whatever characters the ids hold. ``times``, the same tickets' times, makes it a search of plain
    integers (no key function): worth building when one customer's many actions are searched.
    """
    index = (bisect_right(times, at_us) if times is not None else bisect_right(tickets, at_us, key=by_time)) - 1
    if index < 0:
        return None
    t0, _, team = tickets[index]
    return team if at_us <= t0 + attribution_us else None


def by_time(ticket: tuple[int, str, str]) -> int:
    return ticket[0]


def credit(credited: dict[str, int], tickets: Tickets, actions: Collection[Action], attribution_us: int) -> None:
    # the times of many tickets are listed only for at least as many actions (a few actions added
    # to a record of thousands of tickets are searched by key: the list would cost more)
    times = [t[0] for t in tickets] if len(actions) > MANY and len(actions) * 8 > len(tickets) else None
    for at_us, _ in actions:
        team = credited_team(tickets, at_us, attribution_us, times)
        if team is not None and at_us > credited.get(team, -1):
            credited[team] = at_us


def advocates(customer: Customer, rules: Rules) -> dict[str, int]:
    """Team (its own name) -> latest action time credited to it. Names are folded only where the
    credit is stored (``totals.advocate_entry``)."""
    credited: dict[str, int] = {}
    if customer.tickets:
        credit(credited, tickets_of(customer), customer.actions.values(), rules.attribution_us)
    return credited


def advocates_of(customer: Customer, rules: Rules) -> dict[str, int]:
    """``advocates``, cached on the customer."""
    if customer.advocates is None:
        customer.advocates = advocates(customer, rules) if customer.tickets else {}
    return customer.advocates


def action_times(customer: Customer) -> list[int]:
    """The times of the customer's actions, sorted; cached."""
    if customer.times is None:
        customer.times = sorted(at_us for at_us, _ in customer.actions.values())
    return customer.times


WALK = 1024  # tickets ``credit_from`` looks back over before it credited every action again instead
SHARE = 4  # ``credit_from`` credited every action again when over 1/SHARE of them are to be credited again


def credit_from(first: int, before: dict[str, int], new: Customer, added: dict[str, Action],
                 attribution_us: int) -> dict[str, int] | None:
    """``advocates(new)`` when the tickets added, all at or after ``first``, are new's only change to
    the tickets, nothing left the record, and ``before`` is the old record's credited. Tickets
    credit only actions at or after them, so an action before ``first`` keeps its credit: a team
    whose latest credit came before it keeps that credit; for a team whose latest came after it,
    the latest of its credited before ``first`` is found walking the tickets back from ``first``
    (each ticket credited the actions from its time to the next ticket's, within the attribution
    window). The actions from ``first`` on, and those added, are credited again. ``None`` when
    that is most of the actions, or the walk gets long: then crediting every action costs as much."""
    times = action_times(new)
    start = bisect_left(times, first)
    if (len(times) - start) * SHARE > len(times):
        return None
    tickets = tickets_of(new)
    after = {team: at_us for team, at_us in before.items() if at_us < first}
    need = {team for team, at_us in before.items() if at_us >= first}
    j = bisect_left(tickets, first, key=by_time) - 1  # the last ticket before ``first``
    stop = max(j - WALK, -1)
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
    credit(after, tickets, later, attribution_us)
    credit(after, tickets, [a for a in added.values() if a[0] < first], attribution_us)
    return after
