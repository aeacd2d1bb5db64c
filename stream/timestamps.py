"""RFC 3339 timestamps with an offset -> exact integer epoch microseconds.

``parse_timestamp_us`` runs once per message: valid timestamps of the usual shape are read
from three parts, each looked up in a small table (minute, second, fraction+offset); on any
doubt (a leap second too) the definition, ``slow_timestamp_us``, decides and gives the very
same error. The tables only ever hold validated parts, and are emptied when they reach
``_CACHE_LIMIT`` entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from stream.errors import InvalidEvent

__all__ = ["RFC3339", "fast_timestamp_us", "parse_timestamp_us", "slow_timestamp_us"]

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")


def parse_timestamp_us(text: str) -> int:
    """RFC 3339 with an offset -> epoch microseconds (more fractional digits are cut)."""
    if type(text) is str:
        at_us = fast_timestamp_us(text)
        if at_us is not None:
            return at_us
    return slow_timestamp_us(text)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def slow_timestamp_us(text: str) -> int:
    """The definition: the RFC 3339 pattern, then ``datetime.fromisoformat``, exact integer microseconds.
    Raises for any invalid value.

    A leap second (``23:59:60`` in UTC, RFC 3339 section 5.7) is the last microsecond of that
    minute's second 59: never before a time of that minute, never after the next minute.
    """
    if not RFC3339.match(text):
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


_CACHE_LIMIT = 65_536  # entries per table
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SIXTY = {f"{n:02d}": n for n in range(60)}  # seconds 00-59 (a leap second, 60, takes the slow path)
# what may follow "YYYY-MM-DDTHH:MM:SS" (ASCII digits only: fromisoformat rejects other digits)
_TAIL = re.compile(r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])(2[0-3]|[01][0-9]):([0-5][0-9]))\Z")
_MINUTES: dict[str, int] = {}  # valid "YYYY-MM-DD[Tt ]HH:MM" -> its epoch seconds read as UTC
_TAILS: dict[str, int] = {}  # valid "[.fraction](Z|+HH:MM|-HH:MM)" -> microseconds to add (fraction - offset)


def _look_up(table: dict[str, int], key: str, read: Callable[[str], int | None]) -> int | None:
    """``read(key)``, remembered in ``table`` when valid (the table is emptied at its limit)."""
    value = table.get(key)
    if value is None:
        value = read(key)
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


def fast_timestamp_us(text: str) -> int | None:
    """Epoch us of a valid timestamp of the usual shape, exactly as ``slow_timestamp_us``; else None."""
    minute = _look_up(_MINUTES, text[:16], _minute_seconds)
    if minute is None:
        return None
    second = _SIXTY.get(text[17:19])
    if second is None or text[16] != ":":  # a second found: text has at least 19 characters
        return None
    micros = _look_up(_TAILS, text[19:], _tail_micros)
    if micros is None:
        return None
    return (minute + second) * 1_000_000 + micros
