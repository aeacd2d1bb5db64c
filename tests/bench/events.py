"""Benchmark events: ~160-byte JSON values, realistic mix, seeded."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.scenario import iso

SEGMENTS = ["enterprise", "mid_market", "smb", "startup"]
TEAMS = ["billing", "onboarding", "technical", "success"]


def generate(n: int, customers: int, now: float, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """(kind, event) pairs: registrations first, then actions and tickets in the last 20 hours."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(min(customers, n // 5)):
        out.append(("customer", {"event_id": f"g{i}", "customer_id": f"cust-{i:07d}",
                                 "occurred_at": iso(now - 50 * 86400), "segment": SEGMENTS[i % 4],
                                 "status": "active"}))
    i = 0
    while len(out) < n:
        i += 1
        cid = f"cust-{rng.randrange(customers):07d}"
        # ages kept away from the 1h and 1d window edges, where buckets may legitimately differ
        at = iso(now - (rng.uniform(60, 45 * 60) if rng.random() < 0.3 else rng.uniform(2 * 3600, 20 * 3600)))
        roll = rng.random()
        if roll < 0.2:
            out.append(("ticket", {"event_id": f"t{i}", "customer_id": cid, "occurred_at": at,
                                   "ticket_id": f"T-{i}", "team": rng.choice(TEAMS), "channel": "email"}))
        elif roll < 0.4:
            out.append(("referral", {"event_id": f"f{i}", "customer_id": cid, "occurred_at": at,
                                     "channel": "link", "referee_id": f"ref-{i}"}))
        else:
            out.append(("review", {"event_id": f"r{i}", "customer_id": cid, "occurred_at": at,
                                   "kind": "review", "rating": rng.randint(1, 5), "source": "g2"}))
    return out


def wire(events: list[tuple[str, dict[str, Any]]], topics: dict[str, str]) -> list[tuple[str, bytes, bytes]]:
    return [(topics[k], e["customer_id"].encode(), json.dumps(e).encode()) for k, e in events]
