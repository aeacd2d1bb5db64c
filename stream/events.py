"""The wire contract: turn one message value into a valid ``Event`` or an ``InvalidEvent``.

The field rules are data (``SPECS``) so that one table drives validation, the
documentation and the published JSON Schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from stream.errors import InvalidEvent
from stream.kpi import Event

KINDS = ("review", "referral", "ticket", "customer")
#: every dead-letter reason (label values of advocacy_dead_letters_total)
REASONS = ("invalid_json", "invalid_encoding", "not_an_object", "missing_field", "wrong_type", "out_of_range",
           "invalid_timestamp", "future_timestamp", "too_old", "too_large", "unprocessable")
REVIEW_KINDS = ("review", "testimonial", "case_study", "survey", "social")
STATUSES = ("active", "churned")
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


_COMMON = (
    Field("event_id", str, True, 1, 128),
    Field("customer_id", str, True, 1, 128),
    Field("occurred_at", str, True),
    Field("segment", str, False, 1, 128),
)
SPECS: dict[str, tuple[Field, ...]] = {
    "review": (*_COMMON,
        Field("kind", str, True, choices=REVIEW_KINDS),
        Field("rating", int, False, 1, 5),
        Field("nps", int, False, 0, 10),
        Field("source", str, False, 0, 256),
    ),
    "referral": (*_COMMON,
        Field("referee_id", str, False, 0, 128),
        Field("channel", str, False, 0, 128),
    ),
    "ticket": (*_COMMON,
        Field("ticket_id", str, True, 1, 128),
        Field("team", str, True, 1, 128),
        Field("agent_id", str, False, 0, 128),
        Field("channel", str, False, 0, 128),
    ),
    "customer": (*_COMMON[:3],
        Field("segment", str, True, 1, 128),
        Field("status", str, True, choices=STATUSES),
    ),
}
# review kinds that need one more field
CONDITIONAL = {"review": "rating", "survey": "nps"}


def parse_timestamp_ms(text: str) -> int:
    """RFC 3339 with an offset -> epoch milliseconds."""
    if not _RFC3339.match(text):
        raise InvalidEvent("invalid_timestamp", "occurred_at is not RFC 3339 with an offset")
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise InvalidEvent("invalid_timestamp", "occurred_at is not a real date and time") from None
    return int(value.timestamp() * 1000)


def _check(spec: Field, value: Any) -> None:
    if value is None and not spec.required:
        return
    if type(value) is not spec.type:  # bool is not an int, 4.0 is not an int
        raise InvalidEvent("wrong_type", f"{spec.name} must be {spec.type.__name__}")
    if spec.choices is not None and value not in spec.choices:
        raise InvalidEvent("out_of_range", f"{spec.name} must be one of {', '.join(spec.choices)}")
    if isinstance(value, str):
        size = len(value)
    elif isinstance(value, int):
        size = value
    else:  # pragma: no cover - SPECS only holds str and int fields
        return
    if (spec.min is not None and size < spec.min) or (spec.max is not None and size > spec.max):
        what = "length" if spec.type is str else "value"
        raise InvalidEvent("out_of_range", f"{spec.name} {what} must be in {spec.min}..{spec.max}")


def parse(kind: str, raw: bytes | None, now_ms: int, *, longest_window_ms: int,
          future_tolerance_ms: int, max_bytes: int) -> Event:
    """Validate one message value of topic kind ``kind``; raise InvalidEvent with a reason."""
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
        _check(spec, value)
    at_ms = parse_timestamp_ms(data["occurred_at"])
    if at_ms > now_ms + future_tolerance_ms:
        raise InvalidEvent("future_timestamp", "occurred_at is more than the allowed tolerance ahead")
    if kind != "customer" and at_ms < now_ms - longest_window_ms:
        raise InvalidEvent("too_old", "occurred_at is older than the longest window")
    review_kind = data.get("kind") if kind == "review" else None
    needed = CONDITIONAL.get(review_kind or "")
    if needed is not None and data.get(needed) is None:
        raise InvalidEvent("missing_field", f"{needed} is required when kind={review_kind}")
    return Event(
        kind=kind,
        event_id=data["event_id"],
        customer_id=data["customer_id"],
        at_ms=at_ms,
        segment=data.get("segment"),
        review_kind=review_kind,
        rating=data.get("rating") if kind == "review" else None,
        nps=data.get("nps") if kind == "review" else None,
        team=data.get("team") if kind == "ticket" else None,
        status=data.get("status") if kind == "customer" else None,
    )
