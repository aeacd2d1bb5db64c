"""What /health reports: is this worker consuming, and does Redis answer.

The reasons say what is wrong and what to check in fixed phrases (plus setting, user,
group, topic and key names, partitions, offsets and counts): never a host name, an
address, a secret or an exception's text, which go to the worker's log instead
(``Problem.detail``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["KAFKA_UNREACHABLE", "NAME_MISMATCH", "NOT_READY", "REDIS_AUTHENTICATION", "REDIS_FAILING",
           "REDIS_UNAVAILABLE", "Health", "Problem", "certificate", "not_ready", "redis_problem"]

NOT_READY = "not ready"  # /health's status while a reason stands
REDIS_UNAVAILABLE = "redis unavailable"
REDIS_FAILING = "redis error (details in the worker's log)"
KAFKA_UNREACHABLE = "kafka unreachable"
REDIS_AUTHENTICATION = "redis: authentication failed; check the user and password in ADVOCACY_REDIS_URL"

# OpenSSL's verification codes, in fixed words (its own message may name the host)
_CERTIFICATE = {2: "issued by an unknown authority", 9: "not yet valid", 10: "expired",
                18: "self-signed", 19: "issued by an unknown authority", 20: "issued by an unknown authority",
                21: "issued by an unknown authority", 23: "revoked", 62: "issued for another host name",
                64: "issued for another IP address"}
NAME_MISMATCH = (62, 64)


@dataclass(frozen=True)
class Problem:
    """Why a connection or a call failed: ``reason`` for /health (and the log), ``detail`` for the
    log only (where, and the library's own words)."""

    reason: str
    detail: str = ""

    def logged(self, then: str = "") -> str:
        """The log line: the reason (so that a search for /health's words finds it), then the detail."""
        return self.reason + (f"; {then}" if then else "") + (f" ({self.detail})" if self.detail else "")


def certificate(exc: ssl.SSLCertVerificationError) -> tuple[str, bool]:
    """Why a server's certificate was refused, in fixed words; and whether its name did not match."""
    code = getattr(exc, "verify_code", None)
    return _CERTIFICATE.get(code or 0, "verification failed"), code in NAME_MISMATCH


def redis_problem(error: str, unavailable: bool, namespace: str = "") -> str:
    """/health's words for a failed Redis call (``error``: the StateError's text, for the log)."""
    if unavailable:
        return REDIS_AUTHENTICATION if error.endswith("AuthenticationError") else REDIS_UNAVAILABLE
    upper = error.upper()
    if "NOPERM" in upper or "NO PERMISSIONS" in upper:
        keys = f" to the keys {namespace}:*" if namespace else ""
        return f"redis: permission denied; the Redis user needs access{keys}"
    if "WRONGPASS" in upper or "NOAUTH" in upper:
        return REDIS_AUTHENTICATION
    if "OOM " in upper:
        return "redis: out of memory (maxmemory reached); writes are refused"
    if "READONLY" in upper:
        return "redis: the server is a read-only replica; check ADVOCACY_REDIS_URL"
    return REDIS_FAILING


@dataclass
class Health:
    """The one owner of readiness: the facts others record, and /health's answer computed from
    them when asked (``reasons``, ``degraded``, ``report``; the ``advocacy_worker_ready`` and
    ``advocacy_redis_up`` gauges read them at scrape time). Nothing else decides readiness.

    Each fact has one kind of writer:

    - ``started``: the app's start task; ``joined``: the first completed rebalance;
      ``group_rebalancing``: read when asked (Faust's ``app.rebalancing``);
    - ``redis``: the outcome of the latest Redis call, whoever made it (a batch's commit,
      the ``redis`` timer's PING, a read of the totals for /kpis);
    - ``kafka_error``: the ``kafka`` timer; ``lag``: the ``lag`` timer; ``gaps`` and
      ``rebuilding``: the ``gaps`` timer; ``crashed``: the ``agents`` timer;
    - ``warnings``: the retention check at start-up; ``progress``: each stored batch;
    - ``failing``: the guard around every timer (``stream.timers``): a timer whose latest run
      raised. A fact that a failing timer keeps cannot be trusted: not ready until it runs
      cleanly again (``blocking``); a failing housekeeping timer only degrades.
    """

    stall_seconds: float = 60.0
    namespace: str = ""  # the app id: the Redis keys, named when permission is denied
    started: bool = False
    joined: bool = False  # the consumer group's first rebalance completed
    group_rebalancing: Callable[[], bool] = lambda: False  # a rebalance under way now
    redis_ok: bool = False
    redis_problem: str = REDIS_UNAVAILABLE  # what /health says while redis_ok is false
    redis_error: str = ""  # the latest error in full, for the log only
    crashed: list[str] = field(default_factory=list)  # agents that crashed, per the latest check
    kafka_error: str = ""  # why the latest metadata request failed, in /health's words (Problem.reason)
    warnings: list[str] = field(default_factory=list)  # degraded, still ready (e.g. a topic's retention)
    rebuilding: str = ""  # partitions being read again from their start because the state had none
    lag: int = 0
    gaps: list[str] = field(default_factory=list)  # partitions with records fetched but not stored
    last_progress: float = field(default_factory=time.monotonic)
    failing: dict[str, bool] = field(default_factory=dict)  # timer name -> whether it blocks readiness

    def redis(self, ok: bool, error: str = "", unavailable: bool = True) -> None:
        """Record the outcome of the latest Redis call: ``unavailable`` when Redis did not
        answer, else it answered with an error."""
        self.redis_ok = ok
        self.redis_error = "" if ok else error
        self.redis_problem = REDIS_UNAVAILABLE if ok else redis_problem(error, unavailable, self.namespace)

    def timer_failed(self, name: str, blocking: bool) -> None:
        """The latest run of timer ``name`` raised (its error is in the log)."""
        self.failing[name] = blocking

    def timer_ran(self, name: str) -> None:
        """The latest run of timer ``name`` ended cleanly."""
        self.failing.pop(name, None)

    @property
    def rebalancing(self) -> bool:
        return not self.joined or self.group_rebalancing()

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    def degraded(self) -> list[str]:
        """Why the numbers may be incomplete although the worker counts (still ready)."""
        failing = [_failing(name) for name, blocking in sorted(self.failing.items()) if not blocking]
        return [*self.warnings, *([self.rebuilding] if self.rebuilding else []), *failing]

    def reasons(self) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        out: list[str] = []
        if self.crashed:
            out.append(f"agent crashed: {', '.join(self.crashed)}")
        if self.kafka_error:
            out.append(self.kafka_error)
        out.extend(self.gaps)
        out.extend(_failing(name) for name, blocking in sorted(self.failing.items()) if blocking)
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

    def ready(self) -> bool:
        return not self.reasons()

    def report(self) -> tuple[int, dict[str, object]]:
        """/health's answer: (HTTP status, body); 200 when ready (``degraded`` or not), else 503."""
        reasons = self.reasons()
        warnings = self.degraded()
        status = NOT_READY if reasons else "degraded" if warnings else "ready"
        body: dict[str, object] = {"status": status, "reasons": reasons, "lag": self.lag}
        if warnings:  # still ready: the worker counts, but something should be fixed
            body["warnings"] = warnings
        return (503 if reasons else 200), body


def _failing(timer: str) -> str:
    return f"the {timer} check failed (details in the worker's log)"


def not_ready(*reasons: str) -> dict[str, object]:
    """/health's body before the worker's own answer exists (start-up, or the worker not answering the front)."""
    return {"status": NOT_READY, "reasons": list(reasons)}
