"""A local Redis Cluster for the tests and the benchmark: one redis-server per node on loopback."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from stream.embedded import redis_path, stop, wait_port
from stream.errors import AdvocacyError

__all__ = ["RedisClusterServers", "cluster_port"]


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
