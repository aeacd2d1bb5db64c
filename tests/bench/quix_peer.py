"""Peer benchmark: Quix Streams counting the benchmark's events per segment in a tumbling window.

Runs in its own virtualenv (``make bench`` makes ``.venv-peers`` with quixstreams pinned), as
its own process, like a worker:

    .venv-peers/bin/python tests/bench/quix_peer.py BOOTSTRAP TOPIC[,TOPIC...] EXPECTED STATE_DIR

At-least-once (Quix's default). Each event is counted in a one-hour tumbling window per
segment (``unknown`` for events that carry none), after a ``group_by`` on the segment, which
repartitions through a topic of Quix's own as a per-segment count must. Prints one JSON line
when the first event is counted and one when the EXPECTED-th is, with monotonic times, so the
parent measures start-up (launch to first event) and throughput (first to last).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

from quixstreams import Application


def main() -> None:
    bootstrap, topics, expected, state_dir = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
    app = Application(broker_address=bootstrap, consumer_group=f"quix-peer-{time.time_ns()}",
                      auto_offset_reset="earliest", processing_guarantee="at-least-once", state_dir=state_dir,
                      loglevel="WARNING")
    seen = 0

    def counted(_value: object) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            print(json.dumps({"first": time.monotonic()}), flush=True)
        if seen == expected:
            print(json.dumps({"last": time.monotonic(), "events": seen}), flush=True)
            app.stop()

    frames = [app.dataframe(app.topic(name, value_deserializer="json")) for name in topics]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.group_by(lambda value: value.get("segment") or "unknown", name="segment")
    sdf = sdf.tumbling_window(timedelta(hours=1)).count().current()
    sdf.update(counted)
    app.run()


if __name__ == "__main__":
    main()
