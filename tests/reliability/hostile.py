"""Seeded hostile message values per topic, and valid-but-odd events that must still count.

Every hostile value is checked against the independent contract reading
(``contract.judge``) when it is made: it must be invalid, and the reasons it may be
dead-lettered with are kept next to it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from tests.reliability.bulk import DAY, HOUR, iso
from tests.reliability.contract import VALID, judge

LONGEST_MS = 90 * DAY * 1000
ATTRIBUTION_MS = 7 * DAY * 1000
TOLERANCE_MS = 300_000
ODD_SEGMENTS = ["Ünïcödé", "seg:colon", "seg|pipe", "seg with spaces", "🙂 emoji", "s" * 128, 'quote"seg']
ODD_TEAMS = ["team:ü", "🛠 support", "back\\slash", "t" * 128]
ODD_CUSTOMERS = ["ü-客户-1", "c\u0000nul", "emoji-🙂", "x" * 125, "sp ace", "colon:id", "pipe|id", 'quote"id',
                 "עברית", "new\nline", "'; DROP TABLE customers; --", "{app}:c:nested"]


@dataclass(frozen=True)
class Hostile:
    kind: str  # logical topic
    category: str
    raw: bytes | None
    allowed: frozenset[str]  # acceptable dead-letter reasons


def _base(kind: str, rng: random.Random, now: float, n: int) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": f"h{n:06d}", "customer_id": f"cust-{rng.randint(0, 50):06d}",
                             "occurred_at": iso(now - rng.uniform(2 * HOUR, 20 * HOUR))}
    if kind == "review":
        event.update(kind="review", rating=5)
    elif kind == "ticket":
        event.update(ticket_id="T1", team="billing")
    elif kind == "customer":
        event.update(segment="smb", status="active")
    return event


def _dump(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


STRINGS = {"review": ["source"], "referral": ["channel", "referee_id"], "ticket": ["team", "ticket_id", "agent_id"],
           "customer": []}
CATEGORIES = {  # category -> weight
    "oversized": 4, "deep": 4, "huge_string": 8, "nan": 6, "bad_utf8": 10, "wrong_type": 15, "random_bytes": 10,
    "not_object": 5, "missing": 10, "out_of_range": 8, "bad_timestamp": 8, "time_limits": 6, "tombstone": 2,
    "escapes": 4,
}


def _spoil(category: str, kind: str, event: dict[str, Any], rng: random.Random, now: float,
           max_bytes: int) -> bytes | None:
    fields = [f for f in event if f != "event_id"] or ["customer_id"]
    if category == "oversized":
        event["pad"] = "x" * rng.randint(max_bytes + 1, max_bytes + 8192)
        return _dump(event)
    if category == "deep":
        depth = rng.randint(1100, 5000)
        if rng.random() < 0.5:
            return b"[" * depth + b"]" * depth
        event[rng.choice(fields)] = json.loads("[" * 200 + "]" * 200)  # a structure where a scalar belongs
        return _dump(event)
    if category == "huge_string":  # names and ids take 128 characters, free text 2,048
        name = rng.choice(["event_id", "customer_id", "segment", *STRINGS[kind]])
        low = 257 if name in ("event_id", "customer_id", "segment", "team") else 2049
        event[name] = rng.choice("xé🙂") * rng.randint(low, min(max_bytes // 5, 3 * low))
        return _dump(event)
    if category == "nan":
        literal = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
        name = rng.choice(["rating", "nps", "occurred_at", "event_id", "extra"])
        text = _dump(event).decode()
        return (text[:-1] + f', "{name}": {literal}}}').encode()
    if category == "bad_utf8":
        junk = rng.choice([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80",
                           b"\x80"])
        raw = _dump(event)
        at = raw.index(b'"', raw.index(b":") + 1) + 1  # inside the first string value
        return raw[:at] + junk + raw[at:]
    if category == "wrong_type":
        name = rng.choice([*fields, "event_id"])
        if name in ("rating", "nps"):
            event[name] = rng.choice([4.0, True, "5", ["x"], {"v": 1}, -1.5])
        else:
            event[name] = rng.choice([4.0, True, 5, ["x"], {"v": 1}, 1795442580, -1.5])
        return _dump(event)
    if category == "random_bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    if category == "not_object":
        return rng.choice([b"[]", b"[1,2]", b'"text"', b"42", b"null", b"true", b"", b" ", b"{", b"}"])
    if category == "missing":
        required = {"review": ["event_id", "customer_id", "occurred_at", "kind", "rating"],
                    "referral": ["event_id", "customer_id", "occurred_at"],
                    "ticket": ["event_id", "customer_id", "occurred_at", "ticket_id", "team"],
                    "customer": ["event_id", "customer_id", "occurred_at", "segment", "status"]}[kind]
        name = rng.choice(required)
        if rng.random() < 0.5:
            del event[name]
        else:
            event[name] = None
        return _dump(event)
    if category == "out_of_range":
        choice = rng.choice(["empty_id", "long_id", "value", "control"])
        if choice == "empty_id":
            event[rng.choice(["event_id", "customer_id"])] = ""
        elif choice == "long_id":
            event["customer_id"] = "c" * 129
        elif choice == "control":  # a label name with a control character
            event["team" if kind == "ticket" else "segment"] = rng.choice(["a\nb", "\x00", "tab\t", "\x9b", "\x7f"])
        elif kind == "review":
            event.update(rng.choice([{"rating": 0}, {"rating": 6}, {"kind": "survey", "nps": 11},
                                     {"kind": "survey", "nps": -1}, {"kind": "tweet"}]))
        elif kind == "customer":
            event["status"] = rng.choice(["paused", "ACTIVE", ""])
        else:
            event["segment"] = ""
        return _dump(event)
    if category == "bad_timestamp":
        event["occurred_at"] = rng.choice([
            "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-11-23T25:00:00Z",
            "2026-11-23T14:03:60Z", "2026-11-23T14:03:00", "2026-11-23", "2026-11-23T14:03:00+24:00",
            "0000-01-01T00:00:00Z", "2026/11/23 14:03:00Z", "",
            "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0663T14:03:00Z", "2026-11-23T14:03:00.Z"])
        return _dump(event)
    if category == "time_limits":
        if kind == "customer" or rng.random() < 0.5:
            event["occurred_at"] = iso(now + rng.uniform(1 * HOUR, 400 * DAY))  # future
        else:
            oldest = 97 if kind == "ticket" else 90  # a ticket matters for 90 d + the 7 d attribution window
            event["occurred_at"] = iso(now - rng.uniform((oldest + 2) * DAY, 5 * 365 * DAY))
        return _dump(event)
    if category == "tombstone":
        return None
    # escapes: a lone surrogate or a raw control character inside a string
    text = _dump(event).decode()
    at = text.index('"', text.index(":") + 1) + 1
    return (text[:at] + rng.choice(["\\ud800", "\\udfff", "\\ud83d\\u0041", "\x00", "\x1f", "\n"]) + text[at:]).encode()


def hostile(kinds: list[str], per_kind: int, seed: int, now: float, max_bytes: int) -> list[Hostile]:
    """``per_kind`` invalid values for each logical topic, each with its acceptable reasons."""
    rng = random.Random(seed)
    names, weights = list(CATEGORIES), list(CATEGORIES.values())
    out = []
    n = 0
    for kind in kinds:
        for _ in range(per_kind):
            n += 1
            category = rng.choices(names, weights)[0]
            raw = _spoil(category, kind, _base(kind, rng, now, n), rng, now, max_bytes)
            verdict = judge(kind, raw, int(now * 1000), longest_window_ms=LONGEST_MS, attribution_ms=ATTRIBUTION_MS,
                            future_tolerance_ms=TOLERANCE_MS, max_bytes=max_bytes)
            assert VALID not in verdict.allowed, (category, kind, raw[:200] if raw else raw)
            out.append(Hostile(kind, category, raw, frozenset(verdict.allowed)))
    return out


def odd_but_valid(seed: int, now: float, count: int, max_bytes: int) -> list[tuple[str, dict[str, Any], bytes]]:
    """Valid events in unusual but legal shapes: odd ids and names, offsets, precision, extra fields."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any], bytes]] = []
    for n in range(count):
        customer = rng.choice(ODD_CUSTOMERS) + f"-{n % 7}"
        age = rng.choice([rng.uniform(2 * HOUR, 20 * HOUR), rng.uniform(2 * DAY, 6 * DAY)])
        kind = rng.choice(["review", "referral", "ticket", "customer"])
        event: dict[str, Any] = {"event_id": f"odd-{n}-{rng.choice(['é', '🙂', '|', ':', ' '])}",
                                 "customer_id": customer, "occurred_at": _odd_time(now - age, rng)}
        if kind == "review":
            event.update(kind=rng.choice(["testimonial", "social", "case_study"]), rating=None,
                         source=rng.choice(["", "g2", "ü" * 256, "https://x.example/" + "ü" * 2030]))
        elif kind == "referral":
            event.update(referee_id="", channel=rng.choice([None, "c" * 2048]))
        elif kind == "ticket":
            event.update(ticket_id=rng.choice(["T" * 128, "T" * 2048, "", "\U0010ffff" * 3]),
                         team=rng.choice(ODD_TEAMS), agent_id=None)
        else:
            event.update(segment=rng.choice(ODD_SEGMENTS), status=rng.choice(["active", "churned"]))
            event["occurred_at"] = _odd_time(now - rng.uniform(40 * DAY, 300 * DAY), rng)
        if kind in ("review", "referral") and rng.random() < 0.3:
            event["segment"] = rng.choice(ODD_SEGMENTS)
        event["extra"] = {"nested": json.loads("[" * 40 + "{}" + "]" * 40), "n": 10**30, "f": -0.0}
        items = list(event.items())
        rng.shuffle(items)
        raw = json.dumps(dict(items), ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2])).encode()
        verdict = judge(kind, raw, int(now * 1000), longest_window_ms=LONGEST_MS, attribution_ms=ATTRIBUTION_MS,
                        future_tolerance_ms=TOLERANCE_MS, max_bytes=max_bytes)
        assert verdict.must_accept, (verdict.allowed, raw[:300])
        out.append((kind, event, raw))
    return out


def _odd_time(at: float, rng: random.Random) -> str:
    """The same instant in another legal RFC 3339 spelling (offset, separator, precision)."""
    from datetime import UTC, datetime, timedelta, timezone

    offset = rng.choice([0, 330, -300, 23 * 60 + 59, -(23 * 60 + 59)])
    local = datetime.fromtimestamp(round(at, 3), UTC).astimezone(timezone(timedelta(minutes=offset)))
    text = local.strftime("%Y-%m-%d") + rng.choice("Tt ") + local.strftime("%H:%M:%S")
    text += "." + f"{local.microsecond // 1000:03d}" + rng.choice(["", "000", "000000"])
    if offset == 0 and rng.random() < 0.5:
        return text + rng.choice("Zz")
    sign = "+" if offset >= 0 else "-"
    return text + f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
