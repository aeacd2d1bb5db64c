"""Property: ``stream.events.parse`` accepts exactly the contract's valid events, or names a reason."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.errors import InvalidEvent
from stream.events import parse
from tests.reliability.contract import REASONS, RULES, VALID, judge, timestamp_us

NOW_MS = 1_795_442_700_000  # 2026-11-23T14:05:00Z
LONGEST_MS = 90 * 86_400_000
ATTRIBUTION_MS = 7 * 86_400_000
TOLERANCE_MS = 300_000
MAX_BYTES = 4096
EXAMPLES = int(os.environ.get("RELIABILITY_PARSE_EXAMPLES", "10000"))
TOPICS = tuple(RULES)
SURROGATES = ["\ud800", "\udfff", "a\udc00b"]
DROP = object()

# --- occurred_at ------------------------------------------------------------------------------

# the future limit is now + tolerance, the too-old limits now - longest window (reviews, referrals) and
# now - longest - attribution window (tickets): probe both sides of each
_STEPS = [0, 1, 2, 1000, 60_000, 3_600_000, 86_400_000]
_EDGES = [0, -1, *(TOLERANCE_MS + d for d in _STEPS), *(TOLERANCE_MS - d for d in _STEPS),
          *(-LONGEST_MS + d for d in _STEPS), *(-LONGEST_MS - d for d in _STEPS),
          *(-LONGEST_MS - ATTRIBUTION_MS + d for d in _STEPS), *(-LONGEST_MS - ATTRIBUTION_MS - d for d in _STEPS)]


def _format(instant_ms: int, offset_minutes: int, digits: str, sep: str, zulu: str) -> str:
    local = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=instant_ms + offset_minutes * 60_000)
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + digits
    if offset_minutes == 0 and zulu:
        return text + zulu
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


ANY_DELTA = st.one_of(st.sampled_from(_EDGES), st.integers(-3 * LONGEST_MS, 3 * TOLERANCE_MS),
                      st.integers(-(10**13), 10**11))
FAIR_DELTA = st.one_of(st.sampled_from([TOLERANCE_MS - 1000, -LONGEST_MS + 1000, 0]),
                       st.integers(-LONGEST_MS + 1000, TOLERANCE_MS - 1000))


@st.composite
def instants(draw: st.DrawFn, deltas: st.SearchStrategy[int] = ANY_DELTA) -> str:
    """A well-formed timestamp of an instant ``now + delta``, in a random offset and precision."""
    delta = draw(deltas)
    offset = draw(st.sampled_from([0, 0, 0, 60, -300, 330, 23 * 60 + 59, -(23 * 60 + 59)]))
    instant = NOW_MS + delta
    ms = instant % 1000
    digits = draw(st.sampled_from(["", f"{ms:03d}", f"{ms:03d}456", f"{ms:03d}456789", f"{ms // 100}",
                                   f"{ms:03d}000001", f"{ms:03d}999999999"]))
    if digits == "":
        instant -= ms
    elif len(digits) == 1:
        instant -= ms % 100
    return _format(instant, offset, digits, draw(st.sampled_from("T T t")), draw(st.sampled_from(["Z", "z", ""])))


@st.composite
def shaped(draw: st.DrawFn) -> str:
    """Right shape, any numbers: Feb 30, hour 24, second 60, offset +24:00, year 0000."""
    y, mo, d = draw(st.integers(0, 9999)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    h, mi, s = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    tail = draw(st.sampled_from(["Z", "+00:00", "-24:00", "+23:60", "+05:30", "", "+0530", "Z\n", " Z"]))
    frac = draw(st.sampled_from(["", ".5", ".1234567890", "."]))
    if draw(st.integers(0, 9)) == 0:  # a leap second, valid only at 23:59:60 UTC
        h, mi, s = draw(st.sampled_from([(23, 59, 60), (0, 59, 60), (22, 59, 60), (23, 58, 60)]))
        tail = draw(st.sampled_from(["Z", "+01:00", "-01:00", "+00:00"]))
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{tail}"


stamps = st.one_of(instants(), instants(), shaped(), st.text(max_size=30),
                   st.sampled_from(["2026-11-23", "yesterday", "2026-11-23T14:03:00", "1795442580",
                                    "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0663T14:03:00Z",
                                    "2026-11-23T14:03:00Z\n"]))

# --- other values ---------------------------------------------------------------------------------

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
hostile_values = st.one_of(
    json_values,
    st.sampled_from([4.0, 5.0, True, False, "5", "", [], {}, [5], {"value": 5}, 10**19, -(2**63) - 1, 10**400,
                     float("nan"), float("inf"), -float("inf"), 2**64, -0.0, *SURROGATES]),
    st.builds(lambda n, c: c * n, st.integers(120, 3000), st.sampled_from(["x", "é", "\U0001f600", "\x00", "\x85"])),
)


def valid_value(name: str) -> st.SearchStrategy[Any]:
    kind, _, low, high, choices = RULES_BY_NAME[name]
    if name == "occurred_at":
        return stamps
    if choices is not None:
        return st.one_of(st.sampled_from(choices), st.sampled_from(choices), st.text(max_size=12))
    if kind is int:
        assert low is not None
        assert high is not None
        return st.integers(low - 2, high + 2)
    assert high is not None
    edge = st.builds(lambda n, c: c * n, st.sampled_from([max(0, (low or 0) - 1), low or 0, 1, high, high + 1]),
                     st.sampled_from(["a", "é", "\U0001f600", "\x00", "|", ":", "\n", "\x9f", "\U0010ffff"]))
    return st.one_of(st.text(min_size=low or 0, max_size=24), edge)


def clean_value(name: str) -> st.SearchStrategy[Any]:
    kind, _, low, high, choices = RULES_BY_NAME[name]
    if name == "occurred_at":
        return instants(st.one_of(FAIR_DELTA, FAIR_DELTA, st.sampled_from(_EDGES)))
    if choices is not None:
        return st.sampled_from(choices)
    assert low is not None
    assert high is not None
    if kind is int:
        return st.integers(low, high)
    exact = st.builds(lambda n, c: c * n, st.sampled_from([low, high]), st.sampled_from(["a", "é", "\U0001f600"]))
    return st.one_of(st.text(min_size=low, max_size=min(high, 24)), exact)


RULES_BY_NAME = {name: rule for topic in RULES.values() for name, rule in topic.items()}
VALUES = {name: valid_value(name) for name in RULES_BY_NAME}
CLEAN = {name: clean_value(name) for name in RULES_BY_NAME}
OPTIONAL = st.sampled_from(["absent", "null", "clean", "clean"])
HOW = st.sampled_from(["valid"] * 8 + ["absent", "null", "hostile"])
MUTATION = st.sampled_from(["none"] * 12 + ["truncate", "byte", "random", "array", "bom", "utf16", "nest", "deep",
                            "pad", "tombstone", "nan", "dupkey"])


@st.composite
def payloads(draw: st.DrawFn, topic: str) -> bytes | None:
    """A value for ``topic``: a clean event, a clean event with one field spoilt, or a messy one."""
    mode = draw(st.sampled_from(["clean", "clean", "one-off", "one-off", "messy"]))
    data: dict[str, Any] = {}
    for name, (_, required, *_) in RULES[topic].items():
        how = draw(HOW) if mode == "messy" else "clean" if required else draw(OPTIONAL)
        if how == "clean":
            data[name] = draw(CLEAN[name])
        elif how == "valid":
            data[name] = draw(VALUES[name])
        elif how == "null":
            data[name] = None
        elif how == "hostile":
            data[name] = draw(hostile_values)
    if topic == "review" and mode != "messy":  # the field the drawn kind needs
        needs = {"review": "rating", "survey": "nps"}.get(data["kind"])
        if needs:
            data[needs] = draw(CLEAN[needs])
    elif topic == "review" and draw(st.booleans()):
        data.setdefault("rating", draw(st.integers(0, 6)))
        data.setdefault("nps", draw(st.integers(-1, 11)))
    if mode == "one-off":  # exactly one field spoilt (or dropped): its check alone decides
        name = draw(st.sampled_from(sorted(RULES[topic])))
        spoilt = draw(st.one_of(VALUES[name], hostile_values, st.just(DROP)))
        if spoilt is DROP:
            data.pop(name, None)
        else:
            data[name] = spoilt
    for _ in range(draw(st.integers(0, 2))):
        data[draw(st.text(max_size=8))] = draw(json_values)
    items = list(data.items())
    if draw(st.booleans()):
        items.reverse()
    text = json.dumps(dict(items), allow_nan=True, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8
    if mode != "messy" and draw(st.integers(0, 3)) > 0:
        return raw
    return mutate(draw, raw)


def mutate(draw: st.DrawFn, raw: bytes) -> bytes | None:
    how = draw(MUTATION)
    if how == "none":
        return raw
    if how == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "byte":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at:]
    if how == "random":
        return draw(st.binary(max_size=64))
    if how == "array":
        return b"[" + raw + b"]"
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "utf16":
        return raw.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    if how == "nest":  # nested inside an extra field: still a valid object
        return raw[:-1] + b', "deep": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}" if raw.endswith(b"}") else raw
    if how == "deep":
        depth = draw(st.integers(1100, 3000))
        return b'{"x":' + b"[" * depth + b"]" * depth + b"}"
    if how == "pad":
        return raw[:-1] + b', "pad": "' + b"x" * MAX_BYTES + b'"}' if raw.endswith(b"}") else raw * 200
    if how == "tombstone":
        return None
    if how == "nan":
        return raw.replace(b"1", b"NaN", 1) if b"1" in raw else b'{"rating": Infinity}'
    # a duplicate key: the last one wins in both readings
    return raw[:-1] + b', "event_id": 7}' if raw.endswith(b"}") else raw


def _check(topic: str, raw: bytes | None) -> str:
    """Run one case; return its outcome (a reason, or VALID)."""
    verdict = judge(topic, raw, NOW_MS, longest_window_ms=LONGEST_MS, attribution_ms=ATTRIBUTION_MS,
                    future_tolerance_ms=TOLERANCE_MS, max_bytes=MAX_BYTES)
    try:
        event = parse(topic, raw, NOW_MS, longest_window_ms=LONGEST_MS, attribution_ms=ATTRIBUTION_MS,
                      future_tolerance_ms=TOLERANCE_MS, max_bytes=MAX_BYTES)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.reason in verdict.allowed, f"reason {exc.reason!r} ({exc.detail}); allowed {verdict.allowed}"
        return exc.reason
    assert VALID in verdict.allowed, f"accepted, but the contract says {verdict.allowed}"
    data = verdict.fields
    assert event.kind == topic
    assert (event.event_id, event.customer_id) == (data["event_id"], data["customer_id"])
    assert event.at_us == verdict.at_us, (event.at_us, verdict.at_us)  # exact, to the microsecond
    assert event.segment == data.get("segment")
    assert event.review_kind == (data["kind"] if topic == "review" else None)
    assert event.rating == (data.get("rating") if topic == "review" else None)
    assert event.nps == (data.get("nps") if topic == "review" else None)
    assert event.team == (data["team"] if topic == "ticket" else None)
    assert event.status == (data["status"] if topic == "customer" else None)
    return VALID


OUTCOMES: Counter[tuple[str, str]] = Counter()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def _property(data: st.DataObject) -> None:
    topic = data.draw(st.sampled_from(TOPICS), label="topic")
    raw = data.draw(payloads(topic), label="raw")
    OUTCOMES[(topic, _check(topic, raw))] += 1


def test_parse_accepts_valid_events_and_rejects_the_rest_with_a_documented_reason() -> None:
    """Any value on any topic parses to a matching Event or raises InvalidEvent with an allowed reason."""
    OUTCOMES.clear()
    _property()
    per_topic = {t: sum(n for (topic, _), n in OUTCOMES.items() if topic == t) for t in TOPICS}
    reasons: Counter[str] = Counter()
    for (_, reason), n in OUTCOMES.items():
        reasons[reason] += n
    print(f"parse property: {sum(OUTCOMES.values())} cases, per topic {per_topic}, outcomes {dict(reasons)}")
    # the generator must reach both sides of the contract on every topic, or the property is vacuous
    for topic in TOPICS:
        assert OUTCOMES[(topic, VALID)] >= EXAMPLES // 100, (topic, OUTCOMES)
        assert per_topic[topic] - OUTCOMES[(topic, VALID)] >= EXAMPLES // 20, (topic, OUTCOMES)
    assert set(reasons) == (REASONS - {"unprocessable"}) | {VALID}, reasons


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-23T14:03:00Z", 1_795_442_580_000_000),
    ("2026-11-23t14:03:00.5+01:00", 1_795_442_580_500_000 - 3_600_000_000),
    ("2026-11-23 14:03:00.123456789-00:30", 1_795_442_580_123_456 + 1_800_000_000),
    ("2026-11-23T14:03:00.0001Z", 1_795_442_580_000_100),
    ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),
    ("2016-12-31T23:59:60Z", 1_483_228_799_999_999), ("2016-12-31T23:59:60.5Z", 1_483_228_799_999_999),
    ("2017-01-01T00:59:60+01:00", 1_483_228_799_999_999), ("2016-12-31T22:59:60Z", None),
    ("2026-02-29T00:00:00Z", None), ("2026-11-23T24:00:00Z", None), ("2026-11-23T14:03:60Z", None),
    ("0000-01-01T00:00:00Z", None), ("2026-11-23T14:03:00+24:00", None), ("2026-11-23T14:03:00", None),
    ("\u0662\u0660\u0662\u0666-11-23T14:03:00Z", None),
])
def test_reference_timestamps_match_hand_computed_values(text: str, expected: int | None) -> None:
    """The property's own timestamp reading is right on hand-checked cases (date -u -d @...)."""
    assert timestamp_us(text) == expected


@pytest.mark.parametrize(("topic", "raw", "allowed"), [
    ("review", b'{"event_id":"a","customer_id":"c","occurred_at":"2026-11-23T14:03:00Z","kind":"review"}',
     {"missing_field"}),
    ("review", (b'{"event_id":"a","customer_id":"c","occurred_at":"2026-11-23T14:03:00Z","kind":"review",'
               b'"rating":4.0}'), {"wrong_type"}),
    ("ticket", (b'{"event_id":"a","customer_id":"c","occurred_at":"2026-11-23T14:03:00Z","team":"b",'
               b'"ticket_id":"T","agent_id":null}'), {VALID}),
    ("referral", b'{"event_id":"a","customer_id":"c","occurred_at":"2026-11-23T14:20:00Z"}', {"future_timestamp"}),
    ("referral", b'{"event_id":"a","customer_id":"c","occurred_at":"2026-01-23T14:20:00Z"}', {"too_old"}),
    ("ticket", (b'{"event_id":"a","customer_id":"c","occurred_at":"2026-08-21T14:03:00Z","team":"b",'
               b'"ticket_id":""}'), {VALID}),  # 94 days old: within 90 d + 7 d
    ("ticket", (b'{"event_id":"a","customer_id":"c","occurred_at":"2026-08-17T14:03:00Z","team":"b",'
               b'"ticket_id":"T"}'), {"too_old"}),
    ("review", b'{"event_id":"a","customer_id":"c","occurred_at":"2026-11-23T14:03:00Z","kind":"social",'
               b'"source":"' + b"s" * 2048 + b'"}', {VALID}),
    ("review", (b'{"event_id":"a","customer_id":"c","occurred_at":"2026-11-23T14:03:00Z","kind":"social",'
               b'"segment":"a\\u0085b"}'), {"out_of_range"}),
    ("customer", (b'{"event_id":"a","customer_id":"c","occurred_at":"2006-01-23T14:20:00Z","segment":"s",'
                 b'"status":"active"}'), {VALID}),
    ("customer", b'{"rating": NaN}', {"invalid_json"}),
    ("customer", b'["\\ud800"]', {"invalid_json"}),
    # a lone surrogate in a value a later duplicate key replaces: the decoder still reads it (found by the property)
    ("referral", b'{"event_id": "\\ud800", "referee_id": "", "channel": "", "event_id": 7}', {"invalid_json"}),
    ("customer", b'"\xff"', {"invalid_encoding"}),
    ("customer", b"[1]", {"not_an_object"}),
    ("customer", None, {"invalid_json"}),
])
def test_reference_judge_on_hand_picked_cases(topic: str, raw: bytes | None, allowed: set[str]) -> None:
    """The property's reference verdicts are right on cases read off CONTRACT.md section 2."""
    assert judge(topic, raw, NOW_MS, longest_window_ms=LONGEST_MS, attribution_ms=ATTRIBUTION_MS,
                 future_tolerance_ms=TOLERANCE_MS,
                 max_bytes=MAX_BYTES).allowed == allowed
