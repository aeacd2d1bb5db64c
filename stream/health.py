"""What /health reports: is this worker consuming, and does Redis answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Health:
    """Readiness facts, updated by the pipeline and the Faust adapter."""

    stall_seconds: float = 60.0
    started: bool = False
    rebalancing: bool = True
    redis_ok: bool = False
    redis_error: str = ""
    crashed: str = ""  # agents that crashed, per the latest check
    kafka_error: str = ""  # why the latest metadata request failed
    warnings: list[str] = field(default_factory=list)  # degraded, still ready (e.g. a topic's retention)
    rebuilding: str = ""  # partitions being read again from their start because the state had none
    lag: int = 0
    gaps: list[str] = field(default_factory=list)  # partitions with records fetched but not stored
    last_progress: float = field(default_factory=time.monotonic)
    busy_since: float | None = None  # a batch is being handled since then

    def redis(self, ok: bool, error: str = "") -> None:
        """Record the outcome of the latest Redis call."""
        self.redis_ok, self.redis_error = ok, "" if ok else error

    def degraded(self) -> list[str]:
        """Why the numbers may be incomplete although the worker counts (still ready)."""
        return [*self.warnings, *([self.rebuilding] if self.rebuilding else [])]

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    def reasons(self) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        out: list[str] = []
        out.extend(reason for reason in (self.crashed, self.kafka_error) if reason)
        out.extend(self.gaps)
        if not self.started:
            out.append("worker starting")
        elif self.rebalancing:
            out.append("consumer group rebalancing")
        if not self.redis_ok:
            out.append(f"redis unavailable{': ' + self.redis_error if self.redis_error else ''}")
        idle = time.monotonic() - self.last_progress
        if self.started and self.lag > 0 and idle > self.stall_seconds:
            out.append(f"stalled: {self.lag} messages behind and no progress for {idle:.0f} s")
        return out
