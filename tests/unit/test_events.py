"""The wire contract (CONTRACT.md section 2): one message value -> ``Event`` or ``InvalidEvent``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream.errors import InvalidEvent
from stream.events import parse
from stream.kpi import Event

# 2026-11-23T14:03:00Z, computed by hand (date -u -d @1795442580).
T_1403 = 1_795_442_580_000
NOW = T_1403 + 120_000  # 2026-11-23T14:05:00Z
DAY = 86_400_000
LONGEST = 90 * DAY  # default longest window (90d)
TOLERANCE = 300_000  # 5 minutes
MAX_BYTES = 1_000_000

BASE: dict[str, dict[str, Any]] = {
    "review": {"event_id": "r-1", "customer_id": "c-1", "occurred_at": "2026-11-23T14:03:00Z",
               "kind": "testimonial"},
    "referral": {"event_id": "f-1", "customer_id": "c-1", "occurred_at": "2026-11-23T14:03:00Z"},
    "ticket": {"event_id": "t-1", "customer_id": "c-1", "occurred_at": "2026-11-23T14:03:00Z",
               "ticket_id": "T-100", "team": "billing"},
    "customer": {"event_id": "u-1", "customer_id": "c-1", "occurred_at": "2026-11-23T14:03:00Z",
                 "segment": "enterprise", "status": "active"},
}
REQUIRED = {
    "review": ("event_id", "customer_id", "occurred_at", "kind"),
    "referral": ("event_id", "customer_id", "occurred_at"),
    "ticket": ("event_id", "customer_id", "occurred_at", "ticket_id", "team"),
    "customer": ("event_id", "customer_id", "occurred_at", "segment", "status"),
}
DELETE = object()


def _run(kind: str, raw: bytes | None, *, max_bytes: int = MAX_BYTES) -> Event:
    return parse(kind, raw, NOW, longest_window_ms=LONGEST, future_tolerance_ms=TOLERANCE, max_bytes=max_bytes)


def _with(topic: str, /, **changes: Any) -> bytes:
    data = dict(BASE[topic])
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data, ensure_ascii=False).encode()


def _reason(kind: str, raw: bytes | None, **kw: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        _run(kind, raw, **kw)
    return info.value.reason


# --- not JSON / not an object -------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"", b"{", b"not json", b"{'event_id': 'x'}", b'{"event_id": "x",}', b'{"a": 1} trailing',
    b'{"rating": NaN}', b'{"rating": Infinity}', b'{"rating": -Infinity}', b"NaN", None,
])
def test_not_json_is_invalid_json(raw: bytes | None) -> None:
    """Bytes that are not JSON (incl. NaN/Infinity literals and a missing value) -> invalid_json."""
    assert _reason("review", raw) == "invalid_json"


@pytest.mark.parametrize("raw", [
    b"\xff",
    b'{"event_id": "\xff\xfe", "customer_id": "c"}',
    b'{"segment": "caf\xe9"}',  # latin-1, not UTF-8
    '{"segment": "x"}'.encode("utf-16"),
])
def test_bad_utf8_is_invalid_encoding(raw: bytes) -> None:
    """Bytes that are not valid UTF-8 -> invalid_encoding, not invalid_json."""
    assert _reason("review", raw) == "invalid_encoding"


@pytest.mark.parametrize("raw", [b"[]", b'[{"event_id": "x"}]', b'"a string"', b"42", b"1.5", b"true", b"null"])
def test_json_that_is_not_an_object(raw: bytes) -> None:
    """Valid JSON whose top level is not an object -> not_an_object."""
    assert _reason("referral", raw) == "not_an_object"


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"event_id": ' + b"[" * 2_000 + b"]" * 2_000 + b"}",
])
def test_deeply_nested_json_is_a_clean_invalid_event(raw: bytes) -> None:
    """JSON nested past the parser's depth limit raises InvalidEvent(invalid_json), never a crash."""
    assert _reason("review", raw) == "invalid_json"


def test_nested_value_within_depth_limit_is_wrong_type() -> None:
    """A nested array where a string belongs (within the depth limit) -> wrong_type."""
    raw = _with("review", event_id=json.loads("[" * 200 + "]" * 200))
    assert _reason("review", raw) == "wrong_type"


# --- missing fields --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k, fields in REQUIRED.items() for f in fields])
def test_each_missing_required_field(kind: str, field: str) -> None:
    """Dropping any required field of any topic -> missing_field."""
    assert _reason(kind, _with(kind, **{field: DELETE})) == "missing_field"


@pytest.mark.parametrize(("kind", "field"), [(k, f) for k, fields in REQUIRED.items() for f in fields])
def test_null_required_field_is_missing(kind: str, field: str) -> None:
    """A required field given as JSON null -> missing_field."""
    assert _reason(kind, _with(kind, **{field: None})) == "missing_field"


@pytest.mark.parametrize("changes", [
    {"kind": "review"},
    {"kind": "review", "rating": None},
    {"kind": "review", "nps": 10},
    {"kind": "survey"},
    {"kind": "survey", "nps": None},
    {"kind": "survey", "rating": 5},
])
def test_conditional_fields_required(changes: dict[str, Any]) -> None:
    """kind=review needs rating and kind=survey needs nps -> missing_field otherwise."""
    assert _reason("review", _with("review", **changes)) == "missing_field"


def test_null_optional_field_is_treated_as_absent() -> None:
    """An optional field given as null (segment, source) is accepted as absent, not dead-lettered."""
    event = _run("review", _with("review", segment=None, source=None))
    assert event.segment is None


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "changes"), [
    ("review", {"kind": "review", "rating": "5"}),
    ("review", {"kind": "review", "rating": 4.0}),
    ("review", {"kind": "review", "rating": True}),
    ("review", {"kind": "survey", "nps": "9"}),
    ("review", {"kind": "survey", "nps": 9.5}),
    ("review", {"kind": "survey", "nps": False}),
    ("review", {"kind": 1}),
    ("review", {"source": 7}),
    ("review", {"event_id": 12}),
    ("review", {"customer_id": 12}),
    ("review", {"segment": 5}),
    ("review", {"occurred_at": 1_795_442_580}),
    ("referral", {"event_id": ["x"]}),
    ("referral", {"referee_id": 3}),
    ("referral", {"channel": {"x": 1}}),
    ("ticket", {"team": ["billing"]}),
    ("ticket", {"ticket_id": 100}),
    ("ticket", {"agent_id": 1}),
    ("customer", {"status": True}),
    ("customer", {"segment": 5}),
    ("customer", {"customer_id": 1.0}),
])
def test_wrong_types(kind: str, changes: dict[str, Any]) -> None:
    """A field of the wrong JSON type (incl. bool for int, float for int, number for string) -> wrong_type."""
    assert _reason(kind, _with(kind, **changes)) == "wrong_type"


# --- out of range -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "changes"), [
    ("review", {"kind": "review", "rating": 0}),
    ("review", {"kind": "review", "rating": 6}),
    ("review", {"kind": "review", "rating": -1}),
    ("review", {"kind": "survey", "nps": -1}),
    ("review", {"kind": "survey", "nps": 11}),
    ("review", {"kind": "video"}),
    ("review", {"kind": "Review"}),
    ("review", {"kind": ""}),
    ("review", {"event_id": ""}),
    ("review", {"event_id": "x" * 129}),
    ("review", {"customer_id": ""}),
    ("review", {"customer_id": "c" * 129}),
    ("review", {"segment": ""}),
    ("referral", {"event_id": ""}),
    ("ticket", {"team": ""}),
    ("ticket", {"ticket_id": ""}),
    ("customer", {"status": "gone"}),
    ("customer", {"status": "ACTIVE"}),
    ("customer", {"segment": ""}),
])
def test_out_of_range(kind: str, changes: dict[str, Any]) -> None:
    """Values outside the documented range, choices or length -> out_of_range."""
    assert _reason(kind, _with(kind, **changes)) == "out_of_range"


@pytest.mark.parametrize("changes", [
    {"kind": "review", "rating": 1},
    {"kind": "review", "rating": 5},
    {"kind": "survey", "nps": 0},
    {"kind": "survey", "nps": 10},
    {"event_id": "x" * 128},
    {"event_id": "é" * 128},  # 128 characters, 256 bytes
    {"customer_id": "c"},
    {"source": ""},
])
def test_range_boundaries_are_valid(changes: dict[str, Any]) -> None:
    """The inclusive ends of every range (rating 1/5, nps 0/10, ids of 1 and 128 chars) are accepted."""
    event = _run("review", _with("review", **changes))
    assert event.event_id == changes.get("event_id", "r-1")


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "yesterday",
    "",
    "2026-11-23T14:03:00",  # no offset
    "2026-11-23T14:03:00.250",  # no offset
    "2026-11-23",
    "14:03:00Z",
    "20261123T140300Z",
    "2026-11-23T14:03Z",
    "2026-11-23T14:03:00+0100",
    "2026-11-23T14:03:00+01",
    "2026-11-23T14:03:00.Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-23T24:00:00Z",
    "2026-11-23T14:60:00Z",
    "2026-11-23T14:03:00+24:00",
    "1795442580",
    " 2026-11-23T14:03:00Z",
    "2026-11-23T14:03:00Z\n",
    "\uff12\uff10\uff12\uff16-11-23T14:03:00Z",  # full-width digits
])
def test_invalid_timestamps(text: str) -> None:
    """Unparseable timestamps, impossible dates and timestamps without an offset -> invalid_timestamp."""
    assert _reason("review", _with("review", occurred_at=text)) == "invalid_timestamp"


@pytest.mark.parametrize("text", ["2026-11-23T14:03:00+01:60", "2026-11-23T14:03:00-00:99"])
def test_offset_minutes_out_of_range_is_invalid(text: str) -> None:
    """RFC 3339 offsets have minutes 00-59: '+01:60' -> invalid_timestamp."""
    assert _reason("review", _with("review", occurred_at=text)) == "invalid_timestamp"


@pytest.mark.parametrize(("text", "at_ms"), [
    ("2026-11-23T14:03:00Z", T_1403),
    ("2026-11-23T15:03:00+01:00", T_1403),
    ("2026-11-23T09:03:00-05:00", T_1403),
    ("2026-11-23T19:33:00+05:30", T_1403),
    ("2026-11-23T14:03:00+00:00", T_1403),
    ("2026-11-23T14:03:00-00:00", T_1403),
    ("2026-11-23t14:03:00z", T_1403),
    ("2026-11-23 14:03:00Z", T_1403),
    ("2026-11-23T14:03:00.250Z", T_1403 + 250),
    ("2026-11-23T14:03:00.5Z", T_1403 + 500),
    ("2026-11-23T14:03:00.001Z", T_1403 + 1),
    ("2026-11-23T14:03:00.999Z", T_1403 + 999),
    ("2026-11-23T14:03:00.123456Z", T_1403 + 123),
    ("2026-11-23T14:03:00.123456789Z", T_1403 + 123),
    ("2026-11-23T15:03:00.250+01:00", T_1403 + 250),
    ("2026-11-23T14:02:00Z", T_1403 - 60_000),
    ("2026-11-22T14:03:00Z", T_1403 - DAY),
])
def test_timestamp_to_epoch_ms(text: str, at_ms: int) -> None:
    """Offsets and fractional seconds convert to the right epoch milliseconds."""
    assert _run("referral", _with("referral", occurred_at=text)).at_ms == at_ms


@pytest.mark.parametrize("kind", list(BASE))
def test_future_timestamp(kind: str) -> None:
    """More than 5 minutes ahead of now -> future_timestamp on every topic."""
    raw = _with(kind, occurred_at="2026-11-23T14:10:01Z")  # now + 5 min + 1 s
    assert _reason(kind, raw) == "future_timestamp"


@pytest.mark.parametrize("kind", list(BASE))
def test_exactly_five_minutes_ahead_is_accepted(kind: str) -> None:
    """now + 5 minutes exactly is within the tolerance."""
    assert _run(kind, _with(kind, occurred_at="2026-11-23T14:10:00Z")).at_ms == NOW + TOLERANCE


@pytest.mark.parametrize("kind", ["review", "referral", "ticket"])
def test_older_than_longest_window_is_too_old(kind: str) -> None:
    """Reviews, referrals and tickets older than the longest window (90d) -> too_old."""
    raw = _with(kind, occurred_at="2026-08-25T14:04:59Z")  # now - 90 d - 1 s
    assert _reason(kind, raw) == "too_old"


@pytest.mark.parametrize("kind", ["review", "referral", "ticket"])
def test_exactly_longest_window_old_is_accepted(kind: str) -> None:
    """An event exactly one longest window old is still accepted."""
    assert _run(kind, _with(kind, occurred_at="2026-08-25T14:05:00Z")).at_ms == NOW - LONGEST


@pytest.mark.parametrize("text", ["2026-08-25T14:04:59Z", "2020-01-01T00:00:00Z"])
def test_old_customer_records_are_accepted(text: str) -> None:
    """A `customers` record older than the longest window is NOT too_old (registrations last)."""
    event = _run("customer", _with("customer", occurred_at=text))
    assert event.kind == "customer"
    assert event.at_ms < NOW - LONGEST


# --- size -------------------------------------------------------------------------------------


def test_too_large() -> None:
    """A value over max_bytes -> too_large, one byte under the limit is parsed."""
    raw = _with("referral", channel="x")
    limit = len(raw) + 10
    padded = _with("referral", channel="x" * 11)  # len(raw) + 10 bytes
    over = _with("referral", channel="x" * 12)
    assert len(padded) == limit and len(over) == limit + 1
    assert _run("referral", padded, max_bytes=limit).event_id == "f-1"
    assert _reason("referral", over, max_bytes=limit) == "too_large"


def test_too_large_is_checked_before_json() -> None:
    """An oversize value is too_large even when it is not JSON at all."""
    assert _reason("review", b"\xff" * 2_000, max_bytes=1_024) == "too_large"


# --- valid events -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "changes", "expected"), [
    ("review", {"kind": "review", "rating": 4, "segment": "smb", "source": "g2"},
     Event("review", "r-1", "c-1", T_1403, "smb", "review", 4, None, None, None)),
    ("review", {"kind": "survey", "nps": 9},
     Event("review", "r-1", "c-1", T_1403, None, "survey", None, 9, None, None)),
    ("review", {"kind": "case_study", "rating": 2},
     Event("review", "r-1", "c-1", T_1403, None, "case_study", 2, None, None, None)),
    ("review", {"kind": "social"},
     Event("review", "r-1", "c-1", T_1403, None, "social", None, None, None, None)),
    ("referral", {"referee_id": "c-9", "channel": "email", "segment": "enterprise"},
     Event("referral", "f-1", "c-1", T_1403, "enterprise", None, None, None, None, None)),
    ("ticket", {"agent_id": "a-7", "channel": "chat"},
     Event("ticket", "t-1", "c-1", T_1403, None, None, None, None, "billing", None)),
    ("ticket", {"segment": "smb"},
     Event("ticket", "t-1", "c-1", T_1403, "smb", None, None, None, "billing", None)),
    ("customer", {"status": "churned"},
     Event("customer", "u-1", "c-1", T_1403, "enterprise", None, None, None, None, "churned")),
    ("customer", {},
     Event("customer", "u-1", "c-1", T_1403, "enterprise", None, None, None, None, "active")),
    ("referral", {"unknown_extra_field": [1, 2]},
     Event("referral", "f-1", "c-1", T_1403)),
])
def test_valid_events(kind: str, changes: dict[str, Any], expected: Event) -> None:
    """Valid events of every topic become the right Event (fields of other topics stay None)."""
    assert _run(kind, _with(kind, **changes)) == expected


def test_non_ascii_strings_survive() -> None:
    """UTF-8 text in ids and segments is decoded, not mangled."""
    event = _run("customer", _with("customer", customer_id="kund-ø", segment="Großkunden"))
    assert (event.customer_id, event.segment) == ("kund-ø", "Großkunden")
