"""The incremental ``change`` equals the full ``delta(contribution(old), contribution(new))``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.kpi import Customer, Event, Rules, Window, apply, change, contribution, delta

RULES = Rules((Window("1h", 3600), Window("1d", 86400), Window("7d", 604800)), 7 * 86400 * 1000)
NOW = 1_800_000_000_000
HOUR = 3_600_000

times = st.integers(min_value=NOW - 9 * 24 * HOUR, max_value=NOW)
events = st.one_of(
    st.builds(lambda i, t, s: Event("referral", f"f{i}", "c", t, segment=s),
              st.integers(0, 15), times, st.sampled_from([None, None, "smb", "ent"])),
    st.builds(lambda i, t, k: Event("review", f"r{i}", "c", t, review_kind=k, rating=5),
              st.integers(0, 15), times, st.sampled_from(["review", "social"])),
    st.builds(lambda i, t, team: Event("ticket", f"t{i}", "c", t, team=team),
              st.integers(0, 10), times, st.sampled_from(["billing", "tech"])),
    st.builds(lambda i, t, s, a: Event("customer", f"g{i}", "c", t, segment=s,
                                       status="active" if a else "churned"),
              st.integers(0, 5), times, st.sampled_from(["smb", "ent", "mid"]), st.booleans()),
)


def _fold(name_kind: str, name: str) -> str:
    return "_other" if name in ("mid", "tech") else name


@settings(max_examples=400, deadline=None)
@given(st.lists(events, max_size=12), st.lists(events, min_size=1, max_size=6),
       st.integers(min_value=0, max_value=3 * 24 * HOUR), st.booleans())
def test_incremental_change_equals_the_full_difference(first: list[Event], then: list[Event], later: int,
                                                      folded: bool) -> None:
    """For any state and any batch (also with pruning and folded labels), counts, active customers and
    advocates move exactly as the full recomputation says."""
    label = _fold if folded else (lambda kind, name: name)
    old, _ = apply(Customer(), first, NOW, RULES)
    now = NOW + later  # later batches prune old events too
    new, _ = apply(old, then, now, RULES)
    fast = change(old, new, now, RULES, label)
    full = delta(contribution(old, RULES, label), contribution(new, RULES, label), now, RULES)
    assert dict(fast.counts) == dict(full.counts)
    assert dict(fast.active) == dict(full.active)
    assert dict(fast.advocates_set) == dict(full.advocates_set)
    assert fast.advocates_removed == full.advocates_removed
    assert full.new_segments <= fast.new_segments | contribution(old, RULES, label).segments
    assert full.new_teams <= fast.new_teams | contribution(old, RULES, label).teams
