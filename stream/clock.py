"""One clock for every worker: Redis's ``TIME``, read through the local monotonic clock.

"Now" decides which events are too old or too far in the future, which buckets a batch
still writes and a read sums, and when records and buckets are pruned. Taken from each
worker's wall clock, a worker whose clock runs minutes fast would classify and count
differently from the others. So every worker takes the time from the Redis that holds the
state: one ``TIME`` round trip (the fastest of a few) gives the offset between Redis's
clock and this process's monotonic clock, and "now" is the monotonic clock plus that
offset. The host's wall clock is not read at all (only to report how far off it is).

Bound: Redis answered between ``sent`` and ``received`` (monotonic), so its time at the
midpoint is known within ``rtt / 2``. After that, the estimate drifts by at most the rate
difference of the two clocks (``DRIFT``, NTP slews at most 500 ppm each) times the age of
the measurement, which ``resync_seconds`` bounds. Hence every worker's "now" is within
``rtt / 2 + DRIFT x resync_seconds`` of Redis's clock (a few ms on a LAN), and two
workers' within twice that, whatever their wall clocks say. Redis's own clock stepping
(or a failover to a host with another clock) is seen at the next measurement: after
``resync_seconds``, or at once after the connection failed (``invalidate``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.errors import StateError, StateUnavailable

__all__ = ["DRIFT", "SKEW_WARNING_SECONDS", "STEP_WARNING_SECONDS", "Clock", "Reading", "SharedClock", "Source", "best",
           "redis_time"]

log = logging.getLogger("stream.clock")

DRIFT = 1e-3  # the largest rate difference between two NTP-disciplined clocks (2 x 500 ppm)
STEP_WARNING_SECONDS = 1.0  # an offset that moves more than this between measurements is logged
SKEW_WARNING_SECONDS = 5.0  # a host clock this far from Redis's is logged as a WARNING
Source = Callable[[], Awaitable[tuple[int, int]]]  # Redis TIME: (seconds, microseconds)


class Clock(Protocol):
    """Where the pipeline, the reads and the janitor take "now" from."""

    async def now_ms(self) -> int: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """One ``TIME`` round trip: the monotonic clock when it was sent and answered (seconds),
    Redis's answer (microseconds since the epoch), and the wall clock at the midpoint."""

    sent: float
    received: float
    redis_us: int
    wall: float

    @property
    def rtt(self) -> float:
        return self.received - self.sent

    @property
    def offset_us(self) -> int:
        """Redis's time minus the monotonic clock (at the midpoint), in microseconds."""
        return self.redis_us - round((self.sent + self.received) / 2 * 1_000_000)

    @property
    def skew(self) -> float:
        """Redis's time minus this host's wall clock, in seconds (positive: the host is behind)."""
        return self.redis_us / 1_000_000 - self.wall


def best(readings: list[Reading]) -> Reading:
    """The reading with the shortest round trip: the tightest bound."""
    return min(readings, key=lambda r: r.rtt)


class SharedClock:
    """Redis's time, measured every ``resync_seconds`` (and after ``invalidate``), read in between
    from the monotonic clock. ``on_sync`` gets each new reading (the skew metric)."""

    def __init__(self, source: Source, *, resync_seconds: float = 30.0, samples: int = 3,
                 max_age_seconds: float = 600.0, on_sync: Callable[[Reading], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.source = source
        self.resync_seconds = resync_seconds
        self.samples = samples
        self.max_age_seconds = max_age_seconds  # a reading this old is not used when Redis fails to answer
        self.on_sync = on_sync
        self.monotonic = monotonic
        self.wall = wall
        self.reading: Reading | None = None
        self._stale = True
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Measure again before the next use (the connection to Redis failed: it may be another host)."""
        self._stale = True

    def uncertainty(self) -> float | None:
        """How far "now" may be from Redis's clock, in seconds; None before the first measurement."""
        if self.reading is None:
            return None
        return self.reading.rtt / 2 + DRIFT * (self.monotonic() - self.reading.received)

    async def sync(self) -> Reading:
        """Measure the offset now (``samples`` round trips, the fastest kept)."""
        readings = []
        for _ in range(self.samples):
            sent = self.monotonic()
            seconds, micros = await self.source()
            received = self.monotonic()
            wall = self.wall() - (received - sent) / 2
            readings.append(Reading(sent, received, seconds * 1_000_000 + micros, wall))
        reading = best(readings)
        self._report(self.reading, reading)
        self.reading = reading
        self._stale = False
        if self.on_sync is not None:
            self.on_sync(reading)
        return reading

    def _report(self, old: Reading | None, new: Reading) -> None:
        if old is None:
            level = logging.WARNING if abs(new.skew) > SKEW_WARNING_SECONDS else logging.INFO
            log.log(level, "clock: Redis's time is %+.3f s from this host's clock (measured within %.1f ms); "
                    "the worker uses Redis's", new.skew, new.rtt / 2 * 1000)
            return
        moved = (new.offset_us - old.offset_us) / 1_000_000
        if abs(moved) > STEP_WARNING_SECONDS:
            log.warning("clock: Redis's time moved %+.3f s against this host's monotonic clock since the last "
                        "measurement (its clock was set, or another Redis answers); following it", moved)

    async def now_us(self) -> int:
        """Redis's time now, in microseconds since the epoch (measuring first when due)."""
        reading = self.reading
        if reading is None or self._stale or self.monotonic() - reading.received >= self.resync_seconds:
            async with self._lock:  # one measurement for every caller that finds it due
                reading = self.reading
                if reading is None or self._stale or self.monotonic() - reading.received >= self.resync_seconds:
                    reading = await self._resync(reading)
        return round(self.monotonic() * 1_000_000) + reading.offset_us

    async def _resync(self, reading: Reading | None) -> Reading:
        try:
            return await self.sync()
        except StateError as exc:
            if reading is None or self.monotonic() - reading.received >= self.max_age_seconds:
                raise
            log.debug("clock: not measured again (%s); the last measurement stays in use", exc)
            return reading

    async def now_ms(self) -> int:
        return await self.now_us() // 1000

    async def now(self) -> float:
        """Redis's time now, in seconds since the epoch."""
        return await self.now_us() / 1_000_000


def redis_time(client: Any) -> Source:
    """``TIME`` of a redis-py asyncio client, its failures as the state's errors."""

    async def source() -> tuple[int, int]:
        try:
            seconds, micros = await client.time()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StateUnavailable(f"redis unavailable: {type(exc).__name__}") from None
        except RedisError as exc:
            raise StateError(f"redis error: {exc}") from None
        except (AttributeError, TypeError) as exc:  # redis-py 8.1 on a reset connection (redis/redis-py#4287)
            raise StateUnavailable(f"redis unavailable: connection lost ({type(exc).__name__})") from None
        return int(seconds), int(micros)

    return source
