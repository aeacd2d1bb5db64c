"""The naive Faust baseline: one windowed-table update per event (what a first Faust app does).

Run as ``python -m tests.bench.naive_faust worker`` with BENCH_BROKER, BENCH_TOPICS
(comma-separated), BENCH_PORT; GET /count answers {"count", "first", "last"}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from typing import Any

import faust

app = faust.App(
    f"naive-{os.getpid()}", broker=f"kafka://{os.environ.get('BENCH_BROKER', 'localhost:9092')}",
    store="memory://", web_port=int(os.environ.get("BENCH_PORT", "6099")), web_host="127.0.0.1",
    broker_session_timeout=6, broker_heartbeat_interval=1, consumer_auto_offset_reset="earliest",
    topic_partitions=4, value_serializer="raw", key_serializer="raw",
)
counts = app.Table("counts", default=int).tumbling(timedelta(hours=1), expires=timedelta(days=1))
topic = app.topic(*os.environ.get("BENCH_TOPICS", "reviews").split(","))
seen = {"count": 0, "first": 0.0, "last": 0.0}


@app.agent(topic)
async def count(stream: Any) -> None:
    async for value in stream:
        event = json.loads(value)
        counts[event.get("segment") or event.get("team") or "all"] += 1
        seen["count"] += 1
        now = time.monotonic()
        seen["first"] = seen["first"] or now
        seen["last"] = now


@app.page("/count")
async def count_page(web: Any, request: Any) -> Any:
    return web.json(seen)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel=warn"]
    app.main()
