"""The shard layout: which shard a customer is in, and how shards' positions and totals combine."""

from __future__ import annotations

import subprocess
import sys

from stream.kpi.totals import Totals
from stream.shards import Shard, add, lowest, shard_of


def test_a_customer_has_the_same_shard_in_every_process() -> None:
    """The shard is CRC-32 based, not Python's salted ``hash``: another interpreter agrees."""
    ids = [f"cust-{i}" for i in range(50)] + ["Ünïcode", ""]
    here = [shard_of(c, 8) for c in ids]
    code = f"from stream.shards import shard_of; print([shard_of(c, 8) for c in {ids!r}])"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"}, cwd=".").stdout.strip()
    assert there == str(here)
    assert set(here) == set(range(8))
    assert all(shard_of(c, 1) == 0 for c in ids)


def test_every_key_of_a_shard_carries_its_one_hash_tag_and_starts_with_the_app_id() -> None:
    """Redis Cluster hashes the first {...} of a key: all of a shard's keys land in one slot, and the app id
    comes first so that an ACL such as ~advocacy* covers them."""
    shard = Shard("advocacy", 3)
    keys = [shard.meta, shard.pos, shard.active, shard.segments, shard.teams, shard.newest, shard.customer("c{1}"),
            shard.count("a", "smb", "7d"), shard.advocates("billing")]
    for key in keys:
        assert key.startswith("advocacy:{advocacy:3}:"), key
        assert key[key.index("{") + 1:key.index("}")] == "advocacy:3"


def test_the_lowest_position_wins_and_a_missing_one_is_lowest() -> None:
    """A partition resumes from the smallest position over shards; a shard without one means from the start."""
    assert lowest([{"a:0": 10, "a:1": 5}, {"a:0": 7, "a:1": None}, {"a:0": 9}]) == {"a:0": 7, "a:1": None}
    assert lowest([{"a:0": None}, {"a:0": 3}]) == {"a:0": None}
    assert lowest([]) == {}


def test_totals_are_summed_over_shards_and_freshness_is_the_newest() -> None:
    """Counts and active customers add up (each customer is in one shard); the newest event time is the max."""
    one = Totals({("smb", "1h"): 2}, {"smb": 3}, {("billing", "1h"): 4}, {("billing", "1h"): 1}, {"reviews": 100})
    two = Totals({("smb", "1h"): 1, ("ent", "1h"): 0}, {"smb": 1, "ent": 2}, {}, {("billing", "1h"): 2},
                 {"reviews": 90, "referrals": 5})
    assert add([one, two]) == Totals({("smb", "1h"): 3, ("ent", "1h"): 0}, {"smb": 4, "ent": 2},
                                     {("billing", "1h"): 4}, {("billing", "1h"): 3}, {"reviews": 100, "referrals": 5})
