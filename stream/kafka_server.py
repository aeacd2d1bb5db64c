"""Apache Kafka on loopback for the tests and benchmarks: one node, or three, in KRaft mode.

The jars come from deploy/kafka/pom.xml (``make kafka`` copies them into .cache/kafka-VERSION/libs);
java is Debian's JRE. Each node is a combined controller and broker on free loopback ports, with
its data in its own folder, so a stopped or killed node can be started again with its data.
With ``secure=SaslSsl(...)`` each node also has a SASL_SSL (SCRAM-SHA-512) listener and the standard
authorizer, as deploy/kafka configures them (tests/e2e/test_security_live.py).
``python -m stream.kafka_server [--nodes 3]`` runs one until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stream.embedded import free_port, wait_port
from stream.errors import AdvocacyError

__all__ = [
    "JVM_FLAGS",
    "LOG4J",
    "POM",
    "ROOT",
    "KafkaCluster",
    "KafkaNode",
    "SaslSsl",
    "check_installed",
    "java_path",
    "kafka_libs",
    "kafka_version",
    "main",
    "new_cluster_id",
    "node_properties",
]

ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
# the broker's default JVM flags (kafka-run-class.sh) with a small heap: the machine is shared
JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true")
LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_version() -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if found is None:
        raise AdvocacyError(f"no <kafka.version> in {POM}")
    return found.group(1)


def kafka_libs() -> Path:
    """The folder of the broker's jars; raises when ``make kafka`` has not fetched them."""
    libs = ROOT / ".cache" / f"kafka-{kafka_version()}" / "libs"
    if not (libs / ".fetched").exists():
        raise AdvocacyError(f"Apache Kafka jars missing in {libs}; run make kafka")
    return libs


def java_path() -> str:
    path = shutil.which("java")
    if path is None:
        raise AdvocacyError("java not found; apt-get install openjdk-17-jre-headless (make deps does)")
    return path


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64, never starting with '-' (the storage
    tool would read it as an option, as Kafka's own ``Uuid.randomUuid`` avoids)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class SaslSsl:
    """A SASL_SSL listener (SCRAM-SHA-512 over TLS) beside the PLAINTEXT one, and the standard
    authorizer: the loopback PLAINTEXT and controller listeners are the ANONYMOUS super user (as in
    deploy/kafka), clients of the SASL_SSL listener get only what ACLs allow."""

    keystore: Path  # PEM: the broker's private key (PKCS#8, unencrypted) and its certificate
    users: Mapping[str, str]  # SCRAM-SHA-512 user -> password (letters, digits, . _ -), set at format

    def properties(self) -> dict[str, object]:
        return {
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.keystore,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_args(self) -> list[str]:
        out: list[str] = []
        for user, password in self.users.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", f"{user}{password}"):
                raise AdvocacyError(f"SCRAM user {user!r}: use letters, digits, . _ - in its name and password")
            out += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return out


def check_installed() -> None:
    """Raise AdvocacyError saying what is missing, before any process starts."""
    java_path()
    kafka_libs()


@dataclass
class KafkaNode:
    """One Kafka process (controller and broker); its ports and data outlive the process."""

    node_id: int
    workdir: Path
    heap_mb: int
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    secure_port: int = field(default_factory=free_port)  # the SASL_SSL listener's, when there is one
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure_address(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    @property
    def log(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _java(self, main: str, *args: str) -> list[str]:
        classpath = ":".join(str(p) for p in sorted(kafka_libs().glob("*.jar")))
        return [java_path(), f"-Xms{self.heap_mb // 2}m", f"-Xmx{self.heap_mb}m", *JVM_FLAGS,
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.workdir}", "-cp", classpath, main, *args]

    def configure(self, voters: str, properties: Mapping[str, object], secure: SaslSsl | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        listeners = f"PLAINTEXT://{self.address},CONTROLLER://127.0.0.1:{self.controller_port}"
        advertised, protocols = f"PLAINTEXT://{self.address}", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if secure is not None:
            listeners += f",SASL_SSL://{self.secure_address}"
            advertised += f",SASL_SSL://{self.secure_address}"
            protocols += ",SASL_SSL:SASL_SSL"
        config: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "log.dirs": self.workdir / "data",
            **(secure.properties() if secure is not None else {}),
            **properties,
        }
        (self.workdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        (self.workdir / "log4j2.properties").write_text(LOG4J)

    def format(self, cluster_id: str, *extra: str) -> subprocess.Popen[bytes]:
        """kafka-storage format, which lays out the data folder of a new cluster; wait with ``formatted``."""
        out = open(self.workdir / "format.log", "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                                           "-c", str(self.workdir / "server.properties"), *extra),
                                stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return proc

    def formatted(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.wait(120) != 0:
            tail = (self.workdir / "format.log").read_text(errors="replace")[-800:]
            raise AdvocacyError(f"kafka-storage format failed for node {self.node_id}: {tail}")

    def start(self) -> KafkaNode:
        """Start the process (again, after a stop or a kill: the data folder is kept)."""
        if self.running:
            raise AdvocacyError(f"kafka node {self.node_id} is already running")
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(self.workdir / "server.properties")),
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self

    def wait_listening(self, timeout: float = 60.0) -> None:
        wait_port(self.port, timeout, proc=self.proc)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: a controlled shutdown (leadership handed over first); SIGKILL after ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash or a power cut of its process."""
        self._signal(signal.SIGKILL, 30)

    def _signal(self, sig: int, timeout: float) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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

    def start(self, timeout: float = 90.0) -> KafkaCluster:
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
            except Exception as exc:  # kept for the time-out message
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

    def __enter__(self) -> KafkaCluster:
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
