"""Big records (issues 13 and 15): ``step`` hands a record's dicts over to the next record instead of
copying them, and credits only the added actions when every held one keeps its credit. Checked
against the full recomputation of tests/reference.py on records of thousands of events, with
batches in and out of time order, copies of held events, pruning and registration changes; the
records a step was made from stay what they were (a retried commit steps them again)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stream.event import Event
from stream.kpi import attribution, record
from stream.kpi.record import Customer
from stream.kpi.totals import Tally, advocate_entry, advocate_score, same_label
from stream.kpi.windows import Rules, Window
from tests.reference import apply, contribution, delta
from tests.unit import test_kpi_change

RULES = Rules((Window("1h", 3600), Window("1d", 86400), Window("7d", 604800)), 7 * 86400 * 1000)
NOW = 1_800_000_000_000
HOUR = 3_600_000
SPAN = 6 * 24 * HOUR  # the held events' times: the last six days (actions are kept seven)
ACTIONS, TICKETS = 2000, 40


def _seed() -> list[Event]:
    """2,000 referrals and 40 tickets of three teams spread over the last six days, some without segment."""
    events = [Event("referral", f"f{i}", "c", (NOW - SPAN + i * (SPAN // ACTIONS)) * 1000 + i % 3,
                    segment=None if i % 5 else "smb") for i in range(ACTIONS)]
    events += [Event("ticket", f"t{i}", "c", (NOW - SPAN + i * (SPAN // TICKETS) + 7) * 1000,
                     team=("billing", "tech", "ops")[i % 3]) for i in range(TICKETS)]
    return events


SEED = _seed()


def _base() -> Customer:
    """The seed stepped into a record, its attribution cached, as the store's cache holds it."""
    customer = Tally().step("c", Customer(), SEED, NOW, RULES)
    assert customer is not None
    return customer


# events of a batch: new ones after every held one, some behind the newest held ones, late ones
# anywhere in the span, copies of held
# ones (same id: a duplicate, or a differing copy that replaces the held one), registrations
late = st.integers(NOW - SPAN - HOUR, NOW)
recent = st.integers(NOW - 2 * 60_000, NOW)
behind = st.integers(NOW - SPAN // 10, NOW - 2 * 60_000)  # among the newest held actions
when = st.one_of(recent, recent, behind, late).map(lambda ms: ms * 1000)
action_ids = st.one_of(st.integers(ACTIONS, ACTIONS + 30), st.integers(0, ACTIONS - 1))
ticket_ids = st.one_of(st.integers(TICKETS, TICKETS + 10), st.integers(0, TICKETS - 1))
events = st.one_of(
    st.builds(lambda i, t, s: Event("referral", f"f{i}", "c", t, segment=s),
              action_ids, when, st.sampled_from([None, None, "smb", "ent"])),
    st.builds(lambda i, t: Event("review", f"r{i}", "c", t, review_kind="review", rating=5), action_ids, when),
    st.builds(lambda i, t, team: Event("ticket", f"t{i}", "c", t, team=team),
              ticket_ids, when, st.sampled_from(["billing", "tech", "ops"])),
    st.builds(lambda i, t, s: Event("customer", f"g{i}", "c", t, segment=s, status="active"),
              st.integers(0, 3), when, st.sampled_from(["smb", "ent"])),
)


def _check(tally: Tally, old: Customer, new: Customer | None, expected: Customer, now: int,
           outcomes: dict[str, int], rules: Rules = RULES) -> None:
    """The step's record and change to the totals are those of the full recomputation."""
    assert tally.outcomes == outcomes
    full = delta(contribution(old, rules), contribution(expected, rules), now, rules)
    if new is None:
        assert full.is_empty()
        return
    assert (new.registration, new.actions, new.tickets) == (expected.registration, expected.actions, expected.tickets)
    assert new.oldest() == Customer(actions=new.actions, tickets=new.tickets).oldest()
    assert new.newest() == Customer(actions=new.actions, tickets=new.tickets).newest()
    assert new.advocates == contribution(expected, rules).advocate_of
    assert tally.counts(rules, now) == dict(full.counts)
    assert {(team, member): score for team, score, member in tally.advocates_set} == {
        advocate_entry("c", team, same_label): advocate_score(at) for team, at in full.advocates_set.items()}
    assert set(tally.advocates_removed) == {advocate_entry("c", team, same_label) for team in full.advocates_removed}
    if new.index is not None:
        assert new.index == sorted((at, key, team) for key, (at, team) in new.tickets.items())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(events, min_size=1, max_size=6), min_size=1, max_size=4),
       st.lists(st.sampled_from([0, 0, 0, 60_000, 12 * HOUR, 2 * 24 * HOUR]), min_size=4, max_size=4))
def test_a_huge_record_steps_exactly_and_every_earlier_record_stays_as_it_was(
        batches: list[list[Event]], advances: list[int]) -> None:
    """Batch after batch onto a record of 2,040 events, each onto the record the last one made (as
    the store's cache holds it): every step equals the full recomputation; then every record of the
    chain, read again, is the one it was, and stepping one again (a retried commit) gives the same."""
    chain: list[tuple[Customer, Customer]] = []  # each record, and an independent copy of it
    current, now = _base(), NOW
    steps = []
    for batch, advance in zip(batches, advances, strict=False):
        now += advance
        expected, outcomes = apply(current, batch, now, RULES)
        chain.append((current, Customer(current.version, current.registration, dict(current.actions),
                                        dict(current.tickets))))
        tally = Tally()
        new = tally.step("c", current, batch, now, RULES)
        _check(tally, chain[-1][1], new, expected, now, outcomes)
        steps.append((batch, now, new))
        current = new or current
    for (held, copy), (batch, at, first) in zip(chain, steps, strict=True):
        assert held == copy
        again = Tally().step("c", held, batch, at, RULES)
        assert (again is None) == (first is None)
        if again is not None and first is not None:
            assert (again.registration, again.actions, again.tickets) == (first.registration, first.actions,
                                                                          first.tickets)


late_tickets = st.builds(lambda i, t, team: Event("ticket", f"t{i}", "c", t * 1000, team=team),
                        st.integers(TICKETS, TICKETS + 10), behind, st.sampled_from(["billing", "tech", "ops", "new"]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(late_tickets, late_tickets, events), min_size=1, max_size=5),
       st.sampled_from([1024, 2]))
def test_tickets_behind_the_newest_actions_credit_those_again_exactly(batch: list[Event], walk: int) -> None:
    """Tickets a little older than the newest held actions (a tickets topic lagging the actions
    topics): only the actions from the earliest of them on are credited again, and a team whose
    latest credit moves is found its latest earlier credit by walking the tickets back (a short
    walk that gives up credits every action again): the full recomputation's numbers either way."""
    current = _base()
    action_times = attribution.action_times(current)  # cached, as after an earlier late ticket
    assert action_times == sorted(at for at, _ in current.actions.values())
    new = _step_walking(current, batch, walk)
    if new is not None and new.times is not None:
        assert new.times == sorted(at for at, _ in new.actions.values())


def _step_walking(current: Customer, batch: list[Event], walk: int) -> Customer | None:
    """``current`` stepped with ``batch``, the walk back over tickets bounded by ``walk``, checked against
    the full recomputation (``_check``); the new record."""
    expected, outcomes = apply(current, batch, NOW, RULES)
    copy = Customer(current.version, current.registration, dict(current.actions), dict(current.tickets))
    saved, attribution.WALK = attribution.WALK, walk
    try:
        tally = Tally()
        new = tally.step("c", current, batch, NOW, RULES)
    finally:
        attribution.WALK = saved
    _check(tally, copy, new, expected, NOW, outcomes)
    return new


DAY = 24 * HOUR


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["billing", "tech", "ops"]), min_size=12, max_size=12),
       st.lists(st.tuples(st.sampled_from(["ticket", "ticket", "referral"]), st.integers(0, DAY // 5),
                          st.sampled_from(["billing", "tech", "ops", "new"])), min_size=1, max_size=4),
       st.sampled_from([1024, 1]))
def test_late_tickets_move_credits_between_teams_exactly(teams: list[str], late: list[tuple[str, int, str]],
                                                        walk: int) -> None:
    """300 actions over two days and twelve tickets of drawn teams (a team may have one ticket, or
    none), then tickets (and actions) up to five hours behind the newest action: every team's
    latest credit, moved or kept, is the full recomputation's."""
    base_events = [Event("referral", f"f{i}", "c", (NOW - 2 * DAY + i * (2 * DAY // 300)) * 1000) for i in range(300)]
    base_events += [Event("ticket", f"t{i}", "c", (NOW - 2 * DAY + i * 4 * HOUR + 1) * 1000, team=team)
                    for i, team in enumerate(teams)]
    current = Tally().step("c", Customer(), base_events, NOW, RULES)
    assert current is not None
    attribution.action_times(current)
    batch = [Event(kind, f"n{i}", "c", (NOW - 2 * DAY // 300 - ago) * 1000, team=team if kind == "ticket" else None)
             for i, (kind, ago, team) in enumerate(late)]
    _step_walking(current, batch, walk)


MINUTE = 60_000
SHORT = Rules(RULES.windows, 5 * MINUTE)  # an attribution window of five one-minute slots
slot = st.builds(lambda m, us: (NOW - HOUR + m * MINUTE) * 1000 + us, st.integers(0, 40), st.sampled_from([0, 0, 1]))
teams = st.sampled_from(["billing", "tech", "ops"])


def at(m: int) -> int:
    return (NOW - HOUR + m * MINUTE) * 1000


@settings(max_examples=300, deadline=None)
# a team whose credits all move to the late ticket: its latest earlier credit is not the next team's
# action (the next ticket bounds a ticket's credits), nor an action after its window, and a walk
# that gives up before finding it credits every action again
@example([at(3), at(5), at(10)], [(at(2), "billing"), (at(4), "tech"), (at(8), "billing")], [("ticket", at(9), "ops")],
         1024)
@example([at(3), at(12), at(22)], [(at(2), "billing"), (at(20), "billing")], [("ticket", at(21), "ops")], 1024)
@example([at(3), at(5), at(10)], [(at(2), "billing"), (at(4), "tech"), (at(8), "billing")], [("ticket", at(9), "ops")],
         1)
@given(st.lists(slot, min_size=1, max_size=30), st.lists(st.tuples(slot, teams), min_size=1, max_size=8),
       st.lists(st.tuples(st.sampled_from(["ticket", "ticket", "referral"]), slot, teams), min_size=1, max_size=4),
       st.sampled_from([1024, 1]))
def test_crediting_again_from_the_earliest_added_ticket_equals_the_full_recomputation(
        actions: list[int], held: list[tuple[int, str]], batch_spec: list[tuple[str, int, str]], walk: int) -> None:
    """The search behind late tickets (``_credit_from``), on every record however small, on a grid of
    one-minute slots with an attribution window of five (tickets at one instant, gaps longer than the
    window, a team's credits all moving to another): the full recomputation's credits, or a walk that
    gives up and credits every action again."""
    base_events = [Event("referral", f"f{i}", "c", at) for i, at in enumerate(actions)]
    base_events += [Event("ticket", f"t{i}", "c", at, team=team) for i, (at, team) in enumerate(held)]
    saved = record.HAND_OVER, attribution.SHARE, attribution.WALK
    record.HAND_OVER, attribution.SHARE, attribution.WALK = 0, 1, walk
    try:
        current = Tally().step("c", Customer(), base_events, NOW, SHORT)
        assert current is not None
        batch = [Event(kind, f"n{i}", "c", at, team=team if kind == "ticket" else None)
                 for i, (kind, at, team) in enumerate(batch_spec)]
        expected, outcomes = apply(current, batch, NOW, SHORT)
        copy = Customer(current.version, current.registration, dict(current.actions), dict(current.tickets))
        tally = Tally()
        new = tally.step("c", current, batch, NOW, SHORT)
    finally:
        record.HAND_OVER, attribution.SHARE, attribution.WALK = saved
    _check(tally, copy, new, expected, NOW, outcomes, SHORT)


@settings(max_examples=25, deadline=None)
@given(st.lists(events, min_size=1, max_size=8), st.integers(-3, 3))
def test_a_huge_record_over_the_cap_steps_as_a_copied_one(batch: list[Event], room: int) -> None:
    """Near the cap (a few events of room or a few over), a big record's step turns away and evicts
    what the copying step does (the cap always works on copies), with the same totals."""
    base = _base()
    rules = Rules(RULES.windows, RULES.attribution_ms, ACTIONS + TICKETS + room)
    copied = Customer(base.version, base.registration, dict(base.actions), dict(base.tickets))
    tally, reference = Tally(), Tally()
    new = tally.step("c", base, batch, NOW, rules)
    hand_over = record.HAND_OVER
    record.HAND_OVER = 1 << 62
    try:
        expected = reference.step("c", copied, batch, NOW, rules)
    finally:
        record.HAND_OVER = hand_over
    assert (new is None) == (expected is None)
    if new is not None and expected is not None:
        assert (new.registration, new.actions, new.tickets) == (expected.registration, expected.actions,
                                                                expected.tickets)
        assert new.advocates == expected.advocates
    assert tally.outcomes == reference.outcomes
    assert tally.rejected == reference.rejected
    assert tally.counts(RULES, NOW) == reference.counts(RULES, NOW)
    assert sorted(tally.advocates_set) == sorted(reference.advocates_set)
    assert sorted(tally.advocates_removed) == sorted(reference.advocates_removed)


def test_small_records_handed_over_step_exactly_too() -> None:
    """The property of test_kpi_change (any state, any batch, pruning, folded labels) with every
    record handed over, however small."""
    hand_over = record.HAND_OVER
    record.HAND_OVER = 0
    try:
        test_kpi_change.test_incremental_step_equals_the_full_difference()
    finally:
        record.HAND_OVER = hand_over


def test_events_added_in_time_order_are_written_into_the_held_dicts() -> None:
    """The common case costs the events added: the new record holds the old record's dicts (no copy),
    its sorted tickets too; the old record, read again, restores its own, once."""
    base = _base()
    actions = base.actions
    at = (NOW - 1000) * 1000
    new = Tally().step("c", base, [Event("referral", "n1", "c", at), Event("ticket", "n2", "c", at + 1, team="ops"),
                                   Event("review", "n3", "c", at + 2, review_kind="review", rating=5)], NOW, RULES)
    assert new is not None
    assert new.actions is actions
    assert len(actions) == ACTIONS + 2
    assert new.added == ({"f:n1": (at, None), "r:n3": (at + 2, None)}, {"n2": (at + 1, "ops")})
    assert new.advocates is not None
    assert new.advocates["ops"] == at + 2
    assert new.index is not None
    assert new.index[-1] == (at + 1, "n2", "ops")
    assert base.index is None
    restored = base.actions
    assert restored is not actions
    assert len(restored) == ACTIONS
    assert "f:n1" not in restored
    assert base.actions is restored
