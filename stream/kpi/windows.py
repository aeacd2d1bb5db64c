"""Durations, rolling windows and their event-time buckets, and the KPI rules built on them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BUCKETS_PER_WINDOW", "Rules", "Window", "parse_duration", "sum_window"]

BUCKETS_PER_WINDOW = 24
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")


def parse_duration(text: object) -> int:
    """``"90d"`` -> seconds. Units: s, m, h, d, w."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}; use e.g. 30m, 1h, 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Window:
    """A rolling window ending now, counted in 24 event-time buckets (+1 partial)."""

    name: str
    seconds: int
    bucket_ms: int = field(init=False, repr=False, compare=False)
    bucket_us: int = field(init=False, repr=False, compare=False)  # the same bucket, for event times

    def __post_init__(self) -> None:  # computed once: it sits on the hot path
        object.__setattr__(self, "bucket_ms", max(1, self.seconds * 1000 // BUCKETS_PER_WINDOW))
        object.__setattr__(self, "bucket_us", self.bucket_ms * 1000)

    def bucket(self, at_ms: int) -> int:
        return at_ms // self.bucket_ms

    def first_bucket(self, now_ms: int) -> int:
        """Oldest bucket in the window: the one holding ``now - window``."""
        return (now_ms - self.seconds * 1000) // self.bucket_ms

    def start_ms(self, now_ms: int) -> int:
        """Event times >= this are in the window (at most one bucket before now-W)."""
        return self.first_bucket(now_ms) * self.bucket_ms


def sum_window(buckets: Mapping[int, int], window: Window, now_ms: int) -> int:
    """Total of the buckets inside the window ending at ``now_ms``."""
    first = window.first_bucket(now_ms)
    return sum(n for k, n in buckets.items() if k >= first)


@dataclass(frozen=True, slots=True)
class Rules:
    """The KPI parameters: windows and attribution window (in ms; ``*_us`` the same in microseconds).

    ``max_events`` caps the actions and tickets one customer's record holds within retention
    (``ADVOCACY_MAX_EVENTS_PER_CUSTOMER``; ``step.step`` says which are kept); 0: no cap.
    """

    windows: tuple[Window, ...]
    attribution_ms: int
    max_events: int = 0
    longest_ms: int = field(init=False, repr=False, compare=False)
    action_retention_ms: int = field(init=False, repr=False, compare=False)
    ticket_retention_ms: int = field(init=False, repr=False, compare=False)
    attribution_us: int = field(init=False, repr=False, compare=False)
    action_retention_us: int = field(init=False, repr=False, compare=False)
    ticket_retention_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # computed once: read for every event
        longest = max(w.seconds for w in self.windows) * 1000
        action = longest + max(w.bucket_ms for w in self.windows) * 2
        object.__setattr__(self, "longest_ms", longest)
        object.__setattr__(self, "action_retention_ms", action)
        object.__setattr__(self, "ticket_retention_ms", action + self.attribution_ms)
        object.__setattr__(self, "attribution_us", self.attribution_ms * 1000)
        object.__setattr__(self, "action_retention_us", action * 1000)
        object.__setattr__(self, "ticket_retention_us", (action + self.attribution_ms) * 1000)
