"""``make run``: the embedded broker and Redis, a worker, the demo producer, Prometheus and
Alertmanager, started in order and stopped in reverse tiers."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path

from stream.config import Settings
from stream.embedded import env_for, free_port, own_group, start_broker, start_redis

__all__ = ["DEMO_ALERTMANAGER", "DEMO_FOR", "DEPLOY", "Stack", "demo_rules", "http_status", "run_stack",
           "start_observability", "wait_http"]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# make run's demo profile: the shipped rules with every `for:` this short, evaluated every
# 5 s, and an Alertmanager that groups within seconds and sends nowhere
DEMO_FOR = "30s"
DEMO_ALERTMANAGER = {
    "route": {"receiver": "demo", "group_by": ["alertname", "segment", "team"],
              "group_wait": "5s", "group_interval": "30s", "repeat_interval": "4h"},
    "receivers": [{"name": "demo"}],  # shown, not sent: a demo notifies no one
}


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def demo_rules(directory: Path, for_: str = DEMO_FOR) -> list[Path]:
    """Copies of the shipped rule files with every alert's ``for:`` set to ``for_``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        text = re.sub(r"^(\s+for:\s*)\S+", rf"\g<1>{for_}", path.read_text(), flags=re.MULTILINE)
        (directory / path.name).write_text(text)
        out.append(directory / path.name)
    return out


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if http_status(url) == HTTPStatus.OK:
            return True
        time.sleep(0.2)
    return False


class _Stopped(Exception):
    """A worker or the demo ended on its own."""


class Stack:
    """make run's processes, started in order and stopped in reverse tiers."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tiers: dict[str, list[subprocess.Popen[bytes]]] = {
            "demo": [], "worker": [], "observability": [], "state": []}

    def spawn(self, tier: str, args: list[str], log: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a child in its own process group; its output goes to ``log`` (else the terminal)."""
        out = (self.workdir / log).open("ab") if log else None  # owned by the process
        proc = subprocess.Popen(args, env=env, cwd=self.workdir, stdout=out, stderr=out,
                                preexec_fn=own_group)  # noqa: PLW1509 - the stack starts no threads
        self.tiers[tier].append(proc)
        return proc

    def failures(self) -> int:
        """1 when the worker or the demo ended with an error of its own (its log names it), else 0."""
        status = 0
        for name in ("worker", "demo"):
            for proc in self.tiers[name]:
                if proc.returncode not in (None, 0, -signal.SIGTERM):
                    log = self.workdir / f"{name}.log"
                    print(f"error: the {name} stopped (exit {proc.returncode}); see {log}", file=sys.stderr)
                    status = 1
        return status

    def stop(self) -> None:
        """Demo, then workers (their last batch and commit), then Prometheus and Alertmanager,
        then Redis and the broker: nothing loses what it talks to while it still runs."""
        for tier, timeout in (("demo", 5.0), ("worker", 25.0), ("observability", 10.0), ("state", 10.0)):
            procs = [p for p in self.tiers[tier] if p.poll() is None]
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_observability(stack: Stack, worker_port: int) -> list[str]:
    """Prometheus (demo rule profile, scraping the worker) and Alertmanager, when installed."""
    workdir = stack.workdir
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not (prometheus and (DEPLOY / "prometheus" / "rules").is_dir()):
        return ["  (Prometheus is not installed: no rules, no alerts; make deps installs it)"]
    lines, targets, am_url = [], [], ""
    if alertmanager:
        am_port = _port(9093)
        (workdir / "alertmanager.yml").write_text(json.dumps(DEMO_ALERTMANAGER, indent=2))
        am = stack.spawn("observability", [
            alertmanager, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
            log="alertmanager.log")
        targets = [f"127.0.0.1:{am_port}"]
        am_url = f"http://127.0.0.1:{am_port}"
        wait_http(f"{am_url}/-/ready", 20, am)
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(p) for p in demo_rules(workdir / "rules")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": targets}]}]},
        "scrape_configs": [{"job_name": "advocacy-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
    prom_port = _port(9090)
    prom = stack.spawn("observability", [
        prometheus, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], log="prometheus.log")
    base = f"http://127.0.0.1:{prom_port}"
    wait_http(f"{base}/-/ready", 30, prom)
    # upstream Prometheus serves its alerts page at /alerts; Debian's build only the classic UI
    page = next((f"{base}{path}" for path in ("/alerts", "/classic/alerts")
                 if http_status(f"{base}{path}") == HTTPStatus.OK), f"{base}/api/v1/rules")
    lines.append(f"  rules:   {page}  (Prometheus: the alert rules, inactive / pending / firing; `for:` {DEMO_FOR})")
    if am_url:
        lines.append(f"  alerts:  {am_url}/api/v2/alerts  (Alertmanager: the alerts it received, JSON)")
        if shutil.which("amtool"):
            lines.append(f"           or: amtool --alertmanager.url={am_url} alert query")
    return lines


def run_stack(settings: Settings, collapse: str | None = None, *, customers: int = 2000,
              history_days: float = 14.0) -> int:
    """Make run: broker, Redis, a worker, the demo producer, Prometheus and Alertmanager until Ctrl-C."""
    workdir = Path(tempfile.mkdtemp(prefix="advocacy-"))
    stack = Stack(workdir)
    print(f"starting the embedded stack (logs in {workdir}) ...", flush=True)

    def interrupt(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler's signature
        raise KeyboardInterrupt

    # explicit: a shell may have started the stack with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        kafka_port, redis_port = free_port(), free_port()
        stack.tiers["state"].append(start_broker(kafka_port, workdir / "tansu.log", detached=True))
        stack.tiers["state"].append(start_redis(redis_port, workdir, detached=True))
        bootstrap, redis_url = f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0"
        web_port = _port(settings.web_port)
        env = env_for(settings, kafka_bootstrap_servers=bootstrap, redis_url=redis_url, web_port=web_port,
                      web_bind="127.0.0.1")
        worker = stack.spawn("worker", [sys.executable, "-m", "stream", "worker"], log="worker.log", env=env)
        base = f"http://127.0.0.1:{web_port}"
        if not wait_http(f"{base}/health", 90, worker):
            print(f"error: the worker did not become ready; see {workdir / 'worker.log'}", file=sys.stderr)
            return 1
        demo_args = [sys.executable, "-m", "stream", "demo", "--customers", str(customers),
                     "--history-days", f"{history_days:g}"] + (["--collapse", collapse] if collapse else [])
        demo = stack.spawn("demo", demo_args, log="demo.log", env=env)
        print(f"\n  page:    {base}/  (live view of both rates with their bands)\n"
              f"  KPIs:    {base}/kpis\n  metrics: {base}/metrics\n  health:  {base}/health\n"
              f"  kafka:   {bootstrap}  (tansu)\n  redis:   {redis_url}\n  logs:    {workdir}\n\n"
              f"demo: backfilling {history_days:g} days of events for {customers} customers (under a minute) ...",
              flush=True)
        # Prometheus starts once the history is in: a half-counted last hour is no alert
        while worker.poll() is None and demo.poll() is None:
            if "now live" in (workdir / "demo.log").read_text(errors="replace"):
                break
            time.sleep(0.5)
        else:
            raise _Stopped  # noqa: TRY301 - the same orderly stop as a Ctrl-C
        lines = start_observability(stack, web_port)
        print("demo: history backfilled; now live: every window has its own numbers\n\n" + "\n".join(lines),
              flush=True)
        if collapse:
            alert = f'AdvocacyActionsRateLow{{segment="{collapse}"}}'
            print(f"\n  {collapse!r} collapses to ~20%: {alert} turns pending on the rules page,\n"
                  f"  fires {DEMO_FOR} later and reaches Alertmanager (within about two minutes of start).",
                  flush=True)
        print("\n  Ctrl-C stops everything.\n", flush=True)
        while worker.poll() is None and demo.poll() is None:
            time.sleep(0.5)
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the ordered stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping: demo, worker, Prometheus and Alertmanager, Redis and the broker ...", flush=True)
        started = time.monotonic()
        stack.stop()
        print(f"stopped in {time.monotonic() - started:.1f} s", flush=True)
    return stack.failures()
