"""One Apache Kafka process on loopback (a KRaft controller and broker), for the tests and benchmarks.

The jars come from deploy/kafka/pom.xml (``make kafka`` copies them into .cache/kafka-VERSION/libs);
java is Debian's JRE. A node's ports and data folder outlive its process, so a stopped or killed
node can be started again with its data. ``SaslSsl`` adds a SASL_SSL (SCRAM-SHA-512) listener and
the standard authorizer, as deploy/kafka configures them. A cluster of nodes is
``stream.kafka_server.KafkaCluster``.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stream.embedded import free_port, program, wait_port
from stream.errors import AdvocacyError

__all__ = ["JVM_FLAGS", "LOG4J", "POM", "ROOT", "KafkaNode", "SaslSsl", "check_installed", "java_path", "kafka_libs",
           "kafka_version", "new_cluster_id"]

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
    return program("java", "openjdk-17-jre-headless")


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
        out = (self.workdir / "format.log").open("wb")  # owned by the process
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
        out = self.log.open("ab")  # owned by the process
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
