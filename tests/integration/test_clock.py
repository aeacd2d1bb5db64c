"""The shared clock against a real redis-server (on this host: its TIME is this host's clock)."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from stream.clock import SharedClock, redis_time
from stream.embedded import free_port
from stream.errors import StateUnavailable
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_now_is_redis_time_within_the_measured_bound(stack: Stack) -> None:
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        clock = SharedClock(redis_time(client))
        before = time.time()
        now = await clock.now_us() / 1_000_000
        after = time.time()
        bound = clock.uncertainty()
        assert bound is not None
        assert bound < 0.05
        assert before - bound - 0.001 <= now <= after + bound + 0.001  # TIME and time.time() read one clock
        assert clock.reading is not None
        assert abs(clock.reading.skew) < bound + 0.001
    finally:
        await client.aclose()


async def test_an_unreachable_redis_gives_no_time_and_says_so() -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(StateUnavailable):
            await SharedClock(redis_time(client)).now_ms()
    finally:
        await client.aclose()
