"""The wire contract as data: the topic kinds, the dead-letter reasons, and each field's rules.

One table (``SPECS``) drives validation (``stream.events``), the documentation and the
published JSON Schemas (``stream.schemas``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CONDITIONAL", "CONTROL", "KINDS", "NAME_MAX", "REASONS", "REVIEW_KINDS", "SPECS", "STATUSES", "TEXT_MAX",
           "Field", "largest_valid_bytes"]

KINDS = ("review", "referral", "ticket", "customer")
#: every dead-letter reason (label values of advocacy_dead_letters_total)
REASONS = ("invalid_json", "invalid_encoding", "not_an_object", "missing_field", "wrong_type", "out_of_range",
           "invalid_timestamp", "future_timestamp", "too_old", "too_large", "unprocessable", "customer_cap")
REVIEW_KINDS = ("review", "testimonial", "case_study", "survey", "social")
STATUSES = ("active", "churned")
#: segment and team are label names: no control characters (C0, DEL, C1)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
NAME_MAX = 128  # segment and team: label names
TEXT_MAX = 2048  # source, channel, referee_id, agent_id, ticket_id: free text (a URL in source is normal)


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
SPECS: dict[str, tuple[Field, ...]] = {
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
CONDITIONAL = {"review": "rating", "survey": "nps"}


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
