"""An independent reading of the wire contract (CONTRACT.md section 2), for property tests.

``judge`` says what the service may do with one message value: which dead-letter
reasons are acceptable, or that it must be accepted and with which field values. It
shares no code with ``stream.events``: it decodes with the standard library's strict
UTF-8 and ``json``, checks timestamps with its own ASCII pattern and calendar
arithmetic, and collects *every* violation, since the service reports the first it finds.

Limits not stated in CONTRACT.md are those published in ``schemas/*.schema.json``. Event times
are exact integer microseconds (fractional digits past the sixth are cut), a leap second
(23:59:60 UTC) being the last microsecond of its second 59.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

REASONS = frozenset({"invalid_json", "invalid_encoding", "not_an_object", "missing_field", "wrong_type",
                     "out_of_range", "invalid_timestamp", "future_timestamp", "too_old", "too_large",
                     "unprocessable"})  # docs/metrics.md, advocacy_dead_letters_total
VALID = "valid"

# name -> (type, required, low, high, choices); str limits are lengths, int limits values
Rule = tuple[type, bool, int | None, int | None, tuple[str, ...] | None]
_IDS: dict[str, Rule] = {"event_id": (str, True, 1, 128, None), "customer_id": (str, True, 1, 128, None),
                         "occurred_at": (str, True, None, None, None)}
NAME: Rule = (str, False, 1, 128, None)  # segment, team: labels, no control characters
TEXT: Rule = (str, False, 0, 2048, None)  # free text: source, channel, referee_id, agent_id, ticket_id
RULES: dict[str, dict[str, Rule]] = {
    "review": {**_IDS, "segment": NAME,
               "kind": (str, True, None, None, ("review", "testimonial", "case_study", "survey", "social")),
               "rating": (int, False, 1, 5, None), "nps": (int, False, 0, 10, None), "source": TEXT},
    "referral": {**_IDS, "segment": NAME, "referee_id": TEXT, "channel": TEXT},
    "ticket": {**_IDS, "segment": NAME, "ticket_id": (str, True, 0, 2048, None), "team": (str, True, 1, 128, None),
               "agent_id": TEXT, "channel": TEXT},
    "customer": {**_IDS, "segment": (str, True, 1, 128, None),
                 "status": (str, True, None, None, ("active", "churned"))},
}
LABELS = frozenset({"segment", "team"})
_STAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
                    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))")
I64_MIN, U64_MAX = -(2**63), 2**64 - 1
MAX_DEPTH = 512  # deeper values may be refused as invalid_json, or read


class _Constant(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _Constant(name)  # NaN, Infinity, -Infinity are not JSON


@dataclass
class Verdict:
    """What the service may do with one value."""

    allowed: set[str]  # dead-letter reasons, and/or VALID
    fields: dict[str, Any] = field(default_factory=dict)  # when VALID: the decoded object
    at_us: int | None = None  # when VALID: the exact event time (microseconds)

    @property
    def must_accept(self) -> bool:
        return self.allowed == {VALID}


def timestamp_us(text: str) -> int | None:
    """RFC 3339 with an offset -> exact epoch microseconds; None when not a real date-time."""
    match = _STAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    offset = 0
    if match.group(9):
        oh, om = int(match.group(10)), int(match.group(11))
        if oh > 23 or om > 59:
            return None
        offset = (oh * 3600 + om * 60) * (1 if match.group(9) == "+" else -1)
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    seconds = calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)) - offset
    if second == 60:  # a leap second: 23:59:60 in UTC only, the last microsecond of 23:59:59
        return seconds * 1_000_000 + 999_999 if seconds % 86_400 == 86_399 else None
    return seconds * 1_000_000 + int(fraction)


def _walk(value: Any) -> tuple[bool, bool, int]:
    """(has a surrogate in a string, has a number too big for a double, nesting depth)."""
    surrogate = infinite = False
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, str):
            surrogate = surrogate or any(0xD800 <= ord(c) <= 0xDFFF for c in item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, float):
            infinite = infinite or not math.isfinite(item)
        elif isinstance(item, int):
            # beyond 64 bits a decoder may fall back to a double; beyond a double it cannot
            if not I64_MIN <= item <= U64_MAX:
                try:
                    float(item)
                except OverflowError:
                    infinite = True
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return surrogate, infinite, deepest


def judge(topic: str, raw: bytes | None, now_ms: int, *, longest_window_ms: int, attribution_ms: int,
          future_tolerance_ms: int, max_bytes: int) -> Verdict:
    """The acceptable outcomes for value ``raw`` on logical topic ``topic``."""
    if raw is None:
        return Verdict({"invalid_json"})  # a tombstone has no event
    if len(raw) > max_bytes:
        return Verdict({"too_large"})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Verdict({"invalid_encoding"})
    if text.startswith("\ufeff"):
        return Verdict({"invalid_json", "invalid_encoding"})  # RFC 8259: no byte order mark
    overwritten: list[Any] = []  # values a later duplicate key replaced: a decoder still had to read them

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items):
            overwritten.extend([key, value] for key, value in items if result[key] is not value)
        return result

    try:
        data = json.loads(text, parse_constant=_no_constants, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return Verdict({"invalid_json"})
    surrogate, infinite, depth = _walk(data)
    lost_surrogate, lost_infinite, _ = _walk(overwritten)
    if surrogate or infinite or lost_surrogate or lost_infinite:
        return Verdict({"invalid_json"})  # not representable as UTF-8 / as a number
    if not isinstance(data, dict):
        return Verdict({"not_an_object"})
    found: set[str] = set()
    for name, (kind, required, low, high, choices) in RULES[topic].items():
        value = data.get(name)
        if value is None:
            if required:
                found.add("missing_field")
            continue
        if kind is int and type(value) is int and not I64_MIN <= value <= U64_MAX:
            found.update({"wrong_type", "out_of_range"})  # a huge integer: either reading is fair
            continue
        if type(value) is not kind:  # bool is not an int, 4.0 is not an int
            found.add("wrong_type")
            continue
        if choices is not None and value not in choices:
            found.add("out_of_range")
        size = len(value) if kind is str else value
        if (low is not None and size < low) or (high is not None and size > high):
            found.add("out_of_range")
        if name in LABELS and any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
            found.add("out_of_range")  # a control character in a label name
    at_us = None
    stamp = data.get("occurred_at")
    if type(stamp) is str:
        at_us = timestamp_us(stamp)
        if at_us is None:
            found.add("invalid_timestamp")
        else:
            if at_us > (now_ms + future_tolerance_ms) * 1000:
                found.add("future_timestamp")
            # too old: older than the longest window; a ticket, older than that plus the attribution window
            matters = longest_window_ms + (attribution_ms if topic == "ticket" else 0)
            if topic != "customer" and at_us < (now_ms - matters) * 1000:
                found.add("too_old")
    if topic == "review":
        kind_value = data.get("kind")
        needs = {"review": "rating", "survey": "nps"}.get(kind_value) if type(kind_value) is str else None
        if needs is not None and data.get(needs) is None:
            found.add("missing_field")
    if depth > MAX_DEPTH:
        found.add("invalid_json")  # RFC 8259 section 9: a parser may limit the nesting depth
    if not found:
        return Verdict({VALID}, data, at_us)
    if depth > MAX_DEPTH and found == {"invalid_json"}:
        return Verdict({VALID, "invalid_json"}, data, at_us)
    return Verdict(found)
