"""Logging: JSON lines when stderr is not a terminal, plain text when it is.

Log lines about an event name topic[partition]@offset and never a customer id.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "LibraryRepeats", "Throttle", "logging_config", "setup"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


REMEMBERED_LINES = 1000  # LibraryRepeats forgets every line past this many (memory stays bounded)


class LibraryRepeats(logging.Filter):
    """Drops a library's (aiokafka's) line when the same text was let through less than
    ``seconds`` ago: a broker refusing a login is otherwise logged at every retry."""

    def __init__(self, seconds: float = 60.0, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.seconds, self.prefix = seconds, prefix
        self.last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, record.getMessage())
        if record.created - self.last.get(key, float("-inf")) < self.seconds:
            return False
        if len(self.last) > REMEMBERED_LINES:
            self.last.clear()
        self.last[key] = record.created
        return True


def logging_config(level: str, json_lines: bool | None = None) -> dict[str, Any]:
    """A dictConfig for the root logger; JSON unless stderr is a TTY (or ``json_lines`` says)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    formatter = ({"()": JsonFormatter} if json_lines
                 else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"repeats": {"()": LibraryRepeats}},
        "handlers": {"default": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                 "formatter": "default", "level": level, "filters": ["repeats"]}},
        "root": {"level": level, "handlers": ["default"]},
    }


def setup(level: str) -> dict[str, Any]:
    config = logging_config(level)
    logging.config.dictConfig(config)
    return config


class Throttle:
    """At most ``burst`` lines per ``period`` seconds through ``logger``; the lines over that are
    counted per key, and once the period is over one line says how many were not logged.

    ``flush`` (called from a timer) writes that line even when no further line comes.
    """

    def __init__(self, logger: logging.Logger, what: str, burst: int = 10, period: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.burst = burst
        self.period = period
        self.clock = clock
        self.since = clock()
        self.logged = 0
        self.suppressed: Counter[str] = Counter()

    def log(self, key: str, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
        self.flush()
        if self.logged < self.burst:
            self.logged += 1
            self.logger.log(level, message, *args, exc_info=exc_info)
        else:
            self.suppressed[key] += 1

    def flush(self) -> None:
        now = self.clock()
        if now - self.since < self.period:
            return
        if self.suppressed:
            keys = ", ".join(f"{key} {n}" for key, n in self.suppressed.most_common())
            self.logger.warning("%d more %s not logged in the last %.0f s (%s)", self.suppressed.total(),
                                self.what, now - self.since, keys)
        self.since, self.logged = now, 0
        self.suppressed.clear()
