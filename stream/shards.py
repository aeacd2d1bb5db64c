"""The state's shards: which customer lives where, the keys of a shard, and sums over shards.

The state is split by customer into ``n`` shards. A shard's keys share one hash tag
(``{app_id}:{{app_id}:k}:...``), so on Redis Cluster each shard sits in one slot and every
Lua call touches one slot; on a single Redis the shards simply share the node. The keys
start with the app id, so an ACL such as ``~advocacy*`` still covers them. Each shard holds
its customers' records, its own share of the totals and its own partition positions.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

from stream.kpi.totals import Totals

__all__ = ["HEAD", "SUM_WINDOWS", "Shard", "add", "lowest", "partition_name", "shard_of"]

# The summed windows of one shard, in one call: KEYS are, per window, the count hashes of
# the shard's segments then of its teams, then the advocate sets of its teams (once);
# ARGV is (segments, teams, then per window its first bucket and its start in ms).
# Returns, per window, the bucket sums of each count key, then each team's advocates.
SUM_WINDOWS = """
local nseg, nteam = tonumber(ARGV[1]), tonumber(ARGV[2])
local nwin = (#ARGV - 2) / 2
local adv_base = nwin * (nseg + nteam)
local out, k = {}, 1
for w = 1, nwin do
  local first, start = tonumber(ARGV[1 + 2 * w]), ARGV[2 + 2 * w]
  for _ = 1, nseg + nteam do
    local flat = redis.call('HGETALL', KEYS[k])
    k = k + 1
    local sum = 0
    for j = 1, #flat, 2 do
      if tonumber(flat[j]) >= first then sum = sum + tonumber(flat[j + 1]) end
    end
    out[#out + 1] = sum
  end
  for t = 1, nteam do out[#out + 1] = redis.call('ZCOUNT', KEYS[adv_base + t], start, '+inf') end
end
return out
"""

# What a read needs first from a shard: KEYS segments, teams, active, newest.
HEAD = """
return {redis.call('SMEMBERS', KEYS[1]), redis.call('SMEMBERS', KEYS[2]),
        redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
"""


class Shard:
    """The keys of one shard."""

    __slots__ = ("active", "index", "meta", "newest", "pos", "prefix", "segments", "teams")

    def __init__(self, namespace: str, index: int) -> None:
        self.index = index
        self.prefix = f"{namespace}:{{{namespace}:{index}}}"
        self.meta = self.key("meta")  # the rules fingerprint the shard's totals are built under
        self.pos = self.key("pos")  # topic:partition -> first offset not in the shard
        self.active = self.key("active")
        self.segments = self.key("segments")
        self.teams = self.key("teams")
        self.newest = self.key("newest")

    def key(self, suffix: str) -> str:
        return f"{self.prefix}:{suffix}"

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:c:{customer_id}"

    def count(self, kind: str, name: str, window: str) -> str:
        return f"{self.prefix}:{kind}:{window}:{name}"

    def advocates(self, team: str) -> str:
        return f"{self.prefix}:adv:{team}"


def shard_of(customer_id: str, shards: int) -> int:
    """The shard of a customer: stable across processes and versions (CRC-32, not ``hash``)."""
    return zlib.crc32(customer_id.encode()) % shards if shards > 1 else 0


def lowest(positions: Iterable[Mapping[str, int | None]]) -> dict[str, int | None]:
    """Per partition, the smallest position over shards; None (none stored: from the start) is lowest."""
    out: dict[str, int | None] = {}
    for one in positions:
        for partition, at in one.items():
            if partition not in out:
                out[partition] = at
            else:
                have = out[partition]
                out[partition] = None if have is None or at is None else min(have, at)
    return out


def add(parts: Iterable[Totals]) -> Totals:
    """Totals summed over shards (each customer is in one shard); the newest event time is the greatest."""
    actions: dict[tuple[str, str], int] = {}
    active: dict[str, int] = {}
    interactions: dict[tuple[str, str], int] = {}
    advocates: dict[tuple[str, str], int] = {}
    newest: dict[str, int] = {}
    for part in parts:
        for src, dst in ((part.actions, actions), (part.interactions, interactions), (part.advocates, advocates)):
            for key, n in src.items():
                dst[key] = dst.get(key, 0) + n
        for segment, n in part.active.items():
            active[segment] = active.get(segment, 0) + n
        for topic, at in part.newest.items():
            newest[topic] = max(newest.get(topic, at), at)
    return Totals(actions, active, interactions, advocates, newest)


def partition_name(topic: str, partition: int) -> str:
    """How the state names a partition in its positions (Kafka topic names have no colon)."""
    return f"{topic}:{partition}"
