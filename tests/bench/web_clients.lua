-- make bench-web's clients under wrk: each connection GETs /kpis and /metrics in turn, 0.5 s apart
-- (a client's pair every second, as tests/bench/web_load.py's Python clients), accepting gzip;
-- on exit one JSON line: seconds, requests, latency p50/p99 (s) and the count of each status.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  n = 0
  pause = tonumber(args[1]) or 500
  wrk.headers["Accept-Encoding"] = "gzip"
end

function request()
  n = n + 1
  if n % 2 == 1 then
    return wrk.format("GET", "/kpis")
  end
  return wrk.format("GET", "/metrics")
end

function delay()
  return pause
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    table.insert(parts, string.format('"status %d": %d', status, count))
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('{"seconds": %.3f, "requests": %d, "p50": %.6f, "p99": %.6f, "errors": %d, "outcomes": {%s}}\n',
    summary.duration / 1e6, summary.requests, latency:percentile(50) / 1e6, latency:percentile(99) / 1e6,
    errors, table.concat(parts, ", ")))
end
