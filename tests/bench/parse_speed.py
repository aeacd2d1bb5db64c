"""Microbenchmark of ``stream.events.parse``: microseconds per event over the ``make bench`` events.

    python -m tests.bench.parse_speed [--events 200000] [--customers 20000] [--repeat 3]

Prints the best of ``--repeat`` timed passes over all events (one pass parses every value once).
"""

from __future__ import annotations

import argparse
import time

from stream.errors import InvalidEvent
from stream.events import parse
from tests.bench.events import generate, wire

KINDS = {"review": "review", "referral": "referral", "ticket": "ticket", "customer": "customer"}
LONGEST_MS = 90 * 86_400_000  # default longest window (90d)
TOLERANCE_MS = 300_000
MAX_BYTES = 1_000_000


def one_pass(values: list[tuple[str, bytes]], now_ms: int) -> tuple[float, int]:
    """Parse every value once; return (seconds, invalid count)."""
    invalid = 0
    started = time.perf_counter()
    for kind, raw in values:
        try:
            parse(kind, raw, now_ms, longest_window_ms=LONGEST_MS, attribution_ms=7 * 86_400_000,
                  future_tolerance_ms=TOLERANCE_MS,
                  max_bytes=MAX_BYTES)
        except InvalidEvent:
            invalid += 1
    return time.perf_counter() - started, invalid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    now = time.time()
    values = [(kind, raw) for kind, _key, raw in wire(generate(args.events, args.customers, now), KINDS)]
    now_ms = int(now * 1000)
    best, invalid = min(one_pass(values, now_ms) for _ in range(args.repeat))
    print(f"parse: {len(values)} events, {invalid} invalid, best of {args.repeat}: "
          f"{best * 1e6 / len(values):.3f} us/event ({len(values) / best:,.0f} events/s)")


if __name__ == "__main__":
    main()
