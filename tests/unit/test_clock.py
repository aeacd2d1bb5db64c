"""The shared clock's logic (``stream.clock``) against a fake Redis ``TIME`` and fake local clocks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.clock import DRIFT, Reading, SharedClock, best
from stream.errors import StateUnavailable


class FakeTime:
    """A local monotonic clock, a local wall clock ``skew`` seconds off, and a Redis whose clock is
    the true time. A ``TIME`` call takes ``there`` seconds to reach Redis and ``back`` to return."""

    def __init__(self, skew: float = 0.0, start: float = 1_800_000_000.0) -> None:
        self.true = start  # seconds since the epoch
        self.mono_origin = 12_345.0 - start  # the monotonic clock counts from its own origin
        self.skew = skew
        self.delays: list[tuple[float, float]] = []  # (there, back) per call; (0, 0) once exhausted
        self.calls = 0
        self.down = False

    def monotonic(self) -> float:
        return self.true + self.mono_origin

    def wall(self) -> float:
        return self.true + self.skew

    def advance(self, seconds: float) -> None:
        self.true += seconds

    async def time(self) -> tuple[int, int]:
        self.calls += 1
        there, back = self.delays.pop(0) if self.delays else (0.0, 0.0)
        self.advance(there)
        if self.down:
            raise StateUnavailable("redis unavailable: ConnectionError")
        us = round(self.true * 1_000_000)
        self.advance(back)
        return us // 1_000_000, us % 1_000_000

    def clock(self, **options: float) -> SharedClock:
        return SharedClock(self.time, monotonic=self.monotonic, wall=self.wall, **options)  # type: ignore[arg-type]


def true_us(fake: FakeTime) -> int:
    return round(fake.true * 1_000_000)


async def test_now_is_redis_time_whatever_the_wall_clock_says() -> None:
    """A wall clock ten minutes fast or slow changes nothing: now is Redis's; the skew is reported."""
    for skew in (600.0, -600.0, 0.0):
        fake = FakeTime(skew=skew)
        clock = fake.clock()
        assert await clock.now_us() == true_us(fake)
        fake.advance(12.5)
        assert await clock.now_ms() == true_us(fake) // 1000
        assert clock.reading is not None
        assert clock.reading.skew == pytest.approx(-skew, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.5), st.floats(0, 0.5)), min_size=1, max_size=5), st.floats(0, 24),
       st.floats(-900, 900))
def test_the_error_stays_within_half_the_fastest_round_trip(delays: list[tuple[float, float]], later: float,
                                                            skew: float) -> None:
    """Whatever the asymmetry of the round trips, the estimate is within rtt/2 of Redis's time (the bound
    stream/clock.py states; the fake clocks do not drift), with rtt the fastest sample's. The reading stays
    younger than the 30 s re-measurement (at most 5 s of samples + 24 s), so ``now_us`` uses it."""
    fake = FakeTime(skew=skew)
    fake.delays = list(delays)
    clock = fake.clock(samples=len(delays))

    async def measure_then_read() -> tuple[Reading, int]:
        reading = await clock.sync()
        fake.advance(later)
        return reading, await clock.now_us()

    reading, now = asyncio.run(measure_then_read())
    assert reading.rtt == pytest.approx(min(a + b for a, b in delays), abs=1e-6)
    assert abs(now - true_us(fake)) <= reading.rtt / 2 * 1_000_000 + 2  # +2 us: rounding
    uncertainty = clock.uncertainty()
    assert uncertainty is not None
    age = fake.monotonic() - reading.received  # ``later``, and the samples taken after the best one
    assert uncertainty == pytest.approx(reading.rtt / 2 + DRIFT * age, abs=1e-6)


def test_best_keeps_the_fastest_round_trip() -> None:
    slow, fast = Reading(0.0, 0.4, 10, 0.0), Reading(1.0, 1.001, 10, 0.0)
    assert best([slow, fast, slow]) is fast


async def test_measured_again_when_due_after_invalidate_and_not_in_between() -> None:
    fake = FakeTime()
    clock = fake.clock(resync_seconds=30.0, samples=1)
    await clock.now_us()
    assert fake.calls == 1
    fake.advance(29)
    await clock.now_us()
    assert fake.calls == 1  # read from the monotonic clock
    fake.advance(1)
    await clock.now_us()
    assert fake.calls == 2  # due
    clock.invalidate()
    await clock.now_us()
    assert fake.calls == 3  # the connection failed meanwhile: measured again at once


async def test_concurrent_callers_share_one_measurement() -> None:
    fake = FakeTime()
    clock = fake.clock(samples=1)
    results = await asyncio.gather(*(clock.now_us() for _ in range(10)))
    assert fake.calls == 1
    assert set(results) == {true_us(fake)}


async def test_redis_stepping_its_clock_is_followed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    clock = fake.clock(resync_seconds=30.0, samples=1)
    await clock.now_us()
    fake.true += 120  # Redis's clock set two minutes forward (or a failover to another host): the
    fake.mono_origin -= 120  # local monotonic clock does not move with it
    with caplog.at_level(logging.WARNING, "stream.clock"):
        fake.advance(30)
        assert await clock.now_us() == true_us(fake)
    assert "moved +120.000 s" in caplog.text


async def test_redis_away_the_last_measurement_serves_until_it_is_too_old() -> None:
    fake = FakeTime()
    clock = fake.clock(resync_seconds=30.0, max_age_seconds=600.0, samples=1)
    await clock.now_us()
    fake.down = True
    fake.advance(300)
    assert await clock.now_us() == true_us(fake)  # due, not measured: the old offset still serves
    fake.advance(300)
    with pytest.raises(StateUnavailable):
        await clock.now_us()  # too old to vouch for


async def test_no_time_before_the_first_answer() -> None:
    fake = FakeTime()
    fake.down = True
    clock = fake.clock()
    with pytest.raises(StateUnavailable):
        await clock.now_ms()
    assert clock.uncertainty() is None
    fake.down = False
    assert await clock.now_ms() == true_us(fake) // 1000


async def test_a_host_clock_far_off_is_logged_as_a_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime(skew=600.0)
    clock = fake.clock(samples=1)
    with caplog.at_level(logging.INFO, "stream.clock"):
        await clock.now_us()
        fake.advance(60)
        await clock.now_us()
    lines = [r for r in caplog.records if r.name == "stream.clock"]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert "-600.000 s" in lines[0].getMessage()
