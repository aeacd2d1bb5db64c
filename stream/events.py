"""Validation: turn one message value into a valid ``Event`` or an ``InvalidEvent``.

``parse`` runs once per message: the fields of the contract's tables (``stream.contract``)
checked in a loop (``_check_fields``: the checks in the order of ``SPECS``, with their
messages), then the timestamp (read by ``stream.timestamps``) and the Event. It is compiled by
mypyc with the rest of the hot path (``stream.HOT_PATH``, setup.py); until 2026-11-30 a
straight-line checker per kind was generated from ``SPECS`` and exec'd, faster interpreted but
beyond mypyc (docs/benchmarks-notes.md). tests/unit/test_events.py checks it against the plain
reading of the tables (same Event, or the same reason and detail), so keep the two in step.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream.contract import CONDITIONAL, CONTROL, SPECS, Field
from stream.errors import InvalidEvent
from stream.event import Event
from stream.timestamps import fast_timestamp_us, slow_timestamp_us

__all__ = ["parse"]


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
        if spec.label and type(value) is str and CONTROL.search(value) is not None:
            raise InvalidEvent("out_of_range", f"{spec.name} must not contain control characters")


def _event(kind: str, data: dict[str, Any], latest_us: int, oldest_us: int, oldest_ticket_us: int) -> Event:
    """The Event of a topic ``kind``'s value: its fields (SPECS), then the timestamp, future (after
    ``latest_us``), too old (before ``oldest_us``; a ticket before ``oldest_ticket_us``; never a
    customer), the field a review kind needs (CONDITIONAL). Fields of other topics are None."""
    _check_fields(SPECS[kind], data)
    at = data["occurred_at"]
    at_us = fast_timestamp_us(at)
    if at_us is None:
        at_us = slow_timestamp_us(at)
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
