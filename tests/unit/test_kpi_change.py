"""The incremental ``Tally.step`` equals the reference model's full ``delta(contribution(old), contribution(new))``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.event import Event
from stream.kpi.attribution import advocates
from stream.kpi.record import Customer
from stream.kpi.totals import Tally, advocate_entry, advocate_score
from stream.kpi.windows import Rules, Window
from tests.reference import advocates as reference_advocates
from tests.reference import apply, contribution, delta

RULES = Rules((Window("1h", 3600), Window("1d", 86400), Window("7d", 604800)), 7 * 86400 * 1000)
NOW = 1_800_000_000_000
HOUR = 3_600_000

# event times in microseconds: any millisecond of the last 9 days, some sharing one millisecond
times = st.builds(lambda ms, us: ms * 1000 + us, st.integers(min_value=NOW - 9 * 24 * HOUR, max_value=NOW),
                  st.sampled_from([0, 0, 1, 500, 999]))
events = st.one_of(
    st.builds(lambda i, t, s: Event("referral", f"f{i}", "c", t, segment=s),
              st.integers(0, 15), times, st.sampled_from([None, None, "smb", "ent"])),
    st.builds(lambda i, t, k: Event("review", f"r{i}", "c", t, review_kind=k, rating=5),
              st.integers(0, 15), times, st.sampled_from(["review", "social"])),
    st.builds(lambda i, t, team: Event("ticket", f"t{i}", "c", t, team=team),
              st.integers(0, 10), times, st.sampled_from(["billing", "tech", "ops"])),
    st.builds(lambda i, t, s, a: Event("customer", f"g{i}", "c", t, segment=s,
                                       status="active" if a else "churned"),
              st.integers(0, 5), times, st.sampled_from(["smb", "ent", "mid"]), st.booleans()),
)


def _fold(_kind: str, name: str) -> str:
    return "_other" if name in ("mid", "tech", "ops") else name  # two teams share _other


@settings(max_examples=600, deadline=None)
@given(st.lists(events, max_size=12), st.lists(events, min_size=1, max_size=6),
       st.integers(min_value=0, max_value=3 * 24 * HOUR), st.booleans(), st.booleans())
def test_incremental_step_equals_the_full_difference(first: list[Event], then: list[Event], later: int,
                                                    folded: bool, cached: bool) -> None:
    """For any state and any batch (also with pruning, folded labels, and with or without the
    attribution cached on the old record), the record, counts, active customers and advocates
    move exactly as the full recomputation says."""
    label = _fold if folded else (lambda _kind, name: name)
    old, _ = apply(Customer(), first, NOW, RULES)
    if cached:  # as a record kept in the store's cache after an earlier step
        old = Tally().step("c", Customer(), first, NOW, RULES, label) or Customer()
    now = NOW + later  # later batches prune old events too
    expected, outcomes = apply(old, then, now, RULES)
    tally = Tally()
    new = tally.step("c", old, then, now, RULES, label)
    full = delta(contribution(old, RULES, label), contribution(expected, RULES, label), now, RULES)
    assert tally.outcomes == outcomes
    if new is None:
        assert full.is_empty()
        assert (expected.registration, expected.actions, expected.tickets) == \
            (old.registration, old.actions, old.tickets)
        return
    assert (new.registration, new.actions, new.tickets) == (expected.registration, expected.actions, expected.tickets)
    assert new.oldest() == Customer(registration=new.registration, actions=new.actions, tickets=new.tickets).oldest()
    assert tally.counts(RULES, now) == dict(full.counts)
    assert {k: n for k, n in tally.active.items() if n} == dict(full.active)
    assert {(team, member): score for team, score, member in tally.advocates_set} == {
        advocate_entry("c", team, label): advocate_score(at) for team, at in full.advocates_set.items()}
    assert set(tally.advocates_removed) == {advocate_entry("c", team, label) for team in full.advocates_removed}
    assert full.new_segments <= tally.segments | contribution(old, RULES, label).segments
    assert full.new_teams <= tally.teams | contribution(old, RULES, label).teams
    assert new.advocates == contribution(expected, RULES, label).advocate_of
    if new.added is not None:  # what a store appends to the stored record gives the new one
        actions, tickets = new.added
        assert new.registration == old.registration
        assert ({**old.actions, **actions}, {**old.tickets, **tickets}) == (new.actions, new.tickets)


def test_tally_sums_customers_of_a_batch() -> None:
    """Two customers' events in the same bucket add up to one count per window."""
    tally = Tally()
    for cid in ("a", "b"):
        tally.step(cid, Customer(), [Event("referral", "f1", cid, (NOW - HOUR // 2) * 1000, segment="smb")], NOW,
                   RULES)
    counts = tally.counts(RULES, NOW)
    assert {(k[0], k[1], k[2]) for k in counts} == {("a", "smb", "1h"), ("a", "smb", "1d"), ("a", "smb", "7d")}
    assert set(counts.values()) == {2}
    assert tally.outcomes == {"applied": 2, "duplicate": 0, "ignored": 0}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.sampled_from([0, 1, 999])), min_size=33, max_size=80),
       st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["billing", "tech", "ops"])), max_size=12))
def test_attribution_of_many_actions_at_once_equals_the_scan(actions: list[tuple[int, int]],
                                                             tickets: list[tuple[int, str]]) -> None:
    """More than 32 actions credited at once (the integer search of ``_credit``) credit the teams the
    reference model's scan does, ties within a millisecond included."""
    record = Customer(actions={f"f:f{i}": ((NOW - m * 60_000) * 1000 + us, None) for i, (m, us) in enumerate(actions)},
                      tickets={f"t{i}": ((NOW - m * 60_000) * 1000, team) for i, (m, team) in enumerate(tickets)})
    assert advocates(record, RULES) == reference_advocates(record, RULES)
