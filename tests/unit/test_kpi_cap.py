"""The per-customer cap (docs/contract.md, "Bounded records"), in the pure step: a record keeps the
``max_events`` actions and tickets that expire last, whatever order and batching the events come in;
the batch's events beyond it are turned away (to be dead-lettered), held ones pushed out leave the totals."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.event import Event
from stream.kpi.record import Customer
from stream.kpi.totals import Tally
from stream.kpi.windows import Rules, Window
from tests.board import Board
from tests.reference import Ledger

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW = 1_795_442_700_000
WINDOWS = (Window("1h", 3600), Window("1d", 86400), Window("7d", 604800))


def rules(cap: int) -> Rules:
    return Rules(WINDOWS, 7 * DAY, cap)


def referral(eid: str, age_ms: int, cid: str = "c") -> Event:
    return Event("referral", eid, cid, (NOW - age_ms) * 1000)


def ticket(eid: str, age_ms: int, team: str = "billing", cid: str = "c") -> Event:
    return Event("ticket", eid, cid, (NOW - age_ms) * 1000, team=team)


def expiry(event: Event, rule: Rules) -> tuple[int, str, str]:
    """The rank the cap keeps the greatest of (the contract's rule, written out again)."""
    if event.kind == "ticket":
        return event.at_us + rule.ticket_retention_us, "t", event.event_id
    return event.at_us + rule.action_retention_us, "a", ("r:" if event.kind == "review" else "f:") + event.event_id


def test_a_batch_over_the_cap_keeps_the_events_that_expire_last_and_turns_the_rest_away() -> None:
    """Cap 3, five referrals in one batch: the three newest are held and counted, the two oldest are
    returned to be dead-lettered and counted ``capped``, not ``applied``."""
    events = [referral(f"f{i}", (i + 1) * MINUTE) for i in range(5)]
    tally = Tally()
    new = tally.step("c", Customer(), events, NOW, rules(3))
    assert new is not None
    assert set(new.actions) == {"f:f0", "f:f1", "f:f2"}
    assert tally.rejected == [events[3], events[4]]
    assert tally.outcomes == {"applied": 3, "duplicate": 0, "ignored": 0, "capped": 2}
    assert tally.largest == 3
    assert sum(len(times) for times in tally.plus.values()) == 3
    assert not tally.minus


def test_a_later_expiring_event_pushes_a_held_one_out_of_the_totals() -> None:
    """Cap 2, two referrals held; a newer one arrives: the oldest held one is evicted (counted once
    less in the totals), nothing of the batch is turned away."""
    rule = rules(2)
    board = Board(rule).feed([referral("old", 3 * HOUR), referral("mid", 2 * HOUR)], NOW)
    board.feed([referral("new", 30 * MINUTE)], NOW)
    assert set(board.customers["c"].actions) == {"f:mid", "f:new"}
    assert board.outcomes["evicted"] == 1
    assert board.outcomes["applied"] == 3
    assert not board.rejected
    totals = board.totals(NOW)
    assert (totals.actions[("unknown", "1d")], totals.actions[("unknown", "1h")]) == (2, 1)


def test_an_event_expiring_before_every_held_one_is_turned_away_and_the_record_is_not_rewritten() -> None:
    """Cap 2, full record: an older referral changes nothing (the step returns no record) and is turned away."""
    rule = rules(2)
    full = Tally().step("c", Customer(), [referral("a", HOUR), referral("b", 2 * HOUR)], NOW, rule)
    assert full is not None
    tally = Tally()
    late = referral("older", 5 * HOUR)
    assert tally.step("c", full, [late], NOW, rule) is None
    assert tally.rejected == [late]
    assert tally.outcomes["capped"] == 1
    assert tally.outcomes["applied"] == 0


def test_tickets_rank_by_their_longer_retention() -> None:
    """Cap 1: a ticket an hour older than a referral still expires later (its retention adds the
    attribution window), so the ticket is kept, whichever comes first."""
    action, closed = referral("f1", HOUR), ticket("t1", 2 * HOUR)
    for order in ([action, closed], [closed, action]):
        board = Board(rules(1))
        for event in order:
            board.feed([event], NOW)
        record = board.customers["c"]
        assert (set(record.actions), set(record.tickets)) == (set(), {"t1"}), order


def test_without_a_cap_nothing_is_turned_away() -> None:
    """max_events 0 (the Rules default): no cap."""
    tally = Tally()
    tally.step("c", Customer(), [referral(f"f{i}", i * MINUTE) for i in range(50)], NOW, rules(0))
    assert tally.rejected == []
    assert tally.outcomes["applied"] == 50
    assert tally.largest == 50


def test_the_turned_away_copy_is_the_one_the_record_would_hold() -> None:
    """Two differing copies of one ticket in a batch over the cap: the one returned is the greater
    (the copy a record keeps), the other is a duplicate."""
    lesser, greater = ticket("t9", 5 * HOUR, team="billing"), ticket("t9", 5 * HOUR, team="shipping")
    tally = Tally()
    tally.step("c", Customer(), [referral("f1", HOUR), lesser, greater], NOW, Rules(WINDOWS, 0, 1))
    assert tally.rejected == [greater]


# --- order independence under the cap (property) -----------------------------------------------

AGES = st.integers(0, 6 * 24 * 60)  # minutes: every event inside the 7d window


@st.composite
def capped_scenarios(draw: st.DrawFn) -> tuple[int, list[Event], list[list[Event]]]:
    cap = draw(st.integers(1, 6))
    events: list[Event] = []
    for i in range(draw(st.integers(0, 12))):
        cid = draw(st.sampled_from(("c0", "c1")))
        age = draw(AGES) * MINUTE
        if draw(st.booleans()):
            events.append(referral(f"e{i}", age, cid))
        else:
            events.append(ticket(f"e{i}", age, draw(st.sampled_from(("billing", "tech"))), cid))
    if events:
        events += [events[i] for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=4))]  # duplicates
    order = draw(st.permutations(events))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=5)))
    batches = [list(order[a:b]) for a, b in itertools.pairwise([0, *cuts, len(order)]) if b > a]
    return cap, events, batches


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capped_scenarios())
def test_under_the_cap_the_totals_are_those_of_the_events_that_expire_last_in_any_order(
        scenario: tuple[int, list[Event], list[list[Event]]]) -> None:
    """Any order and batching stores, per customer, the ``cap`` distinct events that expire last, and
    the totals the reference model gives for exactly those; every other distinct event was either
    turned away (to the dead-letter topic) or evicted: none is lost without a trace."""
    cap, events, batches = scenario
    rule = rules(cap)
    board = Board(rule)
    for batch in batches:
        board.feed(batch, NOW)
    kept: list[Event] = []
    for cid in {e.customer_id for e in events}:
        distinct = {expiry(e, rule): e for e in events if e.customer_id == cid}
        kept += [distinct[rank] for rank in sorted(distinct)[-cap:]]
    reference = Ledger(rules(0), NOW).feed(kept)
    assert {c: (r.actions, r.tickets) for c, r in board.customers.items()} == \
        {c: (r.actions, r.tickets) for c, r in reference.customers.items()}
    assert board.totals(NOW) == reference.totals() or _same_nonzero(board, reference)
    def ids(some: list[Event]) -> set[tuple[str, str, str]]:
        return {(e.customer_id, e.kind, e.event_id) for e in some}

    not_kept, turned_away = ids(events) - ids(kept), ids(board.rejected)
    assert turned_away <= not_kept  # an event held at the end was never dead-lettered
    assert len(not_kept - turned_away) <= board.outcomes["evicted"]  # the others were counted, then evicted


def _same_nonzero(board: Board, reference: Ledger) -> bool:
    """The same totals, names with nothing left aside (a board keeps every name it has seen)."""
    ours, theirs = board.totals(NOW), reference.totals()
    return all({k: n for k, n in getattr(ours, f).items() if n} == {k: n for k, n in getattr(theirs, f).items() if n}
               for f in ("actions", "active", "interactions", "advocates"))
