"""Logging: a library's repeated line is let through once a minute."""

from __future__ import annotations

import logging

from stream.logs import LibraryRepeats


def _record(name: str, message: str, created: float) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)
    record.created = created
    return record


def test_aiokafka_repeats_are_dropped_for_a_minute_and_ours_never() -> None:
    """The same aiokafka text within 60 s is dropped, after 60 s let through again; other text and the
    service's own loggers always pass."""
    repeats = LibraryRepeats(seconds=60)
    assert repeats.filter(_record("aiokafka", "Unable connect to x", 0.0))
    assert not repeats.filter(_record("aiokafka", "Unable connect to x", 30.0))
    assert repeats.filter(_record("aiokafka", "Unable connect to y", 30.0))
    assert repeats.filter(_record("aiokafka", "Unable connect to x", 61.0))
    assert repeats.filter(_record("stream.topics", "kafka at x: refused", 0.0))
    assert repeats.filter(_record("stream.topics", "kafka at x: refused", 1.0))
