"""Pure KPI math (docs/contract.md sections 1 and 3): windows, per-customer state, attribution, totals."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.config import load_settings
from stream.event import Event, is_advocacy
from stream.kpi.record import Customer
from stream.kpi.totals import Totals, band_of, ratio, report
from stream.kpi.windows import Rules, Window, parse_duration, sum_window
from stream.producer import validate
from tests.board import Board, Caps
from tests.reference import Contribution, Delta, Ledger, apply, contribution, delta, prune

SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000
W1H, W1D, W7D = Window("1h", 3600), Window("1d", 86400), Window("7d", 604800)
RULES = Rules(windows=(W1H, W1D, W7D), attribution_ms=7 * DAY)
NOW = 1_795_442_700_000  # 2026-11-23T14:05:00Z


# --- event builders (times in ms, as the windows; an Event carries microseconds) -------------


def review(eid: str, cid: str = "c1", at: int = NOW - 10 * MINUTE, *, kind: str = "testimonial",
           rating: int | None = None, nps: int | None = None, segment: str | None = None) -> Event:
    return Event("review", eid, cid, at * 1000, segment=segment, review_kind=kind, rating=rating, nps=nps)


def referral(eid: str, cid: str = "c1", at: int = NOW - 10 * MINUTE, *, segment: str | None = None) -> Event:
    return Event("referral", eid, cid, at * 1000, segment=segment)


def ticket(eid: str, team: str, cid: str = "c1", at: int = NOW - 10 * MINUTE) -> Event:
    return Event("ticket", eid, cid, at * 1000, team=team)


def registration(eid: str, segment: str, cid: str = "c1", at: int = NOW - 10 * MINUTE,
                 status: str = "active") -> Event:
    return Event("customer", eid, cid, at * 1000, segment=segment, status=status)


def build(events: Iterable[Event], rules: Rules = RULES, now: int = NOW) -> Customer:
    return apply(Customer(), events, now, rules)[0]


def per_segment(counts: dict[tuple[str, str, str, int], int] | Contribution | Delta) -> dict[tuple[str, str], int]:
    """Action counts summed over buckets: (segment, window) -> n, zeros dropped."""
    raw = counts.counts if isinstance(counts, Contribution | Delta) else counts
    out: Counter[tuple[str, str]] = Counter()
    for (kind, name, window, _bucket), n in raw.items():
        if kind == "a":
            out[(name, window)] += n
    return {k: n for k, n in out.items() if n}


def _json(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def nonzero(mapping: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {k: n for k, n in mapping.items() if n}


# --- bands, ratios, durations --------------------------------------------------------------


@pytest.mark.parametrize(("num", "den", "expected"), [
    (1, 0, None), (0, 0, None), (0, 1, "low"), (5_999, 10_000, "low"), (3, 5, "moderate"), (6, 10, "moderate"),
    (7_999, 10_000, "moderate"), (4, 5, "high"), (8, 10, "high"), (1, 1, "high"), (17, 10, "high"),
    (59_999_999, 100_000_000, "low"), (79_999_999, 100_000_000, "moderate"),
])
def test_band_edges(num: int, den: int, expected: str | None) -> None:
    """High >= 80%, moderate 60%-79.99%, low < 60%, compared exactly; no band without a rate."""
    assert band_of(num, den) == expected


@pytest.mark.parametrize(("num", "den", "expected"), [
    (0, 0, None), (5, 0, None), (0, 4, 0.0), (3, 4, 0.75), (6, 4, 1.5), (1, -1, None),
])
def test_ratio_zero_denominator_is_undefined(num: int, den: int, expected: float | None) -> None:
    """A zero denominator gives None (undefined), never a ZeroDivisionError."""
    assert ratio(num, den) == expected


@pytest.mark.parametrize(("text", "seconds"), [
    ("45s", 45), ("30m", 1_800), ("1h", 3_600), ("1d", 86_400), ("7d", 604_800), ("90d", 7_776_000),
    ("2w", 1_209_600), (" 12h ", 43_200), ("999999s", 999_999),
])
def test_parse_duration_valid(text: str, seconds: int) -> None:
    """Durations with units s/m/h/d/w convert to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "0s", "h", "1", "1y", "-1h", "1.5h", "1h30m", "1H", "soon",
                                  "1000000s", None, "1 d x"])
def test_parse_duration_invalid(text: object) -> None:
    """Empty, zero, negative, fractional, compound or unit-less durations raise ValueError."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "bucket_ms"), [
    (1, 41), (7, 291), (60, 2_500), (3_600, 150_000), (46_800, 1_950_000), (86_400, 3_600_000),
    (604_800, 25_200_000), (2_592_000, 108_000_000), (7_776_000, 324_000_000),
])
def test_bucket_is_at_most_a_24th_of_the_window(seconds: int, bucket_ms: int) -> None:
    """Each window's bucket is <= 1/24 of the window (contract section 3)."""
    window = Window("w", seconds)
    assert window.bucket_ms == bucket_ms
    assert window.bucket_ms * 24 <= seconds * 1000


BUCKET_1H = 150_000


@pytest.mark.parametrize("now_offset", [0, 1, BUCKET_1H // 2, BUCKET_1H - 1])
@pytest.mark.parametrize(("age_ms", "counted"), [
    (0, True),
    (30 * MINUTE, True),
    (HOUR - BUCKET_1H, True),  # well inside
    (HOUR, True),  # exactly one window old
    (HOUR + BUCKET_1H + 1, False),  # older than window + one bucket
    (HOUR + BUCKET_1H + MINUTE, False),
    (2 * HOUR, False),
    (3 * DAY, False),
])
def test_sum_window_edges(now_offset: int, age_ms: int, counted: bool) -> None:
    """Inside the window counts, older than window + one bucket never does, wherever now sits in a bucket."""
    now = 11_970_000 * BUCKET_1H + now_offset
    buckets = Counter({W1H.bucket(now): 10})
    buckets[W1H.bucket(now - age_ms)] += 1
    assert sum_window(buckets, W1H, now) == 10 + int(counted)


def test_sum_window_is_exact_up_to_one_bucket() -> None:
    """One event a minute for 3 h: the 1h total holds the 61 events aged 0..60 min plus at most 2.5 min more."""
    now = NOW + 37 * SECOND
    buckets: Counter[int] = Counter(W1H.bucket(now - m * MINUTE) for m in range(180))
    assert 61 <= sum_window(buckets, W1H, now) <= 63
    assert sum_window(buckets, W1D, now) == 180


# --- advocacy actions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("event", "expected"), [
    (review("e", kind="review", rating=1), False),
    (review("e", kind="review", rating=3), False),
    (review("e", kind="review", rating=4), True),
    (review("e", kind="review", rating=5), True),
    (review("e", kind="survey", nps=0), False),
    (review("e", kind="survey", nps=8), False),
    (review("e", kind="survey", nps=9), True),
    (review("e", kind="survey", nps=10), True),
    (review("e", kind="testimonial"), True),
    (review("e", kind="case_study"), True),
    (review("e", kind="social"), True),
    (review("e", kind="testimonial", rating=1), True),
    (referral("e"), True),
    (ticket("e", "billing"), False),
    (registration("e", "smb"), False),
])
def test_is_advocacy(event: Event, expected: bool) -> None:
    """Which events are advocacy actions: review >= 4, survey nps >= 9, other kinds and referrals always."""
    assert is_advocacy(event) is expected


# --- apply: outcomes, duplicates, registrations -------------------------------------------------


@pytest.mark.parametrize(("events", "expected"), [
    ([review("r1")], (1, 0, 0)),
    ([review("r1"), review("r1")], (1, 1, 0)),
    ([review("r1", kind="review", rating=3)], (0, 0, 1)),
    ([review("r1", kind="survey", nps=8), review("r1", kind="survey", nps=8)], (0, 0, 2)),
    ([referral("f1"), referral("f1"), referral("f2")], (2, 1, 0)),
    ([ticket("t1", "billing"), ticket("t1", "billing")], (1, 1, 0)),
    ([registration("u1", "smb"), registration("u1", "smb")], (1, 1, 0)),
    ([registration("u2", "smb", at=NOW - HOUR), registration("u1", "ent", at=NOW - 2 * HOUR)], (1, 0, 1)),
    ([registration("u1", "ent", at=NOW - 2 * HOUR), registration("u2", "smb", at=NOW - HOUR)], (2, 0, 0)),
    ([review("x"), referral("x"), ticket("x", "billing"), registration("x", "smb")], (4, 0, 0)),
])
def test_apply_outcomes(events: list[Event], expected: tuple[int, int, int]) -> None:
    """Apply reports applied / duplicate / ignored per event; the same id on another topic is no duplicate."""
    _, outcomes = apply(Customer(), events, NOW, RULES)
    assert (outcomes["applied"], outcomes["duplicate"], outcomes["ignored"]) == expected


def test_duplicate_in_a_later_batch() -> None:
    """Re-delivering every event later changes nothing and reports duplicates."""
    events = [review("r1"), referral("f1"), ticket("t1", "billing"), registration("u1", "smb")]
    first = build(events)
    again, outcomes = apply(first, events, NOW, RULES)
    assert outcomes == {"applied": 0, "duplicate": 4, "ignored": 0}
    assert (again.registration, again.actions, again.tickets) == (first.registration, first.actions, first.tickets)


def test_apply_does_not_mutate_its_input() -> None:
    """Apply works on a copy: the customer passed in is unchanged."""
    original = build([review("r1")])
    apply(original, [referral("f1"), ticket("t1", "billing"), registration("u1", "smb")], NOW, RULES)
    assert list(original.actions) == ["r:r1"]
    assert original.tickets == {}
    assert original.registration is None


def test_review_and_referral_with_same_id_both_count() -> None:
    """Review "x" and referral "x" are two actions (dedup is per topic)."""
    assert per_segment(contribution(build([review("x"), referral("x")]), RULES)) == {
        ("unknown", "1h"): 2, ("unknown", "1d"): 2, ("unknown", "7d"): 2}


REGS_LATEST = [registration("u1", "smb", at=NOW - 2 * HOUR), registration("u2", "ent", at=NOW - HOUR),
               registration("u0", "mid", at=NOW - 3 * DAY)]
REGS_TIE = [registration("a", "smb", at=NOW - HOUR), registration("b", "ent", at=NOW - HOUR)]
REGS_TIE_SWAPPED = [registration("b", "smb", at=NOW - HOUR), registration("a", "ent", at=NOW - HOUR)]


@pytest.mark.parametrize(("regs", "segment"), [(REGS_LATEST, "ent"), (REGS_TIE, "ent"), (REGS_TIE_SWAPPED, "smb")])
@pytest.mark.parametrize("one_per_call", [False, True])
def test_registration_latest_wins_in_any_order(regs: list[Event], segment: str, one_per_call: bool) -> None:
    """The registration with the greatest occurred_at wins, a tie goes to the greater event_id, in any order."""
    for order in itertools.permutations(regs):
        customer = Customer()
        batches = [[e] for e in order] if one_per_call else [list(order)]
        for batch in batches:
            customer, _ = apply(customer, batch, NOW, RULES)
        assert customer.registration is not None
        assert customer.registration[2] == segment, order


def test_older_registration_is_ignored() -> None:
    """A registration older than the one held is reported ignored and leaves the state as it was."""
    newer = build([registration("u2", "ent", at=NOW - HOUR)])
    after, outcomes = apply(newer, [registration("u1", "smb", at=NOW - 2 * HOUR)], NOW, RULES)
    assert outcomes == {"applied": 0, "duplicate": 0, "ignored": 1}
    assert after.registration == ((NOW - HOUR) * 1000, "u2", "ent", "active")


# --- pruning ------------------------------------------------------------------------------------

ACTION_RETENTION = 7 * DAY + 2 * 25_200_000  # longest window + two 7d buckets
TICKET_RETENTION = ACTION_RETENTION + 7 * DAY  # + attribution window


def test_retention_constants() -> None:
    """Actions are kept longest window + 2 buckets, tickets that plus the attribution window."""
    assert (RULES.longest_ms, RULES.action_retention_ms, RULES.ticket_retention_ms) == (
        604_800_000, 655_200_000, 1_260_000_000)
    assert (ACTION_RETENTION, TICKET_RETENTION) == (655_200_000, 1_260_000_000)


def test_prune_forgets_only_what_can_no_longer_count() -> None:
    """Prune drops actions/tickets past retention, keeps those at the edge, never drops the registration."""
    customer = build([
        referral("keep", at=NOW - ACTION_RETENTION), referral("drop", at=NOW - ACTION_RETENTION - 1),
        ticket("keep", "billing", at=NOW - TICKET_RETENTION), ticket("drop", "billing", at=NOW - TICKET_RETENTION - 1),
        registration("u1", "smb", at=NOW - 400 * DAY),
    ])
    assert set(customer.actions) == {"f:keep"}
    assert set(customer.tickets) == {"keep"}
    assert customer.registration == ((NOW - 400 * DAY) * 1000, "u1", "smb", "active")


def test_prune_later_in_time() -> None:
    """Pruning at a later now forgets what has aged out since."""
    customer = build([referral("f1", at=NOW - HOUR), ticket("t1", "billing", at=NOW - HOUR)])
    later = NOW - HOUR + ACTION_RETENTION + 1
    prune(customer, later, RULES)
    assert customer.actions == {}
    assert set(customer.tickets) == {"t1"}
    prune(customer, NOW - HOUR + TICKET_RETENTION + 1, RULES)
    assert customer.is_empty()


# --- attribution (contract section 3, Customer Advocacy Creation) -------------------------------

T0 = NOW - 7 * DAY - HOUR  # every action of the table stays within action retention
ATTR = 7 * DAY


@pytest.mark.parametrize(("tickets", "action_times", "expected"), [
    pytest.param([("t1", "billing", T0)], [T0], {"billing": T0}, id="at-t0"),
    pytest.param([("t1", "billing", T0)], [T0 + ATTR], {"billing": T0 + ATTR}, id="at-t0+window"),
    pytest.param([("t1", "billing", T0)], [T0 + ATTR + 1], {}, id="1ms-after-window"),
    pytest.param([("t1", "billing", T0)], [T0 - 1], {}, id="before-ticket"),
    pytest.param([("t1", "billing", T0), ("t2", "shipping", T0 + HOUR)], [T0 + 2 * HOUR],
                 {"shipping": T0 + 2 * HOUR}, id="latest-ticket-wins"),
    pytest.param([("t1", "billing", T0), ("t2", "shipping", T0 + HOUR)], [T0 + 30 * MINUTE],
                 {"billing": T0 + 30 * MINUTE}, id="between-tickets"),
    pytest.param([("t1", "billing", T0), ("t2", "shipping", T0 + DAY)], [T0 + ATTR + 1],
                 {"shipping": T0 + ATTR + 1}, id="older-expired-newer-holds"),
    pytest.param([("t-a", "billing", T0), ("t-b", "shipping", T0)], [T0 + HOUR],
                 {"shipping": T0 + HOUR}, id="tie-greater-id-wins"),
    pytest.param([("t-b", "billing", T0), ("t-a", "shipping", T0)], [T0 + HOUR],
                 {"billing": T0 + HOUR}, id="tie-greater-id-wins-swapped"),
    pytest.param([("t1", "billing", T0), ("t2", "shipping", T0 + 2 * DAY)], [T0 + HOUR, T0 + 2 * DAY + HOUR],
                 {"billing": T0 + HOUR, "shipping": T0 + 2 * DAY + HOUR}, id="two-teams"),
    pytest.param([("t1", "billing", T0)], [T0 + HOUR, T0 + 3 * HOUR, T0 + 2 * HOUR],
                 {"billing": T0 + 3 * HOUR}, id="three-actions-one-advocate"),
    pytest.param([("t1", "billing", T0), ("t2", "billing", T0 + DAY)], [T0 + DAY + HOUR, T0 + HOUR],
                 {"billing": T0 + DAY + HOUR}, id="two-tickets-same-team"),
    pytest.param([], [T0], {}, id="no-ticket"),
])
def test_attribution(tickets: list[tuple[str, str, int]], action_times: list[int], expected: dict[str, int]) -> None:
    """Actions at t0 <= t <= t0 + attribution are credited to the latest such ticket's team, in any order."""
    events = [ticket(eid, team, at=at) for eid, team, at in tickets]
    events += [referral(f"f{i}", at=at) for i, at in enumerate(action_times)]
    for order in (events, events[::-1]):
        assert dict(contribution(build(order), RULES).advocate_of) == {t: at * 1000 for t, at in expected.items()}


def test_non_advocacy_after_ticket_is_not_credited() -> None:
    """A 3-star review or an nps-8 survey after a ticket creates no advocate."""
    customer = build([ticket("t1", "billing", at=T0), review("r1", kind="review", rating=3, at=T0 + HOUR),
                      review("r2", kind="survey", nps=8, at=T0 + HOUR)])
    assert dict(contribution(customer, RULES).advocate_of) == {}


@pytest.mark.parametrize(("events", "window", "advocates", "interactions"), [
    pytest.param([ticket("t1", "billing", at=NOW - DAY // 2)]
                 + [referral(f"f{i}", at=NOW - i * HOUR) for i in range(1, 4)],
                 "1d", {"billing": 1}, {"billing": 1}, id="one-customer-three-actions"),
    pytest.param([ticket("t1", "billing", at=NOW - 3 * DAY), referral("f1", at=NOW - 3 * DAY + HOUR),
                  ticket("t2", "shipping", at=NOW - DAY), referral("f2", at=NOW - DAY + HOUR)],
                 "7d", {"billing": 1, "shipping": 1}, {"billing": 1, "shipping": 1}, id="credited-to-two-teams"),
    pytest.param([ticket("t1", "billing", "c1"), referral("f1", "c1", at=NOW - 5 * MINUTE),
                  ticket("t2", "billing", "c2"), ticket("t3", "billing", "c2", at=NOW - 20 * MINUTE),
                  ticket("t4", "billing", "c3"), referral("f2", "c3", at=NOW - 5 * MINUTE)],
                 "1h", {"billing": 2}, {"billing": 4}, id="distinct-customers"),
    pytest.param([ticket("t1", "billing", "c1"), referral("f1", "c2", at=NOW - 5 * MINUTE)],
                 "1h", {"billing": 0}, {"billing": 1}, id="other-customers-action"),
    pytest.param([ticket("t1", "billing", at=NOW - 3 * DAY), referral("f1", at=NOW - 2 * DAY)],
                 "1d", {"billing": 0}, {"billing": 0}, id="credited-action-outside-window"),
    pytest.param([ticket("t1", "billing", at=NOW - 3 * DAY), referral("f1", at=NOW - 2 * DAY)],
                 "7d", {"billing": 1}, {"billing": 1}, id="credited-action-inside-window"),
    pytest.param([ticket("t1", "billing", at=NOW - 2 * DAY), referral("f1", at=NOW - 30 * MINUTE)],
                 "1h", {"billing": 1}, {"billing": 0}, id="ticket-outside-action-inside"),
])
def test_advocates_and_interactions_in_totals(events: list[Event], window: str, advocates: dict[str, int],
                                              interactions: dict[str, int]) -> None:
    """Advocates are distinct customers per team with a credited action in W; interactions are tickets in W."""
    totals = Ledger(RULES, NOW).feed(events).totals()
    assert {t: n for (t, w), n in totals.advocates.items() if w == window} == advocates
    assert {t: n for (t, w), n in totals.interactions.items() if w == window} == interactions


# --- segments and active customers --------------------------------------------------------------


@pytest.mark.parametrize(("events", "segment"), [
    pytest.param([referral("f1", segment="vip"), registration("u1", "smb")], "vip", id="own-segment-wins"),
    pytest.param([referral("f1", segment="vip")], "vip", id="own-segment-no-registration"),
    pytest.param([referral("f1"), registration("u1", "smb")], "smb", id="registration-segment"),
    pytest.param([referral("f1"), registration("u1", "smb", at=NOW - HOUR),
                  registration("u2", "ent", at=NOW - 2 * HOUR)], "smb", id="latest-registration"),
    pytest.param([referral("f1"), registration("u1", "smb", status="churned")], "smb", id="churned-registration"),
    pytest.param([referral("f1")], "unknown", id="no-registration"),
])
def test_segment_of_an_action(events: list[Event], segment: str) -> None:
    """Own segment, else the latest registration's segment, else "unknown"."""
    assert per_segment(contribution(build(events), RULES)) == {(segment, w): 1 for w in ("1h", "1d", "7d")}


def _each_window(**changes: int) -> dict[tuple[str, str], int]:
    return {(segment, w): n for segment, n in changes.items() for w in ("1h", "1d", "7d")}


def test_unsegmented_action_moves_with_registrations() -> None:
    """An action counted under "unknown" moves to the registration's segment, and again on a newer one."""
    steps: list[tuple[list[Event], dict[tuple[str, str], int], dict[str, int], set[str]]] = [
        ([referral("f1"), review("r1", segment="vip")], _each_window(unknown=1, vip=1), {}, {"unknown", "vip"}),
        ([registration("u1", "smb", at=NOW - 5 * MINUTE)], _each_window(unknown=-1, smb=1), {"smb": 1}, {"smb"}),
        ([registration("u2", "ent", at=NOW - MINUTE)], _each_window(smb=-1, ent=1), {"smb": -1, "ent": 1}, {"ent"}),
        ([registration("u0", "mid", at=NOW - 3 * DAY)], {}, {}, set()),  # older: no change
        ([registration("u3", "ent", at=NOW, status="churned")], {}, {"ent": -1}, set()),
        ([registration("u4", "smb", at=NOW + MINUTE)], _each_window(ent=-1, smb=1), {"smb": 1}, {"smb"}),
    ]
    customer = Customer()
    for events, counts, active, new_segments in steps:
        new, _ = apply(customer, events, NOW, RULES)
        change = delta(contribution(customer, RULES), contribution(new, RULES), NOW, RULES)
        assert per_segment(change) == counts, events
        assert dict(change.active) == active, events
        assert change.new_segments == new_segments, events
        customer = new


@pytest.mark.parametrize(("before", "after", "active"), [
    ([], [registration("u1", "smb")], {"smb": 1}),
    ([], [registration("u1", "smb", status="churned")], {}),
    ([registration("u1", "smb")], [registration("u2", "smb", at=NOW, status="churned")], {"smb": -1}),
    ([registration("u1", "smb", status="churned")], [registration("u2", "smb", at=NOW)], {"smb": 1}),
    ([registration("u1", "smb")], [registration("u2", "ent", at=NOW)], {"smb": -1, "ent": 1}),
    ([registration("u1", "smb")], [registration("u0", "ent", at=NOW - DAY, status="churned")], {}),
])
def test_churned_customer_is_not_active(before: list[Event], after: list[Event], active: dict[str, int]) -> None:
    """Only a customer whose latest status is active counts in the denominator of its segment."""
    old = build(before)
    new, _ = apply(old, after, NOW, RULES)
    assert dict(delta(contribution(old, RULES), contribution(new, RULES), NOW, RULES).active) == active


def test_delta_leaves_out_buckets_no_reader_looks_at() -> None:
    """An action 2 h old changes the 1d and 7d totals but not the 1h buckets."""
    change = delta(contribution(Customer(), RULES), contribution(build([referral("f1", at=NOW - 2 * HOUR)]), RULES),
                   NOW, RULES)
    assert per_segment(change) == {("unknown", "1d"): 1, ("unknown", "7d"): 1}


def test_identical_state_gives_empty_delta() -> None:
    """No change in a customer's events means no change in the totals."""
    customer = build([referral("f1"), ticket("t1", "billing"), registration("u1", "smb")])
    assert delta(contribution(customer, RULES), contribution(customer, RULES), NOW, RULES).is_empty()


# --- report ------------------------------------------------------------------------------------


def test_report_overall_sums_never_averages() -> None:
    """Overall = sum of numerators / sum of denominators (1/4, 2/10), not the mean of the rates."""
    totals = Totals(actions={("ent", "7d"): 1, ("smb", "7d"): 0}, active={"ent": 1, "smb": 3},
                    interactions={("billing", "7d"): 1, ("shipping", "7d"): 9},
                    advocates={("billing", "7d"): 1, ("shipping", "7d"): 1})
    out = report(totals, [W7D])
    assert out["advocacy_actions"] == [
        {"segment": "ent", "window": "7d", "actions": 1, "customers": 1, "rate": 1.0, "band": "high"},
        {"segment": "smb", "window": "7d", "actions": 0, "customers": 3, "rate": 0.0, "band": "low"},
    ]
    assert out["advocacy_actions_overall"] == [
        {"window": "7d", "actions": 1, "customers": 4, "rate": 0.25, "band": "low"}]
    assert out["advocacy_creation_overall"] == [
        {"window": "7d", "advocates_created": 2, "support_interactions": 10, "rate": 0.2, "percent": 20.0,
         "band": "low"}]


def test_report_contract_example() -> None:
    """The rows of the contract's example (123/200 moderate, 12/40 = 30% low)."""
    totals = Totals(actions={("enterprise", "7d"): 123}, active={"enterprise": 200},
                    interactions={("billing", "7d"): 40}, advocates={("billing", "7d"): 12})
    out = report(totals, [W7D])
    assert out["advocacy_actions"] == [{"segment": "enterprise", "window": "7d", "actions": 123, "customers": 200,
                                        "rate": 0.615, "band": "moderate"}]
    assert out["advocacy_creation"] == [{"team": "billing", "window": "7d", "advocates_created": 12,
                                         "support_interactions": 40, "rate": 0.3, "percent": 30.0, "band": "low"}]


def test_report_undefined_rates() -> None:
    """No active customers or no interactions: rate, percent and band are None, nothing raises."""
    # an advocate whose ticket has left the 1h window while the credited action has not
    totals = Totals(actions={("ent", "1h"): 3}, active={}, interactions={("billing", "1h"): 0},
                    advocates={("billing", "1h"): 1})
    out = report(totals, [W1H])
    assert out["advocacy_actions"] == [
        {"segment": "ent", "window": "1h", "actions": 3, "customers": 0, "rate": None, "band": None}]
    assert out["advocacy_actions_overall"][0]["rate"] is None
    assert out["advocacy_creation"] == [{"team": "billing", "window": "1h", "advocates_created": 1,
                                         "support_interactions": 0, "rate": None, "percent": None, "band": None}]
    assert out["advocacy_creation_overall"][0]["percent"] is None


def test_report_drops_names_with_nothing_left() -> None:
    """Segments and teams whose counts are all zero (expired, moved away) get no rows."""
    totals = Totals(actions={("unknown", "1h"): 0, ("smb", "1h"): 0}, active={"smb": 0, "gone": -1},
                    interactions={("billing", "1h"): 0}, advocates={("billing", "1h"): 0})
    out = report(totals, [W1H])
    assert out["advocacy_actions"] == []
    assert out["advocacy_creation"] == []
    assert out["advocacy_actions_overall"] == [
        {"window": "1h", "actions": 0, "customers": 0, "rate": None, "band": None}]


def test_report_has_one_overall_row_per_window_in_order() -> None:
    """Every window gets its overall rows, in the configured order."""
    out = report(Totals({}, {}, {}, {}), RULES.windows)
    assert [r["window"] for r in out["advocacy_actions_overall"]] == ["1h", "1d", "7d"]
    assert [r["window"] for r in out["advocacy_creation_overall"]] == ["1h", "1d", "7d"]
    assert out["advocacy_actions"] == []
    assert out["advocacy_creation"] == []


def test_report_rows_do_not_depend_on_arrival_order() -> None:
    """Action then registration gives the same report (no stale 'unknown' row) as registration then action."""
    action, reg = referral("f1"), registration("u1", "smb", at=NOW - 5 * MINUTE)
    first = Ledger(RULES, NOW).feed([action]).feed([reg]).totals()
    second = Ledger(RULES, NOW).feed([reg]).feed([action]).totals()
    assert report(first, RULES.windows) == report(second, RULES.windows)


# --- order independence (property) ---------------------------------------------------------------

P_ATTR = 10 * MINUTE
P_RULES = Rules(windows=(W1H, W1D, W7D), attribution_ms=P_ATTR)
CIDS = ("c0", "c1", "c1", "c2")  # c1 is the busy one: ties and overlapping tickets
TEAMS = ("billing", "shipping")
SEGMENTS = (None, "ent", "smb")
ACTION_AGE = st.integers(0, 50)  # minutes; everything is inside every window
TICKET_AGE = st.sampled_from((10, 15, 20, 20, 30, 45))  # few values: ties and t0 + attribution boundaries


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    """A few customers' reviews, referrals, tickets and registrations; ids clash across topics."""
    events: list[Event] = []
    for i in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("review", "testimonial", "case_study", "survey", "social")))
        rating = draw(st.integers(1, 5)) if kind == "review" else None
        nps = draw(st.integers(0, 10)) if kind == "survey" else None
        events.append(review(f"e{i}", draw(st.sampled_from(CIDS)), NOW - draw(ACTION_AGE) * MINUTE, kind=kind,
                             rating=rating, nps=nps, segment=draw(st.sampled_from(SEGMENTS))))
    for i in range(draw(st.integers(0, 4))):
        events.append(referral(f"e{i}", draw(st.sampled_from(CIDS)), NOW - draw(ACTION_AGE) * MINUTE,
                               segment=draw(st.sampled_from(SEGMENTS))))
    for i in range(draw(st.integers(0, 6))):
        events.append(ticket(f"e{i}", draw(st.sampled_from(TEAMS)), draw(st.sampled_from(CIDS)),
                             NOW - draw(TICKET_AGE) * MINUTE))
    for i in range(draw(st.integers(0, 5))):
        events.append(registration(f"e{i}", draw(st.sampled_from(("ent", "smb", "mid"))),
                                   draw(st.sampled_from(CIDS)), NOW - draw(st.sampled_from((0, 1, 3000))) * MINUTE,
                                   status=draw(st.sampled_from(("active", "active", "churned")))))
    if events:
        events += [events[i] for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=5))]
    return events


def expected_totals(events: list[Event]) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
    """The contract, evaluated directly on the set of distinct events (every event inside every window)."""
    unique = set(events)
    latest: dict[str, Event] = {}
    for e in unique:
        if e.kind == "customer" and (e.customer_id not in latest
                                     or (e.at_us, e.event_id) > (latest[e.customer_id].at_us,
                                                                 latest[e.customer_id].event_id)):
            latest[e.customer_id] = e

    def advocacy(e: Event) -> bool:
        if e.kind == "referral":
            return True
        if e.kind != "review":
            return False
        return {"review": (e.rating or 0) >= 4, "survey": (e.nps or 0) >= 9}.get(e.review_kind or "", True)

    actions: Counter[str] = Counter()
    advocates: dict[str, set[str]] = defaultdict(set)
    for e in unique:
        if not advocacy(e):
            continue
        reg = latest.get(e.customer_id)
        actions[e.segment or (reg.segment if reg else None) or "unknown"] += 1
        such = [t for t in unique if t.kind == "ticket" and t.customer_id == e.customer_id
                and t.at_us <= e.at_us <= t.at_us + P_ATTR * 1000]
        if such:
            credited = max(such, key=lambda t: (t.at_us, t.event_id))
            advocates[credited.team or ""].add(e.customer_id)
    active = Counter(r.segment or "" for r in latest.values() if r.status == "active")
    interactions = Counter(e.team or "" for e in unique if e.kind == "ticket")
    return dict(actions), dict(active), dict(interactions), {t: len(c) for t, c in advocates.items()}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], list[list[Event]]]:
    events = draw(event_sets())
    order = draw(st.permutations(events))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=6)))
    bounds = [0, *cuts, len(order)]
    return events, [list(order[a:b]) for a, b in itertools.pairwise(bounds)]


def _board_state(board: Board) -> tuple[object, ...]:
    """What the production path has stored: bucket counts, active customers, advocates, records."""
    return ({k: {b: n for b, n in buckets.items() if n} for k, buckets in board.counts.items()
             if any(buckets.values())},
            {s: n for s, n in board.active.items() if n},
            {t: dict(m) for t, m in board.advocates.items() if m},
            {c: (r.registration, r.actions, r.tickets) for c, r in board.customers.items()})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_production_totals_do_not_depend_on_order_or_batching(scenario: tuple[list[Event], list[list[Event]]]) -> None:
    """The production path (``Tally.step``, summed as the store sums it: tests/board.py): any
    permutation and batching of a duplicated event set stores the same state as one batch in
    drawn order, and its totals and report are the contract's."""
    events, batches = scenario
    at_once = Board(P_RULES).feed(events, NOW)
    stepwise = Board(P_RULES)
    for batch in batches:
        stepwise.feed(batch, NOW)
    assert _board_state(stepwise) == _board_state(at_once)
    _check_totals(events, stepwise.totals(NOW))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_reference_totals_do_not_depend_on_order_or_batching(scenario: tuple[list[Event], list[list[Event]]]) -> None:
    """The reference model (tests/reference.py) too: any permutation and batching sums to the same
    totals as the contract's."""
    events, batches = scenario
    at_once = Ledger(P_RULES, NOW).feed(events)
    stepwise = Ledger(P_RULES, NOW)
    for batch in batches:
        stepwise.feed(batch)
    assert stepwise.snapshot() == at_once.snapshot()
    _check_totals(events, stepwise.totals())


def _check_totals(events: list[Event], totals: Totals) -> None:
    actions, active, interactions, advocates = expected_totals(events)
    for window in P_RULES.windows:
        assert {s: n for (s, w), n in nonzero(dict(totals.actions)).items() if w == window.name} == actions
        assert {t: n for (t, w), n in nonzero(dict(totals.interactions)).items() if w == window.name} == interactions
        assert {t: n for (t, w), n in nonzero(dict(totals.advocates)).items() if w == window.name} == advocates
    assert {s: n for s, n in totals.active.items() if n} == active

    out = report(totals, P_RULES.windows)
    for row in out["advocacy_actions_overall"]:
        rows = [r for r in out["advocacy_actions"] if r["window"] == row["window"]]
        assert row["actions"] == sum(r["actions"] for r in rows) == sum(actions.values())
        assert row["customers"] == sum(r["customers"] for r in rows) == sum(active.values())
        assert row["rate"] == (row["actions"] / row["customers"] if row["customers"] else None)
    for row in out["advocacy_creation_overall"]:
        rows = [r for r in out["advocacy_creation"] if r["window"] == row["window"]]
        assert row["advocates_created"] == sum(r["advocates_created"] for r in rows) == sum(advocates.values())
        assert row["support_interactions"] == sum(r["support_interactions"] for r in rows) == sum(
            interactions.values())
        n, d = row["advocates_created"], row["support_interactions"]
        assert row["rate"] == (n / d if d else None)


# --- the numbers at their edges (issue 11) ------------------------------------------------------

W90D = Window("90d", 90 * 86400)
RULES_90 = Rules(windows=(W1H, W1D, W7D, W90D), attribution_ms=7 * DAY)


def _overall_creation(out: dict[str, list[dict[str, object]]], window: str) -> tuple[object, object]:
    [row] = [r for r in out["advocacy_creation_overall"] if r["window"] == window]
    return row["advocates_created"], row["support_interactions"]


def test_folding_two_teams_counts_a_customer_credited_to_both_twice() -> None:
    """Issue 11 case 1: tech ticket -5d, referral -4d, ops ticket -3d, referral -2d: 2 advocates / 2
    interactions in 7d, with or without both teams folded into _other (folding never changes overall)."""
    events = [ticket("t1", "tech", at=NOW - 5 * DAY), referral("f1", at=NOW - 4 * DAY),
              ticket("t2", "ops", at=NOW - 3 * DAY), referral("f2", at=NOW - 2 * DAY)]
    for order in (events, events[::-1]):
        plain = Board(RULES)
        folded = Board(RULES, Caps(teams=0))
        for event in order:  # one event a batch, as separate deliveries
            plain.feed([event], NOW)
            folded.feed([event], NOW)
        assert _overall_creation(plain.report(NOW), "7d") == (2, 2)
        out = folded.report(NOW)
        assert _overall_creation(out, "7d") == (2, 2)
        assert [(r["team"], r["advocates_created"], r["support_interactions"])
                for r in out["advocacy_creation"] if r["window"] == "7d"] == [("_other", 2, 2)]


def test_a_ticket_older_than_the_longest_window_still_credits_in_any_order() -> None:
    """Issue 11 case 3 (the KPI side): ticket -92d, referral -88d: the referral is credited in 90d
    whether the ticket arrives first or last."""
    events = [ticket("t1", "billing", at=NOW - 92 * DAY), referral("f1", at=NOW - 88 * DAY)]
    for order in (events, events[::-1]):
        board = Board(RULES_90)
        for event in order:
            board.feed([event], NOW)
        assert _overall_creation(board.report(NOW), "90d") == (1, 0)


@pytest.mark.parametrize(("advocates", "interactions", "percent", "band_name"), [
    (7, 100, 7.0, "low"),
    (79_996, 100_000, 79.99, "moderate"),
    (7_999, 10_000, 79.99, "moderate"),
    (8, 10, 80.0, "high"),
    (59_999, 100_000, 59.99, "low"),
    (3, 5, 60.0, "moderate"),
    (2, 3, 66.66, "moderate"),
    (29, 100, 29.0, "low"),
    (1, 3, 33.33, "low"),
    (5, 4, 125.0, "high"),
    (0, 9, 0.0, "low"),
])
def test_percent_is_the_rate_times_100_rounded_down_to_two_decimals(advocates: int, interactions: int,
                                                                     percent: float, band_name: str) -> None:
    """Issue 11 case 4: percent = rate x 100 rounded down to two decimals (7/100 is 7.0, 79.996% is
    79.99%), so the shown value never crosses the band line its band is on."""
    totals = Totals(actions={}, active={}, interactions={("billing", "7d"): interactions},
                    advocates={("billing", "7d"): advocates})
    out = report(totals, [W7D])
    for row in (out["advocacy_creation"][0], out["advocacy_creation_overall"][0]):
        assert row["percent"] == percent
        assert row["band"] == band_name
        assert repr(row["percent"]) == repr(percent)  # exactly the two-decimal float, as JSON shows it


def test_registrations_a_tenth_of_a_millisecond_apart_keep_their_order() -> None:
    """Issue 11 case 5: the later of two registrations 0.1 ms apart wins, even against a greater event id."""
    settings = load_settings()
    now = 1_795_442_700.0
    later = validate(settings, "customers", _json(event_id="a", customer_id="c1", segment="later", status="active",
                                                  occurred_at="2026-11-23T14:03:00.0002Z"), now)
    earlier = validate(settings, "customers", _json(event_id="b", customer_id="c1", segment="earlier",
                                                    status="active", occurred_at="2026-11-23T14:03:00.0001Z"), now)
    for order in ([later, earlier], [earlier, later]):
        board = Board(RULES).feed(order, NOW)
        assert board.customers["c1"].registration is not None
        assert board.customers["c1"].registration[2] == "later"


def test_an_action_a_fraction_of_a_millisecond_before_a_ticket_is_not_credited() -> None:
    """Issue 11 case 5: an action 0.8 ms before the ticket (same millisecond) does not follow it."""
    settings = load_settings()
    now = 1_795_442_700.0
    action = validate(settings, "referrals", _json(event_id="f1", customer_id="c1",
                                                   occurred_at="2026-11-23T14:03:00.0001Z"), now)
    closed = validate(settings, "tickets-closed", _json(event_id="t1", customer_id="c1", ticket_id="T1",
                                                        team="billing", occurred_at="2026-11-23T14:03:00.0009Z"), now)
    for order in ([action, closed], [closed, action]):
        board = Board(RULES)
        for event in order:
            board.feed([event], NOW)
        assert _overall_creation(board.report(NOW), "1h") == (0, 1)
        assert contribution(board.customers["c1"], RULES).advocate_of == {}


@pytest.mark.parametrize("ticket_id", ["\U0010ffff", "\U0010ffff\U0010ffff", "\U0010ffffz", "\U0010ffff\x00"])
def test_a_ticket_id_sorting_after_every_character_is_credited_by_every_path(ticket_id: str) -> None:
    """Issue 11 case 6: ticket and action at the same instant credit the ticket's team whatever the ticket
    id, by the reference model, by the incremental step (action first or ticket first) alike."""
    events = [ticket(ticket_id, "billing", at=T0), referral("f1", at=T0)]
    expected = {"billing": T0 * 1000}
    assert dict(contribution(build(events), RULES).advocate_of) == expected
    for order in (events, events[::-1]):
        board = Board(RULES)
        for event in order:
            board.feed([event], NOW)
        assert _overall_creation(board.report(NOW), "7d")[0] == 1, order


def test_a_ticket_resent_with_another_team_counts_the_same_in_any_order() -> None:
    """Issue 11, duplicates: a ticket re-sent with the same event_id and another team ends with the same
    team (the greater one) whichever copy arrives first, in one batch or two."""
    first, second = ticket("t1", "billing"), ticket("t1", "shipping")
    results = set()
    for order in ([first, second], [second, first]):
        for batches in ([order], [[order[0]], [order[1]]]):
            board = Board(RULES)
            for batch in batches:
                board.feed(batch, NOW)
            out = board.report(NOW)
            results.add(tuple((r["team"], r["support_interactions"]) for r in out["advocacy_creation"]
                              if r["window"] == "1h"))
    assert results == {(("shipping", 1),)}
