"""Cost per event as the work grows (issue 15): the benchmark's events with 1M or 5M customers in
state, and over a Zipf-skewed choice of customers.

    python -m tests.bench.scale [--customers 1000000,5000000] [--zipf 1.1]

With N customers in state: a worker first stores N registrations (their drain rate and the
worker's peak RSS are figures of their own), stops; then the benchmark's events, their customers
drawn among the N, are published and a new worker (a cold record cache) drains them from the
state's positions: its rate is the row, and /kpis must equal the oracle's numbers over every
event. Zipf: the benchmark's events with customer k (1-based rank) drawn with weight 1 / k^s among
its 20,000 customers, through the same ``pipeline`` as the main row. ``make bench`` reports both.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from tests.bench.events import SEGMENTS, generate, wire
from tests.scenario import iso
from tests.support import Worker, produce

Stack = Callable[[], AbstractContextManager[tuple[str, str, Path]]]
Events = list[tuple[str, dict[str, Any]]]


@dataclass
class Scale:
    """One row: N customers in state."""

    customers: int
    registration_rate: float  # events/s: every event a customer new to the state
    rate: float  # events/s: the benchmark's events onto the N customers, a cold cache
    rss_mib: float  # the registering worker's peak RSS


def registrations(first: int, stop: int, now: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """Customers ``first``..``stop``-1 as ``generate`` names and registers them."""
    at = iso(now - 50 * 86400)
    for i in range(first, stop):
        yield ("customer", {"event_id": f"g{i}", "customer_id": f"cust-{i:07d}", "occurred_at": at,
                            "segment": SEGMENTS[i % 4], "status": "active"})


def zipf_events(n: int, customers: int, now: float, s: float, seed: int = 1) -> Events:
    """``generate``'s events with each action's or ticket's customer redrawn: rank k with weight 1 / k^s."""
    rng = random.Random(seed)
    weights = list(accumulate(1 / k**s for k in range(1, customers + 1)))
    out: Events = []
    for kind, event in generate(n, customers, now, seed):
        if kind != "customer":
            rank = rng.choices(range(customers), cum_weights=weights)[0]
            event = {**event, "customer_id": f"cust-{rank:07d}"}  # noqa: PLW2901 - the redrawn copy
        out.append((kind, event))
    return out


def top_share(events: Events, customers: int, top: float = 0.01) -> float:
    """The share of actions and tickets held by the top ``top`` of customers."""
    counts: dict[str, int] = {}
    for kind, event in events:
        if kind != "customer":
            counts[event["customer_id"]] = counts.get(event["customer_id"], 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    return sum(ranked[: max(1, int(customers * top))]) / max(1, sum(ranked))


def _peak_rss_mib(worker: Worker) -> float:
    assert worker.proc is not None
    status = Path(f"/proc/{worker.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def at_scale(stack_of: Stack, customers: int, n: int, pipeline: Callable[..., tuple[float, float]]) -> Scale:
    """N customers in state, then the benchmark's ``n`` events onto them (see the module's text)."""
    from tests.bench.run import TOPICS, create_topics, end_offsets, wait_drained, worker_env

    now = time.time()
    events = generate(n, customers, now)
    first = sum(1 for kind, _ in events if kind == "customer")  # generate registers the first n / 5
    rest = list(registrations(first, customers, now))
    with stack_of() as (bootstrap, redis_url, work):
        create_topics(bootstrap, redis_url, work)
        produce(bootstrap, wire(rest, TOPICS))
        ends = end_offsets(bootstrap)
        worker = Worker(env=worker_env(bootstrap, redis_url), log=work / "scale.log").start().wait_ready(60)
        try:
            begin = time.monotonic()
            registration_rate = len(rest) / (wait_drained(redis_url, ends, timeout=3600) - begin)
            rss = _peak_rss_mib(worker)
        finally:
            worker.stop()
        produce(bootstrap, wire(events, TOPICS))
        rate, _ = pipeline(bootstrap, redis_url, n, rest + events, work)
    return Scale(customers, registration_rate, rate, rss)


def main() -> int:
    from tests.bench.run import STACKS, create_topics, pipeline

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", default="1000000")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--zipf", type=float, default=1.1)
    args = parser.parse_args()
    for customers in (int(c) for c in args.customers.split(",")):
        row = at_scale(STACKS["tansu"][1], customers, args.events, pipeline)
        print(f"{customers:,} customers: registrations {row.registration_rate:,.0f}/s, events {row.rate:,.0f}/s, "
              f"peak RSS {row.rss_mib:.0f} MiB", flush=True)
    events = zipf_events(args.events, 20_000, time.time(), args.zipf)
    with STACKS["tansu"][1]() as (bootstrap, redis_url, work):
        from tests.bench.run import TOPICS

        create_topics(bootstrap, redis_url, work)
        produce(bootstrap, wire(events, TOPICS))
        rate, _ = pipeline(bootstrap, redis_url, len(events), events, work)
    print(f"zipf s={args.zipf}: top 1% of customers hold {top_share(events, 20_000):.0%} of the events; "
          f"{rate:,.0f} events/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
