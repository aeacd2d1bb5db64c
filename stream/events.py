"""The wire contract: turn one message value into a valid ``Event`` or an ``InvalidEvent``.

The field rules are data (``SPECS``) so that one table drives validation, the
documentation and the published JSON Schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import orjson

from stream.errors import InvalidEvent
from stream.event import Event

KINDS = ("review", "referral", "ticket", "customer")
#: every dead-letter reason (label values of advocacy_dead_letters_total)
REASONS = ("invalid_json", "invalid_encoding", "not_an_object", "missing_field", "wrong_type", "out_of_range",
           "invalid_timestamp", "future_timestamp", "too_old", "too_large", "unprocessable", "customer_cap")
REVIEW_KINDS = ("review", "testimonial", "case_study", "survey", "social")
STATUSES = ("active", "churned")
#: segment and team are label names: no control characters (C0, DEL, C1)
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
NAME_MAX = 128  # segment and team: label names
TEXT_MAX = 2048  # source, channel, referee_id, agent_id, ticket_id: free text (a URL in source is normal)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the wire contract."""

    name: str
    type: type
    required: bool = False
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] | None = None
    label: bool = False  # a label name (segment, team): no control characters


_COMMON = (
    Field("event_id", str, True, 1, 128),
    Field("customer_id", str, True, 1, 128),
    Field("occurred_at", str, True),
    Field("segment", str, False, 1, NAME_MAX, label=True),
)
SPECS: Final[dict[str, tuple[Field, ...]]] = {
    "review": (*_COMMON,
        Field("kind", str, True, choices=REVIEW_KINDS),
        Field("rating", int, False, 1, 5),
        Field("nps", int, False, 0, 10),
        Field("source", str, False, 0, TEXT_MAX),
    ),
    "referral": (*_COMMON,
        Field("referee_id", str, False, 0, TEXT_MAX),
        Field("channel", str, False, 0, TEXT_MAX),
    ),
    "ticket": (*_COMMON,
        Field("ticket_id", str, True, 0, TEXT_MAX),
        Field("team", str, True, 1, NAME_MAX, label=True),
        Field("agent_id", str, False, 0, TEXT_MAX),
        Field("channel", str, False, 0, TEXT_MAX),
    ),
    "customer": (*_COMMON[:3],
        Field("segment", str, True, 1, NAME_MAX, label=True),
        Field("status", str, True, choices=STATUSES),
    ),
}
# review kinds that need one more field
CONDITIONAL: Final = {"review": "rating", "survey": "nps"}


def largest_valid_bytes() -> int:
    """The largest value of a valid event (no unknown fields, compact JSON) with every character of
    every string at its longest and escaped as a surrogate pair (12 bytes): a message size limit
    below this could dead-letter an event for lengths the contract allows."""
    stamp = len('"0000-00-00T00:00:00.000000000+00:00"')
    largest = 0
    for specs in SPECS.values():
        size = 1  # the braces, less the comma after the last field
        for spec in specs:
            size += len(spec.name) + 4  # "name": and a comma
            if spec.name == "occurred_at":
                size += stamp
            elif spec.choices is not None:
                size += max(len(choice) for choice in spec.choices) + 2
            elif spec.type is int:
                size += max(len(str(spec.min)), len(str(spec.max)))
            else:
                size += 12 * (spec.max or 0) + 2
        largest = max(largest, size)
    return largest


def parse_timestamp_us(text: str) -> int:
    """RFC 3339 with an offset -> epoch microseconds (more fractional digits are cut)."""
    if type(text) is str:
        at_us = _fast_timestamp_us(text)
        if at_us is not None:
            return at_us
    return _slow_timestamp_us(text)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _slow_timestamp_us(text: str) -> int:
    """The definition: the RFC 3339 pattern, then ``datetime.fromisoformat``, exact integer microseconds.
    Raises for any invalid value.

    A leap second (``23:59:60`` in UTC, RFC 3339 section 5.7) is the last microsecond of that
    minute's second 59: never before a time of that minute, never after the next minute.
    """
    if not _RFC3339.match(text):
        raise InvalidEvent("invalid_timestamp", "occurred_at is not RFC 3339 with an offset")
    leap = text[17:19] == "60"
    if leap:
        text = text[:17] + "59" + text[19:]
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise InvalidEvent("invalid_timestamp", "occurred_at is not a real date and time") from None
    at_us: int = (value - _EPOCH) // _MICROSECOND
    if not leap:
        return at_us
    if at_us // 1_000_000 % 86_400 != 86_399:  # in UTC, a leap second is 23:59:60 (whatever the offset)
        raise InvalidEvent("invalid_timestamp", "occurred_at is not a real date and time")
    return at_us - value.microsecond + 999_999


# --- the hot path -------------------------------------------------------------------------------
#
# ``parse`` runs once per message; it is compiled by mypyc with the rest of the hot path (setup.py).
# tests/unit/test_events.py checks it against the plain reading of the tables (same Event, or the
# same reason and detail), so keep the two in step.
#
# * Timestamps: ``_fast_timestamp_us`` reads valid ones of the usual shape from three parts, each
#   looked up in a small table (minute, second, fraction+offset); on any doubt (a leap second too)
#   it returns None and ``_slow_timestamp_us``, the definition, decides (and gives the very same
#   error). The tables only ever hold validated parts, and are emptied when they reach _CACHE_LIMIT
#   entries. Both give exact integer microseconds.
# * Fields: one loop over the kind's Field objects (``_check_fields``), then the timestamp checks and
#   the Event (``_event``). Until 2026-11-30 a straight-line checker per kind was generated from
#   SPECS and exec'd (faster interpreted, but mypyc cannot compile exec'd code; docs/benchmarks-notes.md).

_CACHE_LIMIT = 65_536  # entries per table
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_SIXTY: Final = {f"{n:02d}": n for n in range(60)}  # seconds 00-59 (a leap second, 60, takes the slow path)
# what may follow "YYYY-MM-DDTHH:MM:SS" (ASCII digits only: fromisoformat rejects other digits)
_TAIL: Final = re.compile(r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])(2[0-3]|[01][0-9]):([0-5][0-9]))\Z")
_MINUTES: Final[dict[str, int]] = {}  # valid "YYYY-MM-DD[Tt ]HH:MM" -> its epoch seconds read as UTC
_TAILS: Final[dict[str, int]] = {}  # valid "[.fraction](Z|+HH:MM|-HH:MM)" -> microseconds to add (fraction - offset)


def _remember(table: dict[str, int], key: str, value: int | None) -> int | None:
    """``value``, kept in ``table`` under ``key`` when valid (the table is emptied at its limit)."""
    if value is not None:
        if len(table) >= _CACHE_LIMIT:
            table.clear()
        table[key] = value
    return value


def _minute_seconds(head: str) -> int | None:
    """``YYYY-MM-DD[Tt ]HH:MM`` (ASCII digits, a real date, hour 00-23, minute 00-59) -> epoch seconds; else None."""
    if not (len(head) == 16 and head.isascii() and head[4] == "-" and head[7] == "-" and head[10] in "Tt "
            and head[13] == ":"):
        return None
    if not (head[0:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16]).isdigit():
        return None
    hour, minute = int(head[11:13]), int(head[14:16])
    if hour > 23 or minute > 59:  # fromisoformat has no hour 24
        return None
    try:
        day = date(int(head[0:4]), int(head[5:7]), int(head[8:10]))
    except ValueError:  # year 0, month 13, 30 February, ...
        return None
    return (day.toordinal() - _EPOCH_ORDINAL) * 86_400 + hour * 3600 + minute * 60


def _tail_micros(tail: str) -> int | None:
    """``[.fraction](Z|±HH:MM)`` -> fraction minus offset, in microseconds; else None."""
    match = _TAIL.match(tail)
    if match is None:
        return None
    fraction, sign, hours, minutes = match.groups()
    micros = int((fraction + "00000")[:6]) if fraction else 0  # fromisoformat keeps 6 digits, truncated
    if sign is not None:
        offset = (int(hours) * 3600 + int(minutes) * 60) * 1_000_000
        micros -= offset if sign == "+" else -offset
    return micros


def _fast_timestamp_us(text: str) -> int | None:
    """Epoch us of a valid timestamp of the usual shape, exactly as ``_slow_timestamp_us``; else None."""
    head = text[:16]
    minute = _MINUTES.get(head)
    if minute is None:
        minute = _remember(_MINUTES, head, _minute_seconds(head))
    second = _SIXTY.get(text[17:19])
    if minute is None or second is None or text[16] != ":":  # a second found: text has at least 19 characters
        return None
    tail = text[19:]
    micros = _TAILS.get(tail)
    if micros is None:
        micros = _remember(_TAILS, tail, _tail_micros(tail))
        if micros is None:
            return None
    return (minute + second) * 1_000_000 + micros


def _check_fields(specs: tuple[Field, ...], data: dict[str, Any]) -> None:
    """Each field of ``specs`` in order: missing (None, and required; None is absent otherwise),
    type (exactly: bool is not an int), choices, the length or value range, then (label names)
    control characters."""
    for spec in specs:
        value = data.get(spec.name)
        if value is None:
            if spec.required:
                raise InvalidEvent("missing_field", f"{spec.name} is required")
            continue
        if type(value) is str and spec.type is str:
            size = len(value)
        elif type(value) is int and spec.type is int:
            size = value
        else:
            raise InvalidEvent("wrong_type", f"{spec.name} must be {spec.type.__name__}")
        if spec.choices is not None and value not in spec.choices:
            raise InvalidEvent("out_of_range", f"{spec.name} must be one of {', '.join(spec.choices)}")
        if (spec.min is not None and size < spec.min) or (spec.max is not None and size > spec.max):
            what = "length" if spec.type is str else "value"
            raise InvalidEvent("out_of_range", f"{spec.name} {what} must be in {spec.min}..{spec.max}")
        if spec.label and type(value) is str and _CONTROL.search(value) is not None:
            raise InvalidEvent("out_of_range", f"{spec.name} must not contain control characters")


def _event(kind: str, data: dict[str, Any], latest_us: int, oldest_us: int, oldest_ticket_us: int) -> Event:
    """The Event of a topic ``kind``'s value: its fields (SPECS), then the timestamp, future (after
    ``latest_us``), too old (before ``oldest_us``; a ticket before ``oldest_ticket_us``; never a
    customer), the field a review kind needs (CONDITIONAL). Fields of other topics are None."""
    _check_fields(SPECS[kind], data)
    at = data["occurred_at"]
    at_us = _fast_timestamp_us(at)
    if at_us is None:
        at_us = _slow_timestamp_us(at)
    if at_us > latest_us:
        raise InvalidEvent("future_timestamp", "occurred_at is more than the allowed tolerance ahead")
    if kind == "ticket":  # a ticket still credits actions inside the longest window
        if at_us < oldest_ticket_us:
            raise InvalidEvent("too_old", "occurred_at is older than the longest window plus the attribution window")
        return Event(kind, data["event_id"], data["customer_id"], at_us, data.get("segment"), team=data["team"])
    if kind == "customer":
        return Event(kind, data["event_id"], data["customer_id"], at_us, data["segment"], status=data["status"])
    if at_us < oldest_us:
        raise InvalidEvent("too_old", "occurred_at is older than the longest window")
    if kind == "referral":
        return Event(kind, data["event_id"], data["customer_id"], at_us, data.get("segment"))
    review_kind = data["kind"]
    needed = CONDITIONAL.get(review_kind)
    if needed is not None and data.get(needed) is None:
        raise InvalidEvent("missing_field", f"{needed} is required when kind={review_kind}")
    return Event(kind, data["event_id"], data["customer_id"], at_us, data.get("segment"), review_kind,
                 data.get("rating"), data.get("nps"))


def parse(kind: str, raw: bytes | None, now_ms: int, *, longest_window_ms: int, attribution_ms: int,
          future_tolerance_ms: int, max_bytes: int) -> Event:
    """Validate one message value of topic kind ``kind``; raise InvalidEvent with a reason.

    Too old (contract section 2): a review or referral before ``now - longest window``, a ticket
    before ``now - (longest window + attribution window)``; a registration never.
    """
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
    now_us = now_ms * 1000
    oldest_us = now_us - longest_window_ms * 1000
    return _event(kind, data, now_us + future_tolerance_ms * 1000, oldest_us, oldest_us - attribution_ms * 1000)
