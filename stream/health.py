"""What /health reports: is this worker consuming, and does Redis answer.

The reasons are fixed phrases (plus topic names, partitions, offsets and counts): never
a host name, an address or an exception's text, which go to the worker's log instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

REDIS_UNAVAILABLE = "redis unavailable"
REDIS_FAILING = "redis error (details in the worker's log)"
KAFKA_UNREACHABLE = "kafka unreachable"


@dataclass
class Health:
    """Readiness facts, updated by the pipeline and the Faust adapter."""

    stall_seconds: float = 60.0
    started: bool = False
    rebalancing: bool = True
    redis_ok: bool = False
    redis_problem: str = REDIS_UNAVAILABLE  # what /health says while redis_ok is false
    redis_error: str = ""  # the latest error in full, for the log only
    crashed: list[str] = field(default_factory=list)  # agents that crashed, per the latest check
    kafka_error: str = ""  # why the latest metadata request failed, for the log only
    warnings: list[str] = field(default_factory=list)  # degraded, still ready (e.g. a topic's retention)
    rebuilding: str = ""  # partitions being read again from their start because the state had none
    lag: int = 0
    gaps: list[str] = field(default_factory=list)  # partitions with records fetched but not stored
    last_progress: float = field(default_factory=time.monotonic)
    busy_since: float | None = None  # a batch is being handled since then

    def redis(self, ok: bool, error: str = "", unavailable: bool = True) -> None:
        """Record the outcome of the latest Redis call: ``unavailable`` when Redis did not
        answer, else it answered with an error."""
        self.redis_ok = ok
        self.redis_error = "" if ok else error
        self.redis_problem = REDIS_UNAVAILABLE if ok or unavailable else REDIS_FAILING

    def degraded(self) -> list[str]:
        """Why the numbers may be incomplete although the worker counts (still ready)."""
        return [*self.warnings, *([self.rebuilding] if self.rebuilding else [])]

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    def reasons(self) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        out: list[str] = []
        if self.crashed:
            out.append(f"agent crashed: {', '.join(self.crashed)}")
        if self.kafka_error:
            out.append(KAFKA_UNREACHABLE)
        out.extend(self.gaps)
        if not self.started:
            out.append("worker starting")
        elif self.rebalancing:
            out.append("consumer group rebalancing")
        if not self.redis_ok:
            out.append(self.redis_problem)
        idle = time.monotonic() - self.last_progress
        if self.started and self.lag > 0 and idle > self.stall_seconds:
            out.append(f"stalled: {self.lag} messages behind and no progress for {idle:.0f} s")
        return out
