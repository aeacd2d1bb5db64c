"""Apache Kafka on loopback for the tests and benchmarks: one node, or three, in KRaft mode.

Each node (``stream.kafka_node.KafkaNode``) is a combined controller and broker on free
loopback ports, with its data in its own folder. With ``secure=SaslSsl(...)`` each node also
has a SASL_SSL (SCRAM-SHA-512) listener and the standard authorizer, as deploy/kafka
configures them (tests/e2e/test_security_live.py).
``python -m stream.kafka_server [--nodes 3]`` runs one until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from stream.errors import AdvocacyError
from stream.kafka_node import KafkaNode, SaslSsl, check_installed, kafka_version, new_cluster_id

__all__ = ["KafkaCluster", "main", "node_properties"]


def node_properties(size: int) -> dict[str, object]:
    """Broker settings: Kafka's defaults, except what a cluster of ``size`` needs, and quick creation
    of the group offsets topic. group.initial.rebalance.delay.ms keeps its default (3 s)."""
    replicas = min(size, 3)
    return {
        "offsets.topic.num.partitions": 8,  # default 50: created at the first group, slow on 2 cores
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(replicas, 2),
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min(replicas, 2),
        "default.replication.factor": replicas,
        "min.insync.replicas": min(replicas, 2),
    }


@dataclass
class KafkaCluster:
    """``size`` nodes, each a controller and a broker (KRaft), on free loopback ports."""

    workdir: Path
    size: int = 1
    heap_mb: int = 384
    properties: Mapping[str, object] = field(default_factory=dict)
    secure: SaslSsl | None = None  # a SASL_SSL listener and ACLs besides the PLAINTEXT listener
    nodes: list[KafkaNode] = field(init=False)
    cluster_id: str = field(default_factory=new_cluster_id)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def secure_bootstrap(self) -> str:
        """The SASL_SSL listeners' addresses (``secure`` must be set)."""
        return ",".join(node.secure_address for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def __post_init__(self) -> None:
        # ports are chosen now: a client may be pointed at the cluster before it starts
        self.nodes = [KafkaNode(i, self.workdir / f"node-{i}", self.heap_mb) for i in range(1, self.size + 1)]

    def start(self, timeout: float = 90.0) -> Self:
        """Format and start every node; return once each broker is in the cluster's metadata."""
        check_installed()
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        properties = {**node_properties(self.size), **self.properties}
        for node in self.nodes:
            node.configure(voters, properties, self.secure)
        scram = self.secure.format_args() if self.secure is not None else []
        for node, proc in [(node, node.format(self.cluster_id, *scram)) for node in self.nodes]:
            node.formatted(proc)
        try:
            for node in self.nodes:
                node.start()
            self.wait_brokers(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_brokers(self, timeout: float = 90.0, count: int | None = None) -> None:
        """Wait until ``count`` brokers (all by default) are listed by a running node's metadata."""
        want = self.size if count is None else count
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.running:
                node.wait_listening(max(1.0, deadline - time.monotonic()))
        last: object = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None and count is None:
                    raise AdvocacyError(f"kafka node {node.node_id} exited with {node.proc.returncode}; "
                                        f"log {node.log}")
            try:
                brokers = asyncio.run(_brokers(self.bootstrap_of_running()))
            except Exception as exc:  # noqa: BLE001 - not up yet, whatever the error: kept for the time-out message
                last = exc
            else:
                last = brokers
                if len(brokers) >= want:
                    return
            time.sleep(0.2)
        raise AdvocacyError(f"kafka cluster not up after {timeout} s (last: {last!r}); logs in {self.workdir}")

    def bootstrap_of_running(self) -> str:
        return ",".join(n.address for n in self.nodes if n.running) or self.bootstrap

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to every node at once (one by one, the last ones would wait for a controller
        quorum that has gone), SIGKILL to any still running after ``timeout``."""
        running = [n for n in self.nodes if n.running]
        for node in running:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in running:
            assert node.proc is not None
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _brokers(bootstrap: str) -> list[int]:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return sorted(b.nodeId for b in metadata.brokers())
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m stream.kafka_server", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1, choices=[1, 3])
    args = parser.parse_args(argv)
    try:
        cluster = KafkaCluster(Path(tempfile.mkdtemp(prefix="kafka-")), size=args.nodes).start()
    except AdvocacyError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"Apache Kafka {kafka_version()}: {cluster.bootstrap}  (logs in {cluster.workdir}; Ctrl-C stops)", flush=True)
    try:
        while all(n.running for n in cluster.nodes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
