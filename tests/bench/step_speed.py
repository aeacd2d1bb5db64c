"""Microbenchmark of the pure state step: microseconds per event, parsed events through the batch tally.

    python -m tests.bench.step_speed [--events 200000] [--customers 20000] [--batch 500] [--repeat 3]
    python -m tests.bench.step_speed --skewed 1000,10000,50000

The first form steps the ``make bench`` events (already parsed) batch by batch, as
``Store.apply`` does without Redis: group by customer, step each record into one ``Tally``,
then the batch's bucket counts; records carry over between batches (the store's cache).
Prints the best of ``--repeat`` passes, in CPU time of this process (on a machine shared
with other work, time spent waiting for a core is left out; cache contention is not).

``--skewed`` times one more event for a customer who already holds N events, for each N:
the cost of one batch's step for that customer (best of ``--repeat`` x 200 steps), the
events in time order (after every held one), then late (100 actions behind the newest).
"""

from __future__ import annotations

import argparse
import time

from stream.config import load_settings
from stream.event import Event
from stream.events import parse
from stream.kpi.record import Customer
from stream.kpi.totals import Tally
from stream.kpi.windows import Rules
from tests.bench.events import generate, wire

KINDS = {"review": "review", "referral": "referral", "ticket": "ticket", "customer": "customer"}


def _rules() -> Rules:
    settings = load_settings()
    return Rules(settings.windows, settings.attribution_window * 1000)


def _events(n: int, customers: int, now: float) -> list[Event]:
    now_ms = int(now * 1000)
    limits = {"longest_window_ms": 90 * 86_400_000, "attribution_ms": 7 * 86_400_000,
              "future_tolerance_ms": 300_000, "max_bytes": 1_000_000}
    return [parse(kind, raw, now_ms, **limits) for kind, _key, raw in wire(generate(n, customers, now), KINDS)]


def one_pass(events: list[Event], batch: int, now_ms: int, rules: Rules) -> float:
    """Step every event once, ``batch`` at a time; return the seconds taken."""
    records: dict[str, Customer] = {}
    started = time.process_time()
    for start in range(0, len(events), batch):
        by_customer: dict[str, list[Event]] = {}
        for event in events[start:start + batch]:
            by_customer.setdefault(event.customer_id, []).append(event)
        tally = Tally()
        for customer_id, group in by_customer.items():
            new = tally.step(customer_id, records.get(customer_id, Customer()), group, now_ms, rules)
            if new is not None:
                records[customer_id] = new
        tally.counts(rules, now_ms)
    return time.process_time() - started


def skewed(held: int, repeat: int, now_ms: int, rules: Rules, late: bool = False) -> float:
    """Seconds for one step adding one action (and every 10th step a ticket instead) to a record of
    ``held`` events (4/5 actions, 1/5 tickets over four teams), each step onto the record the
    last one made, as the store's cache holds it (N grows by 200 per pass: N stays ~N). The events
    come after every held one (in time order, the common case), or with ``late`` 100 actions behind
    the newest held one (a ticket older than held actions: those are credited again)."""
    base = now_ms * 1000 - 3_600_000_000
    seed = [Event("referral", f"f{i}", "hot", base + i * 1000) for i in range(held * 4 // 5)]
    seed += [Event("ticket", f"t{i}", "hot", base + i * 5000, team=f"team{i % 4}") for i in range(held // 5)]
    record = Tally().step("hot", Customer(), seed, now_ms, rules) or Customer()
    start = base + ((held * 4 // 5 - 100) * 1000 + 500 if late else held * 5000 + 1000)
    best = float("inf")
    for r in range(repeat):
        started = time.process_time()
        for i in range(200):
            kind = "ticket" if i % 10 == 0 else "referral"
            at = start + (r * 200 + i) * (1 if late else 1000)
            event = Event(kind, f"n{r}-{i}", "hot", at, team="team0" if kind == "ticket" else None)
            record = Tally().step("hot", record, [event], now_ms, rules) or record
        best = min(best, (time.process_time() - started) / 200)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skewed", default="", help="comma-separated record sizes, e.g. 1000,10000,50000")
    args = parser.parse_args()
    now = time.time()
    now_ms = int(now * 1000)
    rules = _rules()
    if args.skewed:
        for late in (False, True):
            for held in (int(n) for n in args.skewed.split(",")):
                seconds = skewed(held, args.repeat, now_ms, rules, late)
                print(f"step (skewed{', late' if late else ''}): one event onto a record of {held} events: "
                      f"{seconds * 1e6:.1f} us")
        return
    events = _events(args.events, args.customers, now)
    best = min(one_pass(events, args.batch, now_ms, rules) for _ in range(args.repeat))
    print(f"step: {len(events)} events, batches of {args.batch}, best of {args.repeat}: "
          f"{best * 1e6 / len(events):.3f} us/event ({len(events) / best:,.0f} events/s)")


if __name__ == "__main__":
    main()
