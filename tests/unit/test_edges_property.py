r"""Property: at the edges of issue 11, the production path equals the independent oracle.

Generated wire payloads go through the service's own code (``events.parse``, then ``Tally.step``
batch by batch, summed as the store sums them: ``tests/board.py``), in any order and batching,
with and without label caps; ``tests/oracle.py`` (brute force, no code shared) computes the
expected ``/kpis`` from the payloads ``tests/reliability/contract.py`` (independent) calls valid.
The inputs are drawn from the classes of issue 11:

* long strings: free text up to 2,048 characters, names of 128, ids that sort after every
  character (``\U0010ffff...``), odd but legal characters;
* ties within a millisecond: events of a customer around a few instants, microseconds apart or
  at the very same microsecond, written with 6 or 9 fractional digits, in any offset, and a
  leap second (23:59:60 UTC);
* folded labels with multi-team customers: more segments and teams than the caps, customers
  with tickets of several teams and actions after each;
* tickets near the retention edge: 90-97 days old, crediting actions inside the 90d window,
  and a microsecond either side of the too-old limit (97 days);
* copies of one event that differ (another team, segment or time), and plain duplicates.

Event times stay away from the window edges (and their one-bucket margin), where the service's
buckets may legitimately differ from the oracle's exact cut.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.errors import InvalidEvent
from stream.event import Event
from stream.events import parse
from stream.kpi.windows import Rules, Window
from tests.board import Board, Caps
from tests.oracle import expected_kpis
from tests.reliability.contract import VALID, judge

S, MIN, H, DAY = 1_000_000, 60_000_000, 3_600_000_000, 86_400_000_000  # microseconds
WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "90d": 90 * 86400}
ATTRIBUTION = 7 * 86400
RULES = Rules(tuple(Window(n, s) for n, s in WINDOWS.items()), ATTRIBUTION * 1000)
NOWS = [1_795_442_700, 1_483_230_600]  # 2026-11-23T14:05:00Z; 2017-01-01T00:30:00Z, 30 min after a leap second
LEAP_US = 1_483_228_799_999_999  # 2016-12-31T23:59:60Z read as the last microsecond of 23:59:59
# ages (us) well inside or well outside every window, never within a bucket of an edge
AGES = [(MIN, 50 * MIN), (2 * H, 20 * H), (2 * DAY, 6 * DAY), (8 * DAY, 27 * DAY), (32 * DAY, 80 * DAY),
        (86 * DAY, 89 * DAY)]
TICKET_AGES = [*AGES, (94 * DAY, 96 * DAY)]  # older than the longest window: they still credit actions
OLDEST_TICKET = 97 * DAY  # longest window + attribution window: a ticket older is too old
EDGE = [OLDEST_TICKET + d for d in (-1000, -1, 0, 1, 1000)]
OFFSETS = [0, 0, 0, 1, 100, 800, 999, 1000, 1500]  # us apart: ties within a millisecond

CUSTOMERS = ["c1", "c2", "\U0010ffff" * 3, "x" * 128, "c\x00nul"]
SEGMENTS = ["enterprise", "smb", "s" * 128, "Großkunden 🙂", "\U0010ffff\U0010ffff", "a b", "x\u200by", "_other"]
TEAMS = ["billing", "tech", "ops", "t" * 128, "\U0010ffffteam", "support ü", "unknown"]
TEXTS = ["", "g2", "https://reviews.example.com/" + "p" * 260, "ü" * 2048, "\U0010ffff" * 7, "T" * 2048]
EVENT_IDS = st.one_of(st.builds(lambda n: f"e{n}", st.integers(0, 30)),
                      st.builds(lambda n: "\U0010ffff" * n, st.integers(1, 4)),
                      st.builds(lambda n: "\U0010ffff" + f"{n}", st.integers(0, 9)),
                      st.just("é" * 125))  # + "@" and the customer's number: 127 characters
OFFSET_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)),
                timezone(timedelta(hours=23, minutes=59)), timezone(timedelta(hours=1))]


def stamp(draw: st.DrawFn, at_us: int) -> str:
    """``at_us`` as RFC 3339 in a drawn offset and precision (6 or 9 digits, fewer when exact)."""
    if at_us == LEAP_US and draw(st.booleans()):  # the leap second itself, in UTC or at +01:00
        fraction = draw(st.sampled_from(["", ".5", ".999999999", ".000001"]))
        return draw(st.sampled_from([f"2016-12-31T23:59:60{fraction}Z", f"2017-01-01T00:59:60{fraction}+01:00"]))
    zone = draw(st.sampled_from(OFFSET_ZONES))
    local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at_us)).astimezone(zone)
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from("TTt ")) + local.strftime("%H:%M:%S")
    digits = draw(st.sampled_from(["6", "9", "short"]))
    if digits == "short" and local.microsecond % 1000 == 0:
        text += f".{local.microsecond // 1000:03d}" if local.microsecond else ""
    else:
        text += f".{local.microsecond:06d}" + (draw(st.sampled_from(["000", "999", "456"])) if digits == "9" else "")
    if zone is UTC and draw(st.booleans()):
        return text + draw(st.sampled_from("Zz"))
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    return text + f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """(now in seconds, wire payloads by logical kind) of a few customers around a few instants each."""
    now = draw(st.sampled_from(NOWS))
    now_us = now * S
    payloads: list[tuple[str, dict[str, Any]]] = []
    for n, customer in enumerate(draw(st.lists(st.sampled_from(CUSTOMERS), min_size=1, max_size=4, unique=True))):
        def event_id(n: int = n) -> str:  # unique per real-world event (contract section 2): one customer's
            return f"{draw(EVENT_IDS)}@{n}"

        def moment(ages: list[tuple[int, int]]) -> int:
            if now == NOWS[1] and draw(st.integers(0, 3)) == 0:
                return LEAP_US
            low, high = draw(st.sampled_from(ages))
            return now_us - draw(st.integers(low, high))

        actions_at = [moment(AGES) for _ in range(draw(st.integers(1, 3)))]
        for _ in range(draw(st.integers(0, 4))):  # tickets of several teams, some at the retention edge
            at = now_us - draw(st.sampled_from(EDGE)) if draw(st.integers(0, 4)) == 0 else moment(TICKET_AGES)
            if draw(st.booleans()) and actions_at:  # just before or after one of the actions
                at = draw(st.sampled_from(actions_at)) + draw(st.sampled_from([-1000, -800, -1, 0, 0, 1, 1000]))
            payloads.append(("ticket", {"event_id": event_id(), "customer_id": customer,
                                        "occurred_at": stamp(draw, at), "ticket_id": draw(st.sampled_from(TEXTS)),
                                        "team": draw(st.sampled_from(TEAMS)),
                                        "channel": draw(st.sampled_from(TEXTS))}))
        if draw(st.integers(0, 2)) == 0:  # credited to several teams in turn: ticket, action, ticket, action...
            start = moment([(8 * DAY, 27 * DAY), (32 * DAY, 80 * DAY), (86 * DAY, 89 * DAY)])
            for step in range(draw(st.integers(2, 3))):
                at = start + step * 2 * H
                payloads.append(("ticket", {"event_id": event_id(), "customer_id": customer,
                                            "occurred_at": stamp(draw, at), "ticket_id": "T",
                                            "team": draw(st.sampled_from(TEAMS))}))
                payloads.append(("referral", {"event_id": event_id(), "customer_id": customer,
                                              "occurred_at": stamp(draw, at + H)}))
        for base in actions_at:
            for _ in range(draw(st.integers(1, 3))):
                at = base - draw(st.sampled_from(OFFSETS))
                own = {"segment": draw(st.sampled_from(SEGMENTS))} if draw(st.integers(0, 2)) == 0 else {}
                if draw(st.booleans()):
                    payloads.append(("referral", {"event_id": event_id(), "customer_id": customer,
                                                  "occurred_at": stamp(draw, at), **own,
                                                  "referee_id": draw(st.sampled_from(TEXTS))}))
                else:
                    kind = draw(st.sampled_from(["testimonial", "review", "survey", "social"]))
                    extra = {"rating": draw(st.integers(1, 5))} if kind == "review" else \
                        {"nps": draw(st.integers(0, 10))} if kind == "survey" else {}
                    payloads.append(("review", {"event_id": event_id(), "customer_id": customer,
                                                "occurred_at": stamp(draw, at), "kind": kind, **extra, **own,
                                                "source": draw(st.sampled_from(TEXTS))}))
        registered = moment([(40 * DAY, 300 * DAY), *AGES])
        for _ in range(draw(st.integers(0, 3))):  # registrations microseconds apart, or at the same instant
            payloads.append(("customer", {"event_id": event_id(), "customer_id": customer,
                                          "occurred_at": stamp(draw, registered - draw(st.sampled_from(OFFSETS))),
                                          "segment": draw(st.sampled_from(SEGMENTS)),
                                          "status": draw(st.sampled_from(["active", "active", "churned"]))}))
    copies = []
    for kind, payload in draw(st.lists(st.sampled_from(payloads), max_size=4)) if payloads else []:
        copy = dict(payload)
        change = draw(st.sampled_from(["same", "team", "segment", "time", "rating"]))
        if change == "team" and kind == "ticket":
            copy["team"] = draw(st.sampled_from(TEAMS))
        elif change == "segment" and kind != "ticket":
            copy["segment"] = draw(st.sampled_from(SEGMENTS))
        elif change == "time":
            copy["occurred_at"] = stamp(draw, _us(payload["occurred_at"]) + draw(st.sampled_from([1, 1000, -1])))
        elif change == "rating" and payload.get("kind") == "review":
            copy["rating"] = draw(st.integers(1, 5))
        copies.append((kind, copy))
    return now, payloads + copies


def _us(text: str) -> int:
    from tests.oracle import us

    return us(text)


Payloads = list[tuple[str, dict[str, Any]]]


def _valid(now: int, payloads: Payloads) -> tuple[list[Event], Payloads]:
    """The service's Events and, by the independent reading, the valid payloads; both must agree."""
    events, valid = [], []
    for kind, payload in payloads:
        raw = json.dumps(payload, ensure_ascii=len(payload["event_id"]) % 2 == 0).encode()
        limits = {"longest_window_ms": max(WINDOWS.values()) * 1000, "attribution_ms": ATTRIBUTION * 1000,
                  "future_tolerance_ms": 300_000, "max_bytes": 1_000_000}
        verdict = judge(kind, raw, now * 1000, **limits)
        try:
            events.append(parse(kind, raw, now * 1000, **limits))
        except InvalidEvent as exc:
            assert exc.reason in verdict.allowed, (exc.reason, verdict.allowed, raw)
            assert VALID not in verdict.allowed, (exc.reason, verdict.allowed, raw)
            continue
        assert verdict.allowed == {VALID}, (verdict.allowed, raw)
        assert events[-1].at_us == verdict.at_us
        valid.append((kind, payload))
    return events, valid


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[tuple[str, dict[str, Any]]], list[list[int]], Caps]:
    now, payloads = draw(histories())
    order = draw(st.permutations(range(len(payloads))))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=5)))
    bounds = [0, *cuts, len(order)]
    batches = [list(order[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    caps = Caps(segments=draw(st.sampled_from([None, 0, 1, 2])), teams=draw(st.sampled_from([None, 0, 1, 2])))
    return now, payloads, batches, caps


def _overall(out: dict[str, list[dict[str, Any]]]) -> tuple[Any, Any]:
    return out["advocacy_actions_overall"], out["advocacy_creation_overall"]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_the_production_path_equals_the_oracle_at_the_edges(
        scenario: tuple[int, list[tuple[str, dict[str, Any]]], list[list[int]], Caps]) -> None:
    """Any order and batching of edge-case payloads, capped or not, gives the oracle's /kpis lists; caps
    never change an overall row, and a kept name's rows are those it has without caps."""
    now, payloads, batches, caps = scenario
    events, valid = _valid(now, payloads)
    by_payload = {id(p): e for (_, p), e in zip(valid, events, strict=True)}
    board = Board(RULES, caps)
    for batch in batches:
        board.feed([by_payload[id(payloads[i][1])] for i in batch if id(payloads[i][1]) in by_payload], now * 1000)
    got = board.report(now * 1000)
    capped = caps.caps["segment"] is not None or caps.caps["team"] is not None
    kept = caps.admitted if capped else None
    assert got == expected_kpis(valid, now, WINDOWS, ATTRIBUTION, kept)
    plain = expected_kpis(valid, now, WINDOWS, ATTRIBUTION)
    assert _overall(got) == _overall(plain)
    for key, label in (("advocacy_actions", "segment"), ("advocacy_creation", "team")):
        own = [r for r in got[key] if r[label] != "_other"]
        assert own == [r for r in plain[key] if r[label] in {o[label] for o in own}]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(histories(), st.randoms(use_true_random=False))
def test_copies_and_duplicates_count_the_same_in_any_order(history: tuple[int, list[tuple[str, dict[str, Any]]]],
                                                           rng: Any) -> None:
    """Differing copies of one event and plain duplicates end in the same totals whatever the order:
    one batch in drawn order, or one event a batch in another order."""
    now, payloads = history
    events, _ = _valid(now, payloads)
    shuffled = list(events)
    rng.shuffle(shuffled)
    at_once = Board(RULES).feed(events, now * 1000)
    one_by_one = Board(RULES)
    for event in shuffled:
        one_by_one.feed([event], now * 1000)
    assert one_by_one.report(now * 1000) == at_once.report(now * 1000)
    assert {c: (r.registration, r.actions, r.tickets) for c, r in one_by_one.customers.items()} == \
        {c: (r.registration, r.actions, r.tickets) for c, r in at_once.customers.items()}
