"""``make bench-web``: what 200 clients polling /kpis and /metrics cost a draining worker and Redis.

With 4 segments and 4 teams (as the demo), and with 100 of each (``--labels``).

Each run, on a fresh embedded broker and Redis with the same events, drains them
once with no clients, then with ``--clients`` clients (a separate process, each client on
its own keep-alive connection) that each GET /kpis and then /metrics, then wait, for each
pause of ``--intervals``, from the worker being ready to the end. The drain's end is read
from the state itself (every partition's stored position at its end offset, polled in
Redis every 50 ms), so that the figure does not depend on how fresh /kpis is; /kpis must
then equal the independently computed KPIs. Redis commands are counted with ``INFO``
(``total_commands_processed``, and ``smembers`` calls from ``INFO commandstats``: a totals
read issues two per shard, and only the janitor's prune issues them otherwise). After the drain, with no events,
``--idle-seconds`` more (the clients still polling, or not): the worker's CPU time then
is what serving the clients costs it, a figure that other work on a shared machine
disturbs far less than drain rates.

Writes its figures as the section "Endpoints under load" of docs/benchmarks.md
(between the markers, kept there by ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from stream.config import Settings
from stream.embedded import free_port
from stream.refresh import KEEP_WARM_SECONDS
from stream.shards import Shard
from tests.bench.events import generate, wire
from tests.bench.run import ENDPOINTS, ROOT, TOPICS, create_topics, end_offsets, stack, wait_drained, worker_env
from tests.reliability.fast_oracle import expected as expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS
from tests.support import Worker, produce, strip, wait_for

BEGIN, END = ENDPOINTS


# -- the clients (a child process: ``python -m tests.bench.web_load clients ...``) --------------

async def _clients(url: str, clients: int, interval: float) -> dict[str, Any]:
    import aiohttp

    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stopping.set)
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []

    async def client() -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as session:
            await asyncio.sleep(random.uniform(0, interval or 0.01))  # spread the clients out
            while not stopping.is_set():
                for path in ("/kpis", "/metrics"):
                    started = time.perf_counter()
                    try:
                        async with session.get(url + path) as response:
                            await response.read()
                            outcomes[f"{path} {response.status}"] += 1
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        outcomes[f"{path} {type(exc).__name__}"] += 1
                    latencies.append(time.perf_counter() - started)
                if interval:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), interval)

    print("clients ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    latencies.sort()
    return {"seconds": time.monotonic() - started, "outcomes": dict(outcomes), "requests": len(latencies),
            "p50": latencies[len(latencies) // 2] if latencies else None,
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else None}


def clients_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_clients(args.url, args.clients, args.interval))), flush=True)
    return 0


class Clients:
    """The client process: started, then stopped with SIGINT; its figures on stdout.

    ``wrk`` (the default): Debian's wrk with ``web_clients.lua``, one connection per client, each
    alternating /kpis and /metrics ``interval / 2`` apart: a C load generator takes ~2% of a core
    for the 400 requests/s of 200 clients, where the Python clients (``python``, aiohttp) take
    ~18% of one of the 2 cores the worker shares with Redis, the broker and the front (both
    measured on a trivial server, 20 s).
    """

    def __init__(self, url: str, clients: int, interval: float, tool: str = "wrk") -> None:
        self.tool = tool
        self.url, self.clients, self.interval = url, clients, interval
        self.proc: subprocess.Popen[bytes] | None = None
        if tool == "python":
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.web_load", "clients", "--url", url, "--clients", str(clients),
                 "--interval", str(interval)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
            assert self.proc.stdout is not None
            assert self.proc.stdout.readline().strip() == b"clients ready"
        self.cpu = 0.0

    def go(self) -> None:
        if self.tool == "python":
            assert self.proc is not None
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()
            return
        pause = str(round(self.interval * 500)) if self.interval else "0"
        self.proc = subprocess.Popen(
            ["wrk", "-t1", f"-c{self.clients}", "-d3600s", "--timeout", "30s", "-s",
             str(ROOT / "tests" / "bench" / "web_clients.lua"), self.url, "--", pause],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        with contextlib.suppress(OSError):
            self.cpu = _cpu_seconds(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        result["cpu_share"] = self.cpu / result["seconds"] if result["seconds"] else 0.0
        return result


# -- one drain ----------------------------------------------------------------------------------

def _commands(client: redis.Redis) -> tuple[int, int]:
    """(total commands processed, SMEMBERS calls) so far: a read of the totals issues two SMEMBERS a
    shard (its segments and teams), which only the janitor's prune also issues."""
    total = int(client.info("stats")["total_commands_processed"])
    smembers = client.info("commandstats").get("cmdstat_smembers", {}).get("calls", 0)
    return total, int(smembers)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _front_cpu_seconds(worker_pid: int) -> float:
    """CPU time so far of the worker's web front (its child ``python -m stream.front``), 0 if none."""
    total = 0.0
    for child in Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            if b"stream.front" in Path(f"/proc/{child}/cmdline").read_bytes():
                total += _cpu_seconds(int(child))
    return total


def drain(events: list[tuple[str, dict[str, Any]]], args: argparse.Namespace, interval: float | None,
          tree: Path | None = None) -> dict[str, Any]:
    """Publish the events, start a worker, time its drain (with or without the clients)."""
    messages = wire(events, TOPICS)
    with stack() as (bootstrap, redis_url, work):
        create_topics(bootstrap, redis_url, work)
        produce(bootstrap, messages)
        ends = end_offsets(bootstrap)
        expected = expected_kpis(events, time.time(), WINDOWS, ATTRIBUTION)
        env = worker_env(bootstrap, redis_url)
        if tree is not None:  # another source tree's worker (a comparison with an older version)
            env["PYTHONPATH"] = str(tree)
        worker = Worker(env=env, log=work / "worker.log", port=free_port())
        clients = Clients(worker.url, args.clients, interval, args.load) if interval is not None else None
        worker.proc = subprocess.Popen([sys.executable, "-m", "stream", "worker"], cwd=tree or ROOT,
                                       env=dict(env, ADVOCACY_WEB_PORT=str(worker.port)),
                                       stdout=open(worker.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        state = redis.Redis.from_url(redis_url)
        try:
            worker.wait_ready(60)
            if clients is not None:
                clients.go()
            before, started, cpu = _commands(state), time.monotonic(), _cpu_seconds(worker.proc.pid)
            front_cpu = _front_cpu_seconds(worker.proc.pid)
            timeout = args.timeout if tree is None else args.compare_seconds
            try:
                seconds = wait_drained(redis_url, ends, timeout) - started
                stored = len(messages)
            except AssertionError:  # the older worker under load: what it stored in the time given
                if tree is None:
                    raise
                seconds = time.monotonic() - started
                hashes = [{k.decode(): int(v) for k, v in state.hgetall(key).items()} for key in (
                    Shard("advocacy", i).pos for i in range(Settings().state_shards))]
                positions = {name: min(h.get(name, 0) for h in hashes) for name in ends}
                stored = sum(min(positions[name], end) for name, end in ends.items())
            cpu = _cpu_seconds(worker.proc.pid) - cpu
            front_cpu = _front_cpu_seconds(worker.proc.pid) - front_cpu
            after = _commands(state)
            result: dict[str, Any] = {
                "rate": stored / seconds, "seconds": seconds, "stored": stored,
                "cpu_us_per_event": cpu / max(1, stored) * 1e6, "front_cpu_share": front_cpu / seconds,
                "commands_per_s": (after[0] - before[0]) / seconds,
                "zcount_per_s": (after[1] - before[1]) / seconds}
            if tree is None:
                wait_for(lambda: strip(worker.kpis()) == expected, 60, interval=0.5,
                         what="/kpis to equal the independently computed KPIs")
            # after the drain, no events: the worker's CPU and Redis's commands are the endpoints' (and timers').
            # Without clients, the check above made the worker read the state in the background for a while
            # (KEEP_WARM_SECONDS after the latest request): that is over before the measure starts.
            time.sleep(KEEP_WARM_SECONDS + 1)
            before, idle_started, cpu = _commands(state), time.monotonic(), _cpu_seconds(worker.proc.pid)
            front_cpu = _front_cpu_seconds(worker.proc.pid)
            time.sleep(args.idle_seconds)
            after = _commands(state)
            idle = time.monotonic() - idle_started
            result["idle_cpu_share"] = (_cpu_seconds(worker.proc.pid) - cpu) / idle
            result["front_idle_cpu_share"] = (_front_cpu_seconds(worker.proc.pid) - front_cpu) / idle
            result["idle_commands_per_s"] = (after[0] - before[0]) / idle
            result["idle_zcount_per_s"] = (after[1] - before[1]) / idle
            if clients is not None:
                result["clients"] = clients.stop()
                clients = None
            result["zcount_per_read"] = 2 * Settings().state_shards  # SMEMBERS a read
            return result
        finally:
            if clients is not None:
                clients.stop()
            worker.stop()
            state.close()


def _spread(events: list[tuple[str, dict[str, Any]]], segments: int, teams: int) -> list[tuple[str, dict[str, Any]]]:
    """The bench's events with ``segments`` segment names and ``teams`` team names."""
    rng = random.Random(5)
    for kind, event in events:
        if kind == "customer":
            event["segment"] = f"segment-{rng.randrange(segments):03d}"
        elif kind == "ticket":
            event["team"] = f"team-{rng.randrange(teams):03d}"
    return events


Column = tuple[int, int, float]  # segments, teams, the clients' pause


def main() -> int:
    if sys.argv[1:2] == ["clients"]:
        return clients_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--customers", type=int, default=40_000)
    parser.add_argument("--labels", default="4x4,100x100",
                        help="segments x teams in the events; a set of columns each (the demo has 4 x 4)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--intervals", default="5,1",
                        help="each client's pause after /kpis + /metrics, seconds; a column each (the page: 5)")
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--load", choices=("wrk", "python"), default="wrk",
                        help="the clients: Debian's wrk (default) or Python's aiohttp in a process of its own")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--compare-tree", type=Path, default=None,
                        help="also measure the worker of this source tree under the same load")
    parser.add_argument("--compare-seconds", type=float, default=60.0,
                        help="how long the other tree's worker drains, at most")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    intervals = [float(v) for v in args.intervals.split(",")]
    labels = [(int(a), int(b)) for a, b in (pair.split("x") for pair in args.labels.split(","))]
    alone: dict[tuple[int, int], list[dict[str, Any]]] = {pair: [] for pair in labels}
    polled: dict[Column, list[dict[str, Any]]] = {(*pair, i): [] for pair in labels for i in intervals}
    older: dict[Column, dict[str, Any]] = {}
    for segments, teams in labels:
        events = _spread(generate(args.events, args.customers, time.time()), segments, teams)
        for run in range(args.runs):
            alone[segments, teams].append(drain(events, args, None))
            print(f"{segments}x{teams} run {run + 1}: alone {json.dumps(alone[segments, teams][-1])}", flush=True)
            for interval in intervals:
                polled[segments, teams, interval].append(drain(events, args, interval))
                print(f"  every {interval:g} s: {json.dumps(polled[segments, teams, interval][-1])}", flush=True)
        if args.compare_tree:
            for interval in intervals:
                older[segments, teams, interval] = drain(events, args, interval, tree=args.compare_tree)
                print(f"  {args.compare_tree}, every {interval:g} s: {json.dumps(older[segments, teams, interval])}",
                      flush=True)
    write(args, alone, polled, older)
    return 0


def write(args: argparse.Namespace, alone: dict[tuple[int, int], list[dict[str, Any]]],
          polled: dict[Column, list[dict[str, Any]]], older: dict[Column, dict[str, Any]]) -> None:
    med = statistics.median
    intervals = sorted({c[2] for c in polled}, reverse=True)

    def runs(values: list[float], form: str = "{:.1%}") -> str:
        return f"{form.format(med(values))} ({', '.join(form.format(v) for v in values)})"

    def row(what: str, cell: Any) -> str:
        return f"| {what} | " + " | ".join(cell(alone[c[0], c[1]], polled[c]) for c in polled) + " |"

    def pairs(base: list[dict[str, Any]], results: list[dict[str, Any]], measure: Any) -> list[float]:
        return [measure(a, p) for a, p in zip(base, results, strict=True)]

    def outcomes(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items()))

    def answers(results: list[dict[str, Any]]) -> str:
        total = Counter[str]()
        for p in results:
            total.update(p["clients"]["outcomes"])
        return outcomes(dict(total))

    lines = [
        BEGIN, "## Endpoints under load", "",
        (f"Measured by `make bench-web` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} cores shared with "
        f"other work, Python {platform.python_version()}, embedded tansu and redis-server on loopback): "
        f"{args.events:,} events of {args.customers:,} customers, with 4 segments and 4 teams (as the demo) or 100 "
        f"of each (a read of the totals is two Lua calls per shard of the state). {args.clients} clients ("
        + ("Debian's wrk, one thread, each client a keep-alive connection, accepting gzip as browsers and Prometheus "
           "do) GET /kpis and /metrics in turn, half the pause apart, a pair every "
           if args.load == "wrk" else
           "one Python process, each client on its own keep-alive connection, accepting gzip as browsers and "
           "Prometheus do) GET /kpis then /metrics and wait ")
        + f"{' or '.join(f'{i:g} s' for i in intervals)} (the page waits 5 s), from the "
        "worker being ready, through its "
        f"drain (its end read from the state) and {args.idle_seconds:g} s after it with no events (measured once the "
        "worker's background reads for the check of /kpis have stopped). Each run "
        "drains the same events on a fresh broker and Redis without clients, then with each set of clients; "
        f"medians of {args.runs} runs (each run's figure in brackets). Drain rates on this shared machine vary "
        "from run to run; the worker's CPU time while serving with no events flowing is the steadier measure. "
        "The clients reach the web port's own process (stream/front.py), which asks the worker for /kpis and "
        "/metrics at most every 0.05 s and 0.5 s per window and encoding; its CPU has a row of its own."), "",
        "| what | " + " | ".join(f"{a} x {b} labels, clients wait {i:g} s" for a, b, i in polled) + " |",
        "|---|" + "---|" * len(polled),
        row("requests/s, all clients",
            lambda a, r: f"{med(p['clients']['requests'] / p['clients']['seconds'] for p in r):,.0f}"),
        row("drain without / with the clients, events/s",
            lambda a, r: f"{med(x['rate'] for x in a):,.0f} / {med(p['rate'] for p in r):,.0f}"),
        row("**throughput the clients cost** (target < 10%)",
            lambda a, r: runs(pairs(a, r, lambda x, p: 1 - p["rate"] / x["rate"]))),
        row("worker CPU per event, change with the clients",
            lambda a, r: runs(pairs(a, r, lambda x, p: p["cpu_us_per_event"] / x["cpu_us_per_event"] - 1),
                              "{:+.1%}")),
        row("worker CPU serving them, no events flowing (share of one core, beyond its idle timers)",
            lambda a, r: runs(pairs(a, r, lambda x, p: p["idle_cpu_share"] - x["idle_cpu_share"]))),
        row("the web port's process (stream/front.py) serving them: CPU, share of a core, no events / during the drain",
            lambda a, r: f"{med(pairs(a, r, lambda x, p: p['front_idle_cpu_share'] - x['front_idle_cpu_share'])):.1%}"
                         f" / {med(p['front_cpu_share'] for p in r):.1%}"),
        row("the clients' own process (the load generator, on the same 2 cores): CPU, share of a core",
            lambda a, r: f"{med(p['clients'].get('cpu_share', 0.0) for p in r):.1%}"),
        row("answers", lambda a, r: answers(r)),
        row("request latency p50 / p99", lambda a, r: f"{med(p['clients']['p50'] for p in r) * 1000:.1f} / "
            f"{med(p['clients']['p99'] for p in r) * 1000:.0f} ms"),
        row("state reads/s during the drain (Redis SMEMBERS calls / 2 x shards)",
            lambda a, r: runs([p["zcount_per_s"] / p["zcount_per_read"] for p in r], "{:.2f}")),
        row("**Redis commands/s** with no events, without / with the clients",
            lambda a, r: f"{med(x['idle_commands_per_s'] for x in a):,.0f} / "
                         f"{med(p['idle_commands_per_s'] for p in r):,.0f}"),
    ]
    if older:
        def before(what: str, cell: Any) -> str:
            return f"| before this change (a state read per request): {what} | " + " | ".join(
                cell(older[c]) if c in older else "" for c in polled) + " |"

        lines += [
            before("drain with the clients, events/s", lambda o: f"{o['rate']:,.0f}" + (
                "" if o["stored"] == args.events
                else f" ({o['stored']:,} of {args.events:,} in {o['seconds']:.0f} s)")),
            before("worker CPU serving them, no events", lambda o: f"{o['idle_cpu_share']:.0%}"),
            before("Redis commands/s during the drain; with no events",
                   lambda o: f"{o['commands_per_s']:,.0f}; {o['idle_commands_per_s']:,.0f}"),
            before("answers", lambda o: outcomes(o["clients"]["outcomes"])),
        ]
    lines += ["", END]
    section = "\n".join(lines)
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.DOTALL)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(text)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
