"""The published contract: one JSON Schema (draft 2020-12) per topic, generated from ``SPECS``.

``python -m stream schemas --out schemas/`` writes them; a test regenerates them and
compares with the committed files, so the schemas cannot drift from ``stream.contract``.
What a schema cannot say (clock-relative timestamps, message size, calendar validity,
``4.0`` versus ``4``) is listed in ``schemas/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stream import timestamps
from stream.config import SOURCES
from stream.contract import CONDITIONAL, SPECS, Field

__all__ = ["DESCRIPTIONS", "DIALECT", "TITLES", "TOPIC_KINDS", "files", "render", "run", "schema", "stale", "write"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# logical topic name (docs/contract.md section 2, the default topic names) -> kind of SPECS
TOPIC_KINDS = {t.default: t.kind for t in SOURCES}
TITLES = {
    "review": "A review, testimonial, case study, survey answer or social endorsement",
    "referral": "A referral made by a customer",
    "ticket": "A closed support ticket: one support interaction",
    "customer": "A customer's registration (compacted topic; the latest occurred_at wins)",
}
DESCRIPTIONS = {
    "event_id": "Unique per real-world event; a producer's retry re-sends the same id.",
    "customer_id": "The customer; also the message key.",
    "occurred_at": "Event time, RFC 3339 with an offset, e.g. 2026-11-23T14:03:00Z.",
    "segment": "Customer segment; when absent, the segment of the customer's latest registration.",
    "customer.segment": "The customer's segment.",
    "source": "Where the review or endorsement was posted.",
    "kind": "Advocacy actions: testimonial, case_study, social always; review with rating >= 4; "
            "survey with nps >= 9.",
    "rating": "Star rating.",
    "nps": "Net Promoter Score answer; 9 and 10 are promoters.",
    "status": "Only active customers count in the Advocacy Actions rate denominator.",
    "team": "Support team credited when the customer later becomes an advocate.",
}
_JSON_TYPES = {str: "string", int: "integer"}


def _property(kind: str, spec: Field) -> dict[str, Any]:
    out: dict[str, Any] = {}
    description = DESCRIPTIONS.get(f"{kind}.{spec.name}", DESCRIPTIONS.get(spec.name))
    if description:
        out["description"] = description
    json_type = _JSON_TYPES[spec.type]
    # events.parse treats null like an absent field: fine when optional, missing when required
    out["type"] = json_type if spec.required else [json_type, "null"]
    if spec.choices is not None:
        out["enum"] = [*spec.choices] if spec.required else [*spec.choices, None]
    if spec.name == "occurred_at":
        # the very check parse makes first, with ASCII digits as every regex dialect reads them;
        # no "format": date-time, whose validators reject the space separator parse accepts
        out["pattern"] = _ends(timestamps.RFC3339.pattern.replace(r"\d", "[0-9]"))
    if spec.label:  # a label name: no control character (C0, DEL, C1), the check parse makes
        out["pattern"] = _ends("^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
    low, high = ("minLength", "maxLength") if spec.type is str else ("minimum", "maximum")
    if spec.min is not None:
        out[low] = spec.min
    if spec.max is not None:
        out[high] = spec.max
    return out


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind's message value."""
    topic = next(t for t, k in TOPIC_KINDS.items() if k == kind)
    fields = SPECS[kind]
    out: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"urn:advocacy-stream:schema:{topic}",
        "title": f"{topic}: {TITLES[kind]}",
        "description": "Generated from stream.contract.SPECS by `python -m stream schemas`; do not edit. "
                       "Unknown fields are allowed and ignored. See schemas/README.md for the checks "
                       "only the service makes.",
        "type": "object",
        "required": [f.name for f in fields if f.required],
        "properties": {f.name: _property(kind, f) for f in fields},
        "additionalProperties": True,
    }
    if kind == "review":
        out["allOf"] = [
            {
                "if": {"properties": {"kind": {"const": review_kind}}, "required": ["kind"]},
                "then": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
            }
            for review_kind, field in CONDITIONAL.items()
        ]
    return out


def render(kind: str) -> str:
    """The committed text of one schema file."""
    return json.dumps(schema(kind), indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """File name -> content, for every topic."""
    return {f"{topic}.schema.json": render(kind) for topic, kind in TOPIC_KINDS.items()}


def write(out: Path) -> list[Path]:
    """Write every schema under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(out: Path) -> list[str]:
    """Names of the schema files under ``out`` that are missing or differ from the generated ones."""
    return [name for name, text in files().items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]


def run(out: Path, *, check: bool) -> int:
    """``python -m stream schemas``: write the schemas, or with ``check`` only compare them."""
    if check:
        names = stale(out)
        for name in names:
            print(f"{out / name}: out of date; run python -m stream schemas --out {out}")
        return 1 if names else 0
    for path in write(out):
        print(path)
    return 0


def _ends(pattern: str) -> str:
    r"""``pattern`` ending at the end of the text in every dialect: "$" alone also matches before a
    final newline in Python's ``re`` (which Python's JSON Schema validators use), not in ECMA-262
    (JSON Schema's own dialect), so a label "\n" passed one and not the other."""
    return pattern[:-1] + "$(?!\\n)" if pattern.endswith("$") else pattern
