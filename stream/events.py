"""Validation: turn one message value into a valid ``Event`` or an ``InvalidEvent``.

``parse`` runs once per message, so it is specialised once, at import, from the contract's
tables (``stream.contract``): one straight-line checker per topic kind, generated from
``SPECS``: no loop over Field objects, the same checks in the same order with the same
messages. tests/unit/test_events.py checks it against the plain reading of the tables (same
Event, or the same reason and detail), so keep the two in step. Timestamps are read by
``stream.timestamps``.

Why generated code (issue 14 asks for readable code unless the benchmark demands otherwise):
measured 2026-11-30 with callgrind (tests/bench/instructions.py), a readable loop over ``SPECS``
costs 32,300 instructions an event against 26,500 for these checkers (+22%); compiled with mypyc
the loop would cost 17,200, but the compiled hot path was not adopted (docs/benchmarks-notes.md,
"The compiled hot path"). Replace them when parse is compiled or the loop is as fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson

from stream.contract import CONDITIONAL, CONTROL, SPECS, Field
from stream.errors import InvalidEvent
from stream.event import Event
from stream.timestamps import fast_timestamp_us, slow_timestamp_us

__all__ = ["Checker", "parse"]


def _field_source(spec: Field, v: str) -> list[str]:
    """Source lines checking ``spec`` on local ``v``: missing (None, and required; None is absent
    otherwise), type (exactly: bool is not an int), choices, the length or value range, then (label
    names) control characters."""
    name = spec.name
    lines = [f"    {v} = get({name!r})"]

    def check(pad: str, condition: str, reason: str, detail: str) -> None:
        lines.extend((f"{pad}if {condition}:", f"{pad}    raise InvalidEvent({reason!r}, {detail!r})"))

    if spec.required:
        check("    ", f"{v} is None", "missing_field", f"{name} is required")
        pad = "    "
    else:
        lines.append(f"    if {v} is not None:")
        pad = "        "
    check(pad, f"type({v}) is not {spec.type.__name__}", "wrong_type", f"{name} must be {spec.type.__name__}")
    if spec.choices is not None:  # a set display: compiled to a constant frozenset
        check(pad, f"{v} not in {set(spec.choices)!r}", "out_of_range",
              f"{name} must be one of {', '.join(spec.choices)}")
    if issubclass(spec.type, str):
        size = f"len({v})"
    elif issubclass(spec.type, int):
        size = v
    else:  # pragma: no cover - SPECS only holds str and int fields
        return lines
    if spec.min is not None and spec.max is not None:
        bounds = f"not {spec.min!r} <= {size} <= {spec.max!r}"
    elif spec.min is not None or spec.max is not None:
        bounds = f"{size} < {spec.min!r}" if spec.min is not None else f"{size} > {spec.max!r}"
    else:
        return lines
    what = "length" if spec.type is str else "value"
    check(pad, bounds, "out_of_range", f"{name} {what} must be in {spec.min}..{spec.max}")
    if spec.label:
        check(pad, f"_control({v}) is not None", "out_of_range", f"{name} must not contain control characters")
    return lines


def _checker_source(kind: str) -> str:
    """Python source of ``check_<kind>(data, latest_us, oldest_us, oldest_ticket_us) -> Event``.

    The checks of the plain reading of the tables: each field of SPECS[kind] in order
    (``_field_source``), then the timestamp, future (after ``latest_us``), too old (before
    ``oldest_us``; a ticket before ``oldest_ticket_us``; never a customer), the field a review
    kind needs (CONDITIONAL), and the Event.
    """
    specs = SPECS[kind]
    var = {spec.name: f"v{i}" for i, spec in enumerate(specs)}
    lines = [f"def check_{kind}(data, latest_us, oldest_us, oldest_ticket_us):", "    get = data.get"]
    for spec in specs:
        lines += _field_source(spec, var[spec.name])

    def value(name: str) -> str:
        return var.get(name, f"get({name!r})")

    def check(condition: str, reason: str, detail: str) -> None:
        lines.extend((f"    if {condition}:", f"        raise InvalidEvent({reason!r}, {detail!r})"))

    at = var["occurred_at"]
    lines += [f"    at_us = fast_timestamp_us({at})", "    if at_us is None:",
              f"        at_us = slow_timestamp_us({at})"]
    check("at_us > latest_us", "future_timestamp", "occurred_at is more than the allowed tolerance ahead")
    if kind == "ticket":  # a ticket still credits actions inside the longest window
        check("at_us < oldest_ticket_us", "too_old",
              "occurred_at is older than the longest window plus the attribution window")
    elif kind != "customer":
        check("at_us < oldest_us", "too_old", "occurred_at is older than the longest window")
    if kind == "review":
        for review_kind, needed in CONDITIONAL.items():
            check(f"{value('kind')} == {review_kind!r} and {value(needed)} is None", "missing_field",
                  f"{needed} is required when kind={review_kind}")
    # Event fields: kind, then what the topic carries; fields of other topics are None
    only = {"review_kind": "review", "rating": "review", "nps": "review", "team": "ticket", "status": "customer"}
    source = {"kind": repr(kind), "event_id": value("event_id"), "customer_id": value("customer_id"),
              "at_us": "at_us", "segment": value("segment"), "review_kind": value("kind"),
              "rating": value("rating"), "nps": value("nps"), "team": value("team"), "status": value("status")}
    args = {f.name: source[f.name] if only.get(f.name, kind) == kind else "None" for f in fields(Event)}
    lines.append(f"    return Event({', '.join(args.values())})")
    return "\n".join(lines) + "\n"


Checker = Callable[[dict[str, Any], int, int, int], Event]


def _checkers() -> dict[str, Checker]:
    """One generated checker per kind in SPECS (``_checker_source``)."""
    namespace: dict[str, Any] = {"InvalidEvent": InvalidEvent, "Event": Event, "_control": CONTROL.search,
                                 "fast_timestamp_us": fast_timestamp_us, "slow_timestamp_us": slow_timestamp_us}
    namespace |= {spec.type.__name__: spec.type for specs in SPECS.values() for spec in specs}  # str, int
    for kind in SPECS:
        source = _checker_source(kind)
        exec(compile(source, f"<stream.events check_{kind}>", "exec"), namespace)  # noqa: S102
    return {kind: namespace[f"check_{kind}"] for kind in SPECS}


_CHECKERS = _checkers()


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
    return _CHECKERS[kind](data, now_us + future_tolerance_ms * 1000, oldest_us, oldest_us - attribution_ms * 1000)
