"""The Lua scripts of the state (``stream.state``): each runs atomically on one shard, every key it
touches declared in KEYS (Redis Cluster routes by them).

``COMMIT`` writes a batch's records, totals and partition positions in one call; ``FLOOR`` raises
positions; ``PRUNE_HASH`` drops buckets no window sums any more. ``stream.shards`` has the reading
scripts (``HEAD``, ``SUM_WINDOWS``).
"""

from __future__ import annotations

__all__ = ["CHANGED", "COMMIT", "FLOOR", "PRUNE_HASH"]

# One shard's part of a batch. KEYS: 1 meta, 2 pos, 3 active, 4 segments, 5 teams, 6 newest, then
# the records, count hashes and advocate sets that ARGV names by their index in KEYS. ARGV: 1 heads
# [[record key index, version, expires, mode]], 2 blobs, 3 totals, 4 token, 5 progress, 6 fingerprint.
COMMIT = """
-- an empty shard (Redis restarted empty, a replica promoted empty) starts again: positions
-- are missing, so every partition is read again from its earliest offset
redis.call('HSETNX', KEYS[1], 'rules', ARGV[6])
local heads = cjson.decode(ARGV[1])
local conflicts = {}
for i, h in ipairs(heads) do
  local cur = redis.call('GETRANGE', KEYS[h[1]], 0, 63)
  if (string.match(cur, '^([^|]*)|') or '') ~= h[2] then conflicts[#conflicts + 1] = i end
end
if #conflicts > 0 then return {conflicts, {}} end
redis.call('HSET', KEYS[1], 'changed', ARGV[4])
local blobs, pos, token = ARGV[2], 1, ARGV[4]
for _, h in ipairs(heads) do
  local key = KEYS[h[1]]
  local stop = string.find(blobs, '\\0', pos, true)
  local blob = string.sub(blobs, pos, stop - 1)
  pos = stop + 1
  if h[4] == 2 then
    redis.call('DEL', key)
  elseif h[4] == 1 then
    redis.call('SETRANGE', key, 0, token)
    redis.call('APPEND', key, blob)
    if h[3] > 0 then redis.call('PEXPIREAT', key, h[3]) end
  elseif h[3] > 0 then
    redis.call('SET', key, blob, 'PXAT', h[3])
  else
    redis.call('SET', key, blob)
  end
end
local t = cjson.decode(ARGV[3])
for _, c in ipairs(t[1]) do redis.call('HINCRBY', KEYS[c[1]], c[2], c[3]) end
for _, a in ipairs(t[2]) do redis.call('HINCRBY', KEYS[3], a[1], a[2]) end
for _, s in ipairs(t[3]) do redis.call('ZADD', KEYS[s[1]], s[2], s[3]) end
for _, r in ipairs(t[4]) do redis.call('ZREM', KEYS[r[1]], r[2]) end
for _, g in ipairs(t[5]) do redis.call('SADD', KEYS[4], g) end
for _, m in ipairs(t[6]) do redis.call('SADD', KEYS[5], m) end
if t[7] ~= '' then
  local cur = redis.call('HGET', KEYS[6], t[7])
  if not cur or tonumber(cur) < t[8] then redis.call('HSET', KEYS[6], t[7], t[8]) end
end
-- positions: each partition's first unstored offset moves over a batch only if the batch
-- starts at or before it; otherwise the shard lost writes and says from where to re-read
local behind = {}
for _, p in ipairs(cjson.decode(ARGV[5])) do
  local cur = redis.call('HGET', KEYS[2], p[1])
  if not cur then
    behind[#behind + 1] = {p[1], -1}
  elseif p[2] <= tonumber(cur) then
    if p[3] > tonumber(cur) then redis.call('HSET', KEYS[2], p[1], p[3]) end
  else
    behind[#behind + 1] = {p[1], tonumber(cur)}
  end
end
return {conflicts, behind}
"""

FLOOR = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur or tonumber(cur) < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0
"""

PRUNE_HASH = """
local first = tonumber(ARGV[1])
local removed = 0
for i, key in ipairs(KEYS) do
  local fields = redis.call('HKEYS', key)
  for _, f in ipairs(fields) do
    if tonumber(f) < first then redis.call('HDEL', key, f); removed = removed + 1 end
  end
end
return removed
"""

# The field of a shard's meta record that changes whenever its totals may have: every commit
# that writes sets it to its token (the line after the conflict check in COMMIT), start-up sets
# it where missing, a prune that removed something sets it to a new token. Tokens never repeat,
# so an unchanged mark means unchanged totals, even after a restore or a failover (the mark is
# written by the same atomic call as the totals) or a restart empty (the mark is then missing).
CHANGED = "changed"
