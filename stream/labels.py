"""The label-cardinality cap: segment and team names beyond the cap fold into ``_other``.

Admission is atomic in Redis and the admitted set never shrinks, so a name's fate is
decided once: admitted while there was room, folded forever after. That keeps every
customer's contribution stable, which the exact totals rely on. The caps are part of
the rules fingerprint: changing them needs a new app id or a replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from stream.kpi.record import UNKNOWN_SEGMENT
from stream.kpi.totals import OVERFLOW_LABEL

__all__ = ["KINDS", "Client", "LabelCap"]

_ADMIT = """
local cap = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local name = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], name) == 1 then
    out[#out + 1] = 1
  elseif redis.call('SCARD', KEYS[1]) < cap then
    redis.call('SADD', KEYS[1], name)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
KINDS = ("segment", "team")
Client = aioredis.Redis | RedisCluster  # a single Redis or Redis Cluster (``stream.state.redis_client``)
_FOLDED_CACHE = 10_000


class LabelCap:
    """Decides, once and for all workers, which names keep their own label."""

    def __init__(self, client: Client, namespace: str, caps: dict[str, int]) -> None:
        self.ns = namespace
        self.caps = caps
        self._admit = client.register_script(_ADMIT)
        self._admitted: dict[str, set[str]] = {kind: {UNKNOWN_SEGMENT, OVERFLOW_LABEL} for kind in KINDS}
        self._folded: dict[str, set[str]] = {kind: set() for kind in KINDS}

    def unknown(self, kind: str, names: Iterable[str]) -> list[str]:
        return sorted(n for n in set(names) if n not in self._admitted[kind] and n not in self._folded[kind])

    async def resolve(self, kind: str, names: list[str], call: Any) -> None:
        """Ask Redis about names this worker has not seen; ``call`` maps Redis errors."""
        if not names:
            return
        flags = await call(self._admit(keys=[f"{self.ns}:admitted:{kind}"], args=[self.caps[kind], *names]))
        folded = self._folded[kind]
        if len(folded) > _FOLDED_CACHE:
            folded.clear()  # decisions are stable in Redis: forgetting only costs a lookup
        for name, flag in zip(names, flags, strict=True):
            (self._admitted[kind] if int(flag) else folded).add(name)

    def label(self, kind: str, name: str) -> str:
        return name if name in self._admitted[kind] else OVERFLOW_LABEL

    def folds(self) -> bool:
        """Whether any name is known to be folded."""
        return any(self._folded.values())

    def is_folded(self, kind: str, name: str) -> bool:
        return name in self._folded[kind]
