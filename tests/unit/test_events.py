"""The wire contract (docs/contract.md section 2): one message value -> ``Event`` or ``InvalidEvent``."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream import contract, timestamps
from stream.config import load_settings
from stream.contract import CONDITIONAL, REVIEW_KINDS, SPECS, STATUSES, Field
from stream.errors import ConfigError, InvalidEvent
from stream.event import Event
from stream.events import parse
from stream.producer import validate
from stream.timestamps import parse_timestamp_us

# 2026-11-23T14:03:00Z, computed by hand (date -u -d @1795442580).
T_1403 = 1_795_442_580_000
T_1403_US = T_1403 * 1000
NOW = T_1403 + 120_000  # 2026-11-23T14:05:00Z
DAY = 86_400_000
LONGEST = 90 * DAY  # default longest window (90d)
ATTRIBUTION = 7 * DAY  # default attribution window: tickets may be 97d old
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
    return parse(kind, raw, NOW, longest_window_ms=LONGEST, attribution_ms=ATTRIBUTION,
                 future_tolerance_ms=TOLERANCE, max_bytes=max_bytes)


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
    ("ticket", {"team": "t" * 129}),
    ("ticket", {"ticket_id": "T" * 2049}),
    ("review", {"segment": "s" * 129}),
    ("review", {"segment": "a\x1fb"}),
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
    {"source": "s" * 2048},
    {"segment": "s"},
    {"segment": "\U0001f600" * 128},
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


@pytest.mark.parametrize(("text", "at_us"), [
    ("2026-11-23T14:03:00Z", T_1403_US),
    ("2026-11-23T15:03:00+01:00", T_1403_US),
    ("2026-11-23T09:03:00-05:00", T_1403_US),
    ("2026-11-23T19:33:00+05:30", T_1403_US),
    ("2026-11-23T14:03:00+00:00", T_1403_US),
    ("2026-11-23T14:03:00-00:00", T_1403_US),
    ("2026-11-23t14:03:00z", T_1403_US),
    ("2026-11-23 14:03:00Z", T_1403_US),
    ("2026-11-23T14:03:00.250Z", T_1403_US + 250_000),
    ("2026-11-23T14:03:00.5Z", T_1403_US + 500_000),
    ("2026-11-23T14:03:00.001Z", T_1403_US + 1_000),
    ("2026-11-23T14:03:00.999Z", T_1403_US + 999_000),
    ("2026-11-23T14:03:00.0001Z", T_1403_US + 100),
    ("2026-11-23T14:03:00.000001Z", T_1403_US + 1),
    ("2026-11-23T14:03:00.123456Z", T_1403_US + 123_456),
    ("2026-11-23T14:03:00.123456789Z", T_1403_US + 123_456),
    ("2026-11-23T15:03:00.250+01:00", T_1403_US + 250_000),
    ("2026-11-23T14:02:00Z", T_1403_US - 60_000_000),
    ("2026-11-22T14:03:00Z", T_1403_US - DAY * 1000),
    ("2016-12-31T23:59:60Z", 1_483_228_799_999_999),  # a leap second: the last microsecond of 23:59:59
    ("2016-12-31T23:59:60.123456789Z", 1_483_228_799_999_999),
    ("2017-01-01T05:29:60+05:30", 1_483_228_799_999_999),
])
def test_timestamp_to_epoch_us(text: str, at_us: int) -> None:
    """Offsets and fractional seconds convert to the right epoch microseconds (further digits cut)."""
    now = max(NOW, at_us // 1000 + DAY)
    event = parse("customer", _with("customer", occurred_at=text), now, longest_window_ms=LONGEST,
                  attribution_ms=ATTRIBUTION, future_tolerance_ms=TOLERANCE, max_bytes=MAX_BYTES)
    assert event.at_us == at_us


@pytest.mark.parametrize("text", ["2026-11-23T14:03:60Z", "2016-12-31T23:58:60Z", "2016-12-31T23:59:60+01:00",
                                  "2016-12-31T22:59:60+01:00", "2016-12-31T23:59:61Z"])
def test_a_second_60_outside_a_utc_leap_second_is_invalid(text: str) -> None:
    """Second 60 is a leap second only at 23:59:60 UTC (in any offset); elsewhere -> invalid_timestamp."""
    assert _reason("customer", _with("customer", occurred_at=text)) == "invalid_timestamp"


@pytest.mark.parametrize("kind", list(BASE))
def test_future_timestamp(kind: str) -> None:
    """More than 5 minutes ahead of now -> future_timestamp on every topic."""
    raw = _with(kind, occurred_at="2026-11-23T14:10:01Z")  # now + 5 min + 1 s
    assert _reason(kind, raw) == "future_timestamp"


@pytest.mark.parametrize("kind", list(BASE))
def test_exactly_five_minutes_ahead_is_accepted(kind: str) -> None:
    """Now + 5 minutes exactly is within the tolerance."""
    assert _run(kind, _with(kind, occurred_at="2026-11-23T14:10:00Z")).at_us == (NOW + TOLERANCE) * 1000


@pytest.mark.parametrize("kind", list(BASE))
def test_a_microsecond_past_the_tolerance_is_future(kind: str) -> None:
    """The future limit is kept to the microsecond: now + 5 min + 1 us -> future_timestamp."""
    assert _reason(kind, _with(kind, occurred_at="2026-11-23T14:10:00.000001Z")) == "future_timestamp"


@pytest.mark.parametrize(("kind", "text"), [
    ("review", "2026-08-25T14:04:59Z"), ("referral", "2026-08-25T14:04:59Z"),  # now - 90 d - 1 s
    ("review", "2026-08-25T14:04:59.999999Z"), ("referral", "2026-08-25T14:04:59.999999Z"),
    ("ticket", "2026-08-18T14:04:59Z"), ("ticket", "2026-08-18T14:04:59.999999Z"),  # now - 97 d - 1 s (1 us)
])
def test_older_than_it_can_matter_is_too_old(kind: str, text: str) -> None:
    """Reviews and referrals older than the longest window (90d), tickets older than the longest window
    plus the attribution window (97d) -> too_old."""
    assert _reason(kind, _with(kind, occurred_at=text)) == "too_old"


@pytest.mark.parametrize(("kind", "text", "age"), [
    ("review", "2026-08-25T14:05:00Z", LONGEST), ("referral", "2026-08-25T14:05:00Z", LONGEST),
    ("ticket", "2026-08-25T14:04:59Z", LONGEST + 1000), ("ticket", "2026-08-18T14:05:00Z", LONGEST + ATTRIBUTION),
])
def test_exactly_as_old_as_it_can_matter_is_accepted(kind: str, text: str, age: int) -> None:
    """An action exactly one longest window old, a ticket up to longest + attribution old, is accepted."""
    assert _run(kind, _with(kind, occurred_at=text)).at_us == (NOW - age) * 1000


@pytest.mark.parametrize("text", ["2026-08-18T14:04:59Z", "2020-01-01T00:00:00Z"])
def test_old_customer_records_are_accepted(text: str) -> None:
    """A `customers` record older than the longest window is NOT too_old (registrations last)."""
    event = _run("customer", _with("customer", occurred_at=text))
    assert event.kind == "customer"
    assert event.at_us < (NOW - LONGEST - ATTRIBUTION) * 1000


# --- size -------------------------------------------------------------------------------------


def test_too_large() -> None:
    """A value over max_bytes -> too_large, one byte under the limit is parsed."""
    raw = _with("referral", channel="x")
    limit = len(raw) + 10
    padded = _with("referral", channel="x" * 11)  # len(raw) + 10 bytes
    over = _with("referral", channel="x" * 12)
    assert len(padded) == limit
    assert len(over) == limit + 1
    assert _run("referral", padded, max_bytes=limit).event_id == "f-1"
    assert _reason("referral", over, max_bytes=limit) == "too_large"


def test_too_large_is_checked_before_json() -> None:
    """An oversize value is too_large even when it is not JSON at all."""
    assert _reason("review", b"\xff" * 2_000, max_bytes=1_024) == "too_large"


# --- valid events -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "changes", "expected"), [
    ("review", {"kind": "review", "rating": 4, "segment": "smb", "source": "g2"},
     Event("review", "r-1", "c-1", T_1403_US, "smb", "review", 4, None, None, None)),
    ("review", {"kind": "survey", "nps": 9},
     Event("review", "r-1", "c-1", T_1403_US, None, "survey", None, 9, None, None)),
    ("review", {"kind": "case_study", "rating": 2},
     Event("review", "r-1", "c-1", T_1403_US, None, "case_study", 2, None, None, None)),
    ("review", {"kind": "social"},
     Event("review", "r-1", "c-1", T_1403_US, None, "social", None, None, None, None)),
    ("referral", {"referee_id": "c-9", "channel": "email", "segment": "enterprise"},
     Event("referral", "f-1", "c-1", T_1403_US, "enterprise", None, None, None, None, None)),
    ("ticket", {"agent_id": "a-7", "channel": "chat"},
     Event("ticket", "t-1", "c-1", T_1403_US, None, None, None, None, "billing", None)),
    ("ticket", {"segment": "smb"},
     Event("ticket", "t-1", "c-1", T_1403_US, "smb", None, None, None, "billing", None)),
    ("customer", {"status": "churned"},
     Event("customer", "u-1", "c-1", T_1403_US, "enterprise", None, None, None, None, "churned")),
    ("customer", {},
     Event("customer", "u-1", "c-1", T_1403_US, "enterprise", None, None, None, None, "active")),
    ("referral", {"unknown_extra_field": [1, 2]},
     Event("referral", "f-1", "c-1", T_1403_US)),
])
def test_valid_events(kind: str, changes: dict[str, Any], expected: Event) -> None:
    """Valid events of every topic become the right Event (fields of other topics stay None)."""
    assert _run(kind, _with(kind, **changes)) == expected


def test_non_ascii_strings_survive() -> None:
    """UTF-8 text in ids and segments is decoded, not mangled."""
    event = _run("customer", _with("customer", customer_id="kund-ø", segment="Großkunden"))
    assert (event.customer_id, event.segment) == ("kund-ø", "Großkunden")


# --- the fast parse equals the plain reading of the tables ------------------------------------
#
# stream.events.parse is generated from SPECS at import and reads timestamps through small caches.
# The reference below is the straightforward implementation it replaced (a loop over SPECS, the
# RFC 3339 pattern, datetime.fromisoformat): for every input both must give the same Event, or
# the same reason *and* detail.

_REF_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")


_REF_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _ref_timestamp_us(text: str) -> int:
    if not _REF_RFC3339.match(text):
        raise InvalidEvent("invalid_timestamp", "occurred_at is not RFC 3339 with an offset")
    leap = text[17:19] == "60"  # a leap second: 23:59:60 in UTC, read as 23:59:59.999999
    try:
        value = datetime.fromisoformat((text[:17] + "59" + text[19:] if leap else text).replace("z", "Z")
                                       .replace("t", "T"))
    except ValueError:
        raise InvalidEvent("invalid_timestamp", "occurred_at is not a real date and time") from None
    seconds, micros = divmod((value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1), 1_000_000)
    if leap and seconds % 86_400 != 23 * 3600 + 59 * 60 + 59:  # 23:59:59 in UTC
        raise InvalidEvent("invalid_timestamp", "occurred_at is not a real date and time")
    return seconds * 1_000_000 + (999_999 if leap else micros)


def _ref_check(spec: Field, value: Any) -> None:
    if value is None and not spec.required:
        return
    if type(value) is not spec.type:
        raise InvalidEvent("wrong_type", f"{spec.name} must be {spec.type.__name__}")
    if spec.choices is not None and value not in spec.choices:
        raise InvalidEvent("out_of_range", f"{spec.name} must be one of {', '.join(spec.choices)}")
    if isinstance(value, str):
        size = len(value)
    elif isinstance(value, int):
        size = value
    else:
        return
    if (spec.min is not None and size < spec.min) or (spec.max is not None and size > spec.max):
        what = "length" if spec.type is str else "value"
        raise InvalidEvent("out_of_range", f"{spec.name} {what} must be in {spec.min}..{spec.max}")
    if spec.label and _REF_CONTROL.search(value):
        raise InvalidEvent("out_of_range", f"{spec.name} must not contain control characters")


def _ref_parse(kind: str, raw: bytes | None, now_ms: int, *, longest_window_ms: int, attribution_ms: int,
               future_tolerance_ms: int, max_bytes: int) -> Event:
    if raw is None:
        raise InvalidEvent("invalid_json", "message has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"value is {len(raw)} bytes, limit {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_encoding" if "utf-8" in str(exc).lower() else "invalid_json"
        raise InvalidEvent(reason, str(exc).split(":")[0][:200]) from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"value is a JSON {type(data).__name__}, not an object")
    for spec in SPECS[kind]:
        value = data.get(spec.name)
        if value is None and spec.required:
            raise InvalidEvent("missing_field", f"{spec.name} is required")
        _ref_check(spec, value)
    at_us = _ref_timestamp_us(data["occurred_at"])
    if at_us > (now_ms + future_tolerance_ms) * 1000:
        raise InvalidEvent("future_timestamp", "occurred_at is more than the allowed tolerance ahead")
    if kind == "ticket" and at_us < (now_ms - longest_window_ms - attribution_ms) * 1000:
        raise InvalidEvent("too_old", "occurred_at is older than the longest window plus the attribution window")
    if kind not in ("customer", "ticket") and at_us < (now_ms - longest_window_ms) * 1000:
        raise InvalidEvent("too_old", "occurred_at is older than the longest window")
    review_kind = data.get("kind") if kind == "review" else None
    needed = CONDITIONAL.get(review_kind or "")
    if needed is not None and data.get(needed) is None:
        raise InvalidEvent("missing_field", f"{needed} is required when kind={review_kind}")
    return Event(
        kind=kind,
        event_id=data["event_id"],
        customer_id=data["customer_id"],
        at_us=at_us,
        segment=data.get("segment"),
        review_kind=review_kind,
        rating=data.get("rating") if kind == "review" else None,
        nps=data.get("nps") if kind == "review" else None,
        team=data.get("team") if kind == "ticket" else None,
        status=data.get("status") if kind == "customer" else None,
    )


def _outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """What a call gives: ("event", repr) of a result, or the InvalidEvent's reason and detail."""
    try:
        result = fn(*args, **kwargs)
    except InvalidEvent as exc:
        return "invalid", (exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - any other exception is the outcome compared
        return "error", (type(exc), str(exc))
    assert type(result) in (Event, int)
    return "value", (result, repr(result))


def _same(kind: str, raw: bytes | None, now_ms: int = NOW, *, longest: int = LONGEST, tolerance: int = TOLERANCE,
          max_bytes: int = MAX_BYTES, attribution: int = ATTRIBUTION) -> None:
    limits = {"longest_window_ms": longest, "attribution_ms": attribution, "future_tolerance_ms": tolerance,
              "max_bytes": max_bytes}
    expected = _outcome(_ref_parse, kind, raw, now_ms, **limits)
    for attempt in ("cold", "warm"):  # the second run reads the timestamp caches the first filled
        assert _outcome(parse, kind, raw, now_ms, **limits) == expected, (kind, raw, attempt)


def _same_timestamp(text: Any) -> None:
    expected = _outcome(_ref_timestamp_us, text)
    for _ in range(2):
        assert _outcome(parse_timestamp_us, text) == expected, text


TRICKY_STAMPS = [
    "2026-11-23T14:03:00Z", "2026-11-23t14:03:00z", "2026-11-23 14:03:00Z", "2026-11-23x14:03:00Z",
    "2026-11-23T14:03:00.1Z", "2026-11-23T14:03:00.12Z", "2026-11-23T14:03:00.123Z", "2026-11-23T14:03:00.1234Z",
    "2026-11-23T14:03:00.123456Z", "2026-11-23T14:03:00.1234567Z", "2026-11-23T14:03:00.999999999Z",
    "2026-11-23T14:03:00.9999999999Z", "2026-11-23T14:03:00.Z", "2026-11-23T14:03:00,5Z", "2026-11-23T14:03:00..5Z",
    "2026-11-23T14:03:00+00:00", "2026-11-23T14:03:00-00:00", "2026-11-23T14:03:00+23:59", "2026-11-23T14:03:00-23:59",
    "2026-11-23T14:03:00+24:00", "2026-11-23T14:03:00+01:60", "2026-11-23T14:03:00+0100", "2026-11-23T14:03:00+01",
    "2026-11-23T14:03:00+01:00:00", "2026-11-23T14:03:00.5+05:30", "2026-11-23T14:03:00.5-05:30",
    "2026-11-23T14:03:00", "2026-11-23T14:03Z", "2026-11-23T14:03:0Z", "2026-11-23T14:03", "2026-11-23T14:03:",
    "2026-11-23T14:03:00Z\n", "2026-11-23T14:03:00\nZ", " 2026-11-23T14:03:00Z", "2026-11-23T14:03:00 Z",
    "2026-11-23T14:03:00ZZ", "2026-11-23T14:03:60Z", "2026-11-23T14:60:00Z", "2026-11-23T24:00:00Z",
    "2026-11-23T23:59:59.999Z", "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
    "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-01-00T00:00:00Z", "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-23:59", "1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.001Z", "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00.0005Z", "20261123T140300Z", "2026-W47-1T14:03:00Z", "2026-11-23", "", "Z", "+00:00",
    "\uff12\uff10\uff12\uff16-11-23T14:03:00Z", "\u0662\u0660\u0662\u0666-11-23T14:03:00Z",
    "2026-11-23T14:03:0\u0660Z", "2026-11-23T14:03:00.\u0661Z", "2026-11-23T14:03:00+0\u0661:00",
    "2026-11-23T1\u0664:03:00Z", "2026-11-23T14:03:00.12\u00b2Z", "2026-11-23T14:03:00\u00b2Z",
    "2026-+1-23T14:03:00Z", "2026-1_-23T14:03:00Z", "+026-11-23T14:03:00Z", " 026-11-23T14:03:00Z",
    "2026-11-23T14:03:+1Z", "2026-11-23T14:03:00.+1Z", "2026-11-23T14:03:00.1_2Z", "2026-11-23T14:03:00.-1Z",
    "2026-11-23T14:03:00\udc00Z", "2026-11-23T14:03:00Z\x00", "2026-11-23T14:03:00\U0001f600",
    "2026-11-23T14:03:00.123Z" * 2,
    "2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5Z", "2016-12-31T23:59:60.999999999Z", "2016-12-31t23:59:60z",
    "2017-01-01T00:59:60+01:00", "2016-12-31T18:59:60-05:00", "2016-12-31T23:59:60+00:01", "2016-12-31T23:58:60Z",
    "2016-12-31T24:59:60Z", "2016-12-31T23:59:61Z", "2016-12-32T23:59:60Z", "0001-01-01T00:00:60+00:01",
    "9999-12-31T23:59:60Z", "2026-11-23T14:03:00.0000001Z", "2026-11-23T14:03:00.000001Z",
]


@pytest.mark.parametrize("text", TRICKY_STAMPS)
def test_parse_timestamp_us_equals_the_reference(text: str) -> None:
    """parse_timestamp_us gives the reference's microseconds or its very error."""
    _same_timestamp(text)
    raw = json.dumps({**BASE["referral"], "occurred_at": text}).encode()  # ASCII: a lone surrogate is escaped
    _same("referral", raw, longest=10**15, tolerance=10**15)


@pytest.mark.parametrize("value", [None, 1_795_442_580, 1.5, b"2026-11-23T14:03:00Z", ["2026-11-23T14:03:00Z"]])
def test_parse_timestamp_us_of_a_non_string_fails_as_before(value: Any) -> None:
    """parse_timestamp_us of something that is not a str fails the same way as the reference."""
    _same_timestamp(value)


TRICKY_PAYLOADS: list[tuple[str, bytes | None]] = [
    *((kind, _with(kind)) for kind in BASE),
    ("review", None), ("review", b""), ("review", b"\xff"), ("review", b"[]"), ("review", b"null"),
    ("review", b'{"rating": NaN}'), ("customer", b'"\xff"'), ("customer", b'["\\ud800"]'),
    ("review", b'{"event_id": "a"} x'), ("ticket", b"{}"), ("referral", b'{"event_id": null}'),
    ("review", _with("review", kind="review")), ("review", _with("review", kind="review", rating=None)),
    ("review", _with("review", kind="review", rating=4)), ("review", _with("review", kind="review", rating=True)),
    ("review", _with("review", kind="review", rating=4.0)), ("review", _with("review", kind="review", rating=0)),
    ("review", _with("review", kind="review", rating=10**30)), ("review", _with("review", kind="survey")),
    ("review", _with("review", kind="survey", nps=0)), ("review", _with("review", kind="survey", nps=-1)),
    ("review", _with("review", kind="survey", nps=False)), ("review", _with("review", kind="survey", rating=5)),
    ("review", _with("review", kind="Review")), ("review", _with("review", kind="")),
    ("review", _with("review", kind=5)),
    ("review", _with("review", kind=None)), ("review", _with("review", kind=DELETE)),
    ("review", _with("review", source="")), ("review", _with("review", source="s" * 2048)),
    ("review", _with("review", source="s" * 2049)), ("review", _with("review", segment="")),
    ("review", _with("review", segment="a\nb")), ("review", _with("review", segment="\x9f")),
    ("review", _with("review", segment="\x00" * 129)), ("ticket", _with("ticket", team="t\x7f")),
    ("customer", _with("customer", segment="\t")), ("ticket", _with("ticket", ticket_id="\x00\n" * 1024)),
    ("review", _with("review", segment="s" * 128)), ("review", _with("review", segment="s" * 129)),
    ("review", _with("review", event_id="é" * 128)), ("review", _with("review", event_id="\U0001f600" * 129)),
    ("review", _with("review", team=5, status=7, ticket_id=[], agent_id={})),  # other topics' fields: ignored
    ("ticket", _with("ticket", kind=5, rating="x", status=1)),
    ("ticket", _with("ticket", team="", ticket_id="")), ("ticket", _with("ticket", team=DELETE, ticket_id=7)),
    ("ticket", _with("ticket", agent_id="", channel="")), ("ticket", _with("ticket", agent_id="a" * 2049)),
    ("referral", _with("referral", referee_id="", channel="c" * 2048)), ("referral", _with("referral", channel=[1])),
    ("customer", _with("customer", status="ACTIVE")), ("customer", _with("customer", status="churned", segment=None)),
    ("customer", _with("customer", segment="", status=5)),
    ("customer", _with("customer", occurred_at="1999-01-01T00:00:00Z")),
    # several fields wrong at once: the first in SPECS order decides, before any timestamp check
    ("review", _with("review", event_id="", customer_id=5, occurred_at="bad", kind="x")),
    ("review", _with("review", customer_id=5, occurred_at="bad", kind="x")),
    ("review", _with("review", occurred_at=5, kind="x")), ("review", _with("review", occurred_at="bad", kind="x")),
    ("review", _with("review", occurred_at="bad", kind="review")),
    ("review", _with("review", occurred_at="2026-11-23T14:20:00Z", kind="review")),
    ("review", _with("review", occurred_at="2020-11-23T14:20:00Z", kind="survey")),
    ("customer", _with("customer", occurred_at="2026-11-23T14:20:00Z", status="x")),
    ("customer", _with("customer", occurred_at="2026-11-23T14:20:00Z")),
    # the edges of the time limits
    *((kind, _with(kind, occurred_at=text)) for kind in BASE for text in (
        "2026-11-23T14:10:00Z", "2026-11-23T14:10:00.001Z", "2026-11-23T14:10:00.0009Z", "2026-11-23T15:10:00+01:00",
        "2026-11-23T14:10:00.000001Z", "2026-11-23T14:10:00.0000009Z",
        "2026-08-25T14:05:00Z", "2026-08-25T14:04:59.999Z", "2026-08-25T14:04:59.9999999Z",
        "2026-08-18T14:05:00Z", "2026-08-18T14:04:59.999999Z", "2026-08-18T14:04:59.9999999Z")),
]


@pytest.mark.parametrize(("kind", "raw"), TRICKY_PAYLOADS)
def test_parse_equals_the_reference_on_tricky_values(kind: str, raw: bytes | None) -> None:
    """The generated parse gives the reference's Event, or its reason and detail, on hand-picked values."""
    _same(kind, raw)


def test_parse_of_an_unknown_kind_fails_as_before() -> None:
    """An unknown kind is a KeyError (the pipeline's 'unprocessable'), after the JSON checks as before."""
    _same("nope", _with("referral"))
    _same("nope", b"[]")


def test_timestamp_caches_stay_bounded_and_hold_only_valid_parts() -> None:
    """The minute and tail tables are emptied at their limit and never learn an invalid part."""
    timestamps._MINUTES.clear()  # other tests (any order) have filled them already
    timestamps._TAILS.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timestamps, "_CACHE_LIMIT", 50)
        for minute in range(200):
            text = f"2026-11-23T{minute // 60:02d}:{minute % 60:02d}:00.{minute:03d}Z"
            assert parse_timestamp_us(text) == _ref_timestamp_us(text)
            assert len(timestamps._MINUTES) <= 50
            assert len(timestamps._TAILS) <= 50
    for text in TRICKY_STAMPS:
        with contextlib.suppress(InvalidEvent):
            parse_timestamp_us(text)
    for head, seconds in timestamps._MINUTES.items():
        assert _ref_timestamp_us(f"{head}:00Z") == seconds * 1_000_000, head
    for tail, micros in timestamps._TAILS.items():
        assert _ref_timestamp_us(f"1970-01-02T00:00:00{tail}") == 86_400_000_000 + micros, tail


# --- the same, on generated values ---

_digits = st.sampled_from("0123456789")
_odd_digits = st.sampled_from(["\u0660", "\uff10", "\u00b2", "+", "-", "_", " ", "x"])


@st.composite
def _stamps(draw: st.DrawFn) -> str:
    """Timestamps near and far from valid: every part may be out of range, misshapen or non-ASCII."""
    year = draw(st.one_of(st.sampled_from([0, 1, 1969, 1970, 2024, 2026, 9999]), st.integers(0, 9999)))
    parts = [f"{year:04d}", f"{draw(st.integers(0, 13)):02d}", f"{draw(st.integers(0, 32)):02d}",
             f"{draw(st.integers(0, 25)):02d}", f"{draw(st.integers(0, 61)):02d}", f"{draw(st.integers(0, 61)):02d}"]
    if draw(st.integers(0, 3)) > 0:  # mostly a real date and time
        parts[1:] = [f"{draw(st.integers(1, 12)):02d}", f"{draw(st.integers(1, 28)):02d}",
                     f"{draw(st.integers(0, 23)):02d}", f"{draw(st.integers(0, 59)):02d}",
                     f"{draw(st.integers(0, 59)):02d}"]
    sep = draw(st.sampled_from(["T", "T", "t", " ", "x", "TT"]))
    fraction = draw(st.one_of(st.just(""), st.text(_digits, min_size=0, max_size=11).map(lambda d: "." + d),
                              st.sampled_from([",5", ".5.5"])))
    hours, minutes = draw(st.integers(0, 25)), draw(st.integers(0, 61))
    zone = draw(st.sampled_from(["Z", "z", f"+{hours:02d}:{minutes:02d}", f"-{hours:02d}:{minutes:02d}",
                                 f"+{hours:02d}{minutes:02d}", f"+{hours:02d}", "", "Z\n", " Z", "+00:00:00"]))
    text = f"{parts[0]}-{parts[1]}-{parts[2]}{sep}{parts[3]}:{parts[4]}:{parts[5]}{fraction}{zone}"
    how = draw(st.integers(0, 9))
    if how == 0 and text:  # one character replaced by an odd digit or sign
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(_odd_digits) + text[at + 1:]
    elif how == 1 and text:  # one character dropped
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + text[at + 1:]
    elif how == 2:
        text = draw(st.text(max_size=30))
    return text


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=_stamps())
def test_parse_timestamp_us_equals_the_reference_on_generated_text(text: str) -> None:
    """On generated near-valid and invalid text, parse_timestamp_us equals the reference."""
    _same_timestamp(text)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(micros=st.integers(-(10**16), 10**16), offset=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
       digits=st.integers(0, 9), zulu=st.sampled_from(["Z", "z"]))
def test_microseconds_as_the_reference(micros: int, offset: int, digits: int, zulu: str) -> None:
    """Any instant in any offset and precision: the same microseconds as the reference."""
    local = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros + offset * 60_000_000)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}{micros % 1000:03d}"[:digits]
    sign, (hours, minutes) = "+" if offset >= 0 else "-", divmod(abs(offset), 60)
    text += zulu if offset == 0 else f"{sign}{hours:02d}:{minutes:02d}"
    _same_timestamp(text)


_hostile = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 12), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.lists(st.integers(-9, 9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2),
    st.sampled_from([*REVIEW_KINDS, *STATUSES, "Review", "", "x" * 128, "x" * 129, "é" * 129, "s" * 2048, "s" * 2049,
                     "a\nb", "\x85", "\x7f" * 128, "\U0010ffff" * 3, 2**63, -(2**63) - 1, 2**64, 4.0, -0.0]),
)
_LIMITS = [edge * 1000 + step for edge in (TOLERANCE, -LONGEST, -LONGEST - ATTRIBUTION)
           for step in (-1_000_000, -1000, -1, 0, 1, 1000, 1_000_000)]
_near_now = st.one_of(st.integers((-LONGEST - ATTRIBUTION - 2 * DAY) * 1000, 2 * TOLERANCE * 1000),
                      st.sampled_from(_LIMITS)).map(  # microseconds from now
    lambda delta: (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=NOW * 1000 + delta)).isoformat(
        timespec="microseconds").replace("+00:00", "Z"))


@st.composite
def _payloads(draw: st.DrawFn) -> tuple[str, bytes | None]:
    kind = draw(st.sampled_from(list(BASE)))
    data: dict[str, Any] = dict(BASE[kind])
    if kind == "review":
        data |= draw(st.sampled_from([{"kind": "review", "rating": 4}, {"kind": "survey", "nps": 9}, {}]))
    if draw(st.booleans()):
        data["occurred_at"] = draw(st.one_of(_near_now, _near_now, _stamps()))
    names = sorted({f.name for specs in SPECS.values() for f in specs} | {"extra"})
    for name in draw(st.lists(st.sampled_from(names), max_size=3)):
        if draw(st.integers(0, 4)) == 0:
            data.pop(name, None)
        else:
            data[name] = draw(_hostile)
    raw: bytes | None = json.dumps(data, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    mutation = draw(st.sampled_from(["none"] * 16 + ["truncate", "array", "binary", "tombstone"]))
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "array":
        raw = b"[" + raw + b"]"
    elif mutation == "binary":
        raw = draw(st.binary(max_size=40))
    elif mutation == "tombstone":
        raw = None
    return kind, raw


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_payloads(), max_bytes=st.sampled_from([MAX_BYTES, MAX_BYTES, 200]))
def test_parse_equals_the_reference_on_generated_values(case: tuple[str, bytes | None], max_bytes: int) -> None:
    """On generated values of every topic (valid, spoilt, hostile, not JSON), parse equals the reference."""
    kind, raw = case
    _same(kind, raw, max_bytes=max_bytes)


# --- the numbers at their edges (issue 11) ------------------------------------------------------
#
# Through ``producer.validate`` (the worker's parse with the settings' limits), whose signature the
# fixes do not change.

_SETTINGS = load_settings()  # defaults: windows up to 90d, attribution 7d, 5 min tolerance
_NOW_S = NOW / 1000


def _validate(topic: str, kind: str, now: float = _NOW_S, **changes: Any) -> Event:
    return validate(_SETTINGS, topic, _with(kind, **changes), now)


def _rejected(topic: str, kind: str, now: float = _NOW_S, **changes: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        _validate(topic, kind, now, **changes)
    return info.value.reason


URL_288 = "https://reviews.example.com/" + "p" * 260  # a 288-character URL


@pytest.mark.parametrize(("topic", "kind", "changes"), [
    ("reviews", "review", {"source": URL_288}),
    ("reviews", "review", {"source": "s" * 2048}),
    ("reviews", "review", {"source": "\U0001f600" * 2048}),
    ("tickets-closed", "ticket", {"ticket_id": "T" * 129}),
    ("tickets-closed", "ticket", {"ticket_id": "T" * 2048}),
    ("tickets-closed", "ticket", {"channel": "c" * 129}),
    ("tickets-closed", "ticket", {"agent_id": "a" * 2048, "channel": "c" * 2048}),
    ("referrals", "referral", {"referee_id": "r" * 2048, "channel": "c" * 2048}),
])
def test_free_text_fields_take_up_to_2048_characters(topic: str, kind: str, changes: dict[str, Any]) -> None:
    """Issue 11 case 2: source, channel, referee_id, agent_id and ticket_id are free text of up to 2,048
    characters; a 288-character URL in source is normal, never dead-lettered."""
    event = _validate(topic, kind, **changes)
    assert event.kind == kind


@pytest.mark.parametrize(("topic", "kind", "changes"), [
    ("reviews", "review", {"source": "s" * 2049}),
    ("tickets-closed", "ticket", {"ticket_id": "T" * 2049}),
    ("tickets-closed", "ticket", {"agent_id": "a" * 2049}),
    ("referrals", "referral", {"channel": "c" * 2049}),
    ("referrals", "referral", {"referee_id": "r" * 2049}),
])
def test_free_text_over_2048_characters_is_out_of_range(topic: str, kind: str, changes: dict[str, Any]) -> None:
    """One character over the free-text limit -> out_of_range."""
    assert _rejected(topic, kind, **changes) == "out_of_range"


@pytest.mark.parametrize(("topic", "kind", "field"), [
    ("reviews", "review", "segment"), ("referrals", "referral", "segment"), ("tickets-closed", "ticket", "segment"),
    ("tickets-closed", "ticket", "team"), ("customers", "customer", "segment"),
])
@pytest.mark.parametrize("name", ["line\nbreak", "tab\there", "nul\x00", "del\x7f", "c1\x85", "esc\x1b[31m"])
def test_labels_with_control_characters_are_out_of_range(topic: str, kind: str, field: str, name: str) -> None:
    """Segment and team are label names: 1-128 characters without control characters -> out_of_range."""
    assert _rejected(topic, kind, **{field: name}) == "out_of_range"


@pytest.mark.parametrize("name", ["s" * 128, "Großkunden", "\U0001f600" * 128, "a b", "x\u200by", "\u00a0"])
def test_labels_of_up_to_128_printable_characters_are_valid(name: str) -> None:
    """Any 1-128 characters that are not control characters make a valid segment or team."""
    assert _validate("tickets-closed", "ticket", team=name, segment=name).team == name


@pytest.mark.parametrize("age_days", [90.5, 92, 96, 97])
def test_a_ticket_older_than_the_longest_window_within_attribution_is_valid(age_days: float) -> None:
    """Issue 11 case 3: a ticket is too old only past the longest window plus the attribution window
    (90d + 7d): a ticket at -92d still credits a referral at -88d, so it is never dead-lettered."""
    at = datetime.fromtimestamp(_NOW_S - age_days * 86400, UTC).isoformat().replace("+00:00", "Z")
    assert _validate("tickets-closed", "ticket", occurred_at=at).kind == "ticket"
    assert _rejected("referrals", "referral", occurred_at=at) == "too_old"
    assert _rejected("reviews", "review", occurred_at=at) == "too_old"


def test_a_ticket_past_the_longest_window_plus_attribution_is_too_old() -> None:
    """One second past 90d + 7d -> too_old; exactly 97d is still accepted."""
    edge = _NOW_S - 97 * 86400
    stamp = datetime.fromtimestamp(edge, UTC).isoformat().replace("+00:00", "Z")
    assert _validate("tickets-closed", "ticket", occurred_at=stamp).kind == "ticket"
    older = datetime.fromtimestamp(edge - 1, UTC).isoformat().replace("+00:00", "Z")
    assert _rejected("tickets-closed", "ticket", occurred_at=older) == "too_old"


def test_timestamps_a_tenth_of_a_millisecond_apart_stay_apart() -> None:
    """Issue 11 case 5: comparisons keep at least microsecond precision: 0.1 ms and 1 us apart differ."""
    times = [_time(_validate("referrals", "referral", occurred_at=f"2026-11-23T14:03:00.{f}Z"))
             for f in ("0001", "0002", "000201", "000201999", "0003")]
    assert times == sorted(times)
    assert len(set(times)) == 4


@pytest.mark.parametrize(("text", "after", "before"), [
    ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z", "2017-01-01T00:00:00Z"),
    ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.5Z", "2017-01-01T00:00:00.000001Z"),
    ("2016-12-31T23:59:60.999999999Z", "2016-12-31T23:59:59.999998Z", "2017-01-01T00:00:00Z"),
    ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59Z", "2017-01-01T00:00:00Z"),
])
def test_a_leap_second_is_valid_and_sorts_inside_its_minute(text: str, after: str, before: str) -> None:
    """Issue 11 case 5: RFC 3339 leap seconds (hh:mm:60) are valid: not before the minute's second 59,
    not after the next minute."""
    now = datetime(2017, 1, 1, 1, tzinfo=UTC).timestamp()
    leap = _time(_validate("referrals", "referral", now, occurred_at=text))
    assert _time(_validate("referrals", "referral", now, occurred_at=after)) <= leap
    assert leap < _time(_validate("referrals", "referral", now, occurred_at=before))


@pytest.mark.parametrize("text", ["2026-11-23T14:03:00.123456789Z", "2026-11-23T14:03:00.1+00:00",
                                  "2026-11-23T14:03:00.000000001Z"])
def test_up_to_nine_fractional_digits_are_valid(text: str) -> None:
    """Timestamps may carry up to 9 fractional digits (nanoseconds), kept to the microsecond."""
    assert _validate("referrals", "referral", occurred_at=text).kind == "referral"


def _time(event: Event) -> int:
    """The event time in the finest unit the Event carries."""
    return event.at_us


def test_the_largest_valid_event_fits_the_smallest_message_limit() -> None:
    """Every string at its longest, every character escaped as a surrogate pair, the longest timestamp: on
    every topic the value is valid and within largest_valid_bytes(), the floor of ADVOCACY_MAX_MESSAGE_BYTES."""
    limit = contract.largest_valid_bytes()
    sizes = []
    for kind in BASE:
        data: dict[str, Any] = {}
        for spec in SPECS[kind]:
            if spec.name == "occurred_at":
                data[spec.name] = "2026-11-24T01:33:00.999999999+11:30"  # 14:03:00.999999999Z
            elif spec.choices is not None:
                data[spec.name] = "case_study" if spec.name == "kind" else max(spec.choices, key=len)
            elif spec.type is int:
                data[spec.name] = spec.max
            else:
                data[spec.name] = "\U0001f600" * (spec.max or 0)
        raw = json.dumps(data, separators=(",", ":")).encode()  # ASCII: \ud83d\ude00 per character
        assert _run(kind, raw, max_bytes=limit).kind == kind
        sizes.append(len(raw))
    assert max(sizes) <= limit < max(sizes) + 100, sizes
    with pytest.raises(ConfigError, match="ADVOCACY_MAX_MESSAGE_BYTES"):
        load_settings(max_message_bytes=limit - 1)
