"""Live security: Apache Kafka with SASL_SSL (SCRAM-SHA-512), TLS and ACLs; redis-server with TLS and an
ACL user. The right credentials give exact numbers; a wrong password, an untrusted certificate and a
missing ACL each give one clear log line and a /health 503 with the reason (what is wrong and what to check; the
log line adds where and the library's words), never a secret, never an exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.embedded import free_port, stop, wait_port
from stream.kafka_node import SaslSsl
from stream.kafka_server import KafkaCluster
from tests.conftest import require_kafka
from tests.oracle import expected_kpis
from tests.reliability.harness import metric_sum
from tests.scenario import ATTRIBUTION, WINDOWS, Scenario, build
from tests.support import Worker, http_get, produce, require_binary, strip, wait_for

pytestmark = pytest.mark.e2e

WORKER_PASSWORD = "worker-pw-5f2c9a"
STRANGER_PASSWORD = "stranger-pw-81d0e4"
REDIS_PASSWORD = "redis-pw-3b7e11"
SECRETS = (WORKER_PASSWORD, STRANGER_PASSWORD, REDIS_PASSWORD, "wrong-pw-0000")
NO_WRITE_APP = "secnw"  # its group is within the worker's group prefix "sec"


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (certificate, key) made with the openssl command line."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path], name: str,
                     names: str = "DNS:localhost,IP:127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``names`` signed by ``ca``; the key is PKCS#8, unencrypted."""
    cert, key, csr, ext = (folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr",
                           folder / f"{name}.ext")
    ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", f"/CN={name}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", ext], check=True, capture_output=True)
    return cert, key


# Kafka protocol codes (CreateAcls): resource types, pattern types, operations, ALLOW
TOPIC, GROUP = 2, 3
LITERAL, PREFIXED = 3, 4
ALL, READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS = 2, 3, 4, 8, 10
ALLOW = 3
Acl = tuple[int, str, int, str, int]  # resource type, name, pattern type, principal, operation


def add_acls(bootstrap: str, acls: list[Acl]) -> None:
    """(resource type, name, pattern type, principal, operation) ALLOW entries, as the ANONYMOUS super user."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            for rtype, name, pattern, principal, operation in acls:
                response = await admin._send_request(
                    CreateAclsRequest(rtype, name, pattern, principal, "*", operation, ALLOW))
                for code, message in response.creation_responses:
                    assert code == 0, f"CreateAcls {name}: {code} {message}"
        finally:
            await admin.close()

    asyncio.run(run())


def create_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 4, 1) for name in names])
        finally:
            await admin.close()

    asyncio.run(run())


def worker_acls(user: str, app_id: str, topics: dict[str, str], group: bool = True) -> list[Acl]:
    """What deploy/kafka/init.sh grants the workers' principal; without the group's when ``group`` is False."""
    principal = f"User:{user}"
    out = [(TOPIC, topics[kind], LITERAL, principal, op) for kind in ("review", "referral", "ticket", "customer")
           for op in (READ, DESCRIBE, DESCRIBE_CONFIGS)]
    out += [(TOPIC, topics["dlq"], LITERAL, principal, op) for op in (WRITE, DESCRIBE, DESCRIBE_CONFIGS)]
    out.append((TOPIC, f"{app_id}-__", PREFIXED, principal, ALL))  # Faust's leader topic
    if group:
        out += [(GROUP, app_id, PREFIXED, principal, op) for op in (READ, DESCRIBE)]
    return out


@dataclass(frozen=True)
class Secure:
    admin: str  # the PLAINTEXT listener: ANONYMOUS super user, for producing and set-up
    bootstrap: str  # SASL_SSL
    ca: Path
    other_ca: Path  # trusted by nobody
    redis_port: int
    app_id: str
    topics: dict[str, str]
    unwritable: dict[str, str]  # topics of app NO_WRITE_APP: the worker may read them, not write the dead letters

    def topic_env(self, topics: dict[str, str]) -> dict[str, str]:
        return {"ADVOCACY_REVIEWS_TOPIC": topics["review"], "ADVOCACY_REFERRALS_TOPIC": topics["referral"],
                "ADVOCACY_TICKETS_TOPIC": topics["ticket"], "ADVOCACY_CUSTOMERS_TOPIC": topics["customer"],
                "ADVOCACY_DLQ_TOPIC": topics["dlq"]}

    def env(self, **changes: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ADVOCACY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "ADVOCACY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ADVOCACY_KAFKA_SASL_USERNAME": "worker",
            "ADVOCACY_KAFKA_SASL_PASSWORD": WORKER_PASSWORD,
            "ADVOCACY_KAFKA_SSL_CAFILE": str(self.ca),
            "ADVOCACY_REDIS_URL": f"rediss://worker:{REDIS_PASSWORD}@localhost:{self.redis_port}/0",
            "ADVOCACY_REDIS_SSL_CA_FILE": str(self.ca),
            "ADVOCACY_APP_ID": self.app_id,
            **self.topic_env(self.topics),
            "ADVOCACY_SESSION_TIMEOUT_SECONDS": "6",
            "ADVOCACY_TOPIC_PARTITIONS": "4",
        })
        env.update(changes)
        return env


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    """Apache Kafka with a SASL_SSL listener and ACLs, redis-server with TLS only and an ACL user."""
    require_kafka()
    require_binary("openssl")
    redis_server = require_binary("redis-server")
    folder = tmp_path_factory.mktemp("secure")
    ca = make_ca(folder, "test-ca")
    other_ca, _ = make_ca(folder, "other-ca")
    kafka_cert, kafka_key = make_server_cert(folder, ca, "kafka")
    keystore = folder / "kafka-keystore.pem"
    keystore.write_text(kafka_key.read_text() + kafka_cert.read_text())
    redis_cert, redis_key = make_server_cert(folder, ca, "redis", "DNS:localhost")  # not 127.0.0.1
    app_id = "sec"
    topics = {"review": "sec-reviews", "referral": "sec-referrals", "ticket": "sec-tickets-closed",
              "customer": "sec-customers", "dlq": "sec-advocacy-dlq"}
    unwritable = {kind: name.replace("sec-", f"{NO_WRITE_APP}-") for kind, name in topics.items()}
    redis_port = free_port()
    redis_conf = folder / "redis.conf"
    redis_conf.write_text(
        f"port 0\ntls-port {redis_port}\nbind 127.0.0.1\ntls-cert-file {redis_cert}\n"
        f"tls-key-file {redis_key}\ntls-ca-cert-file {ca[0]}\ntls-auth-clients no\n"
        f'dir {folder}\nsave ""\nappendonly no\n'
        "user default off\n"
        f"user worker on >{REDIS_PASSWORD} ~{app_id}:* ~{NO_WRITE_APP}:* resetchannels +@all -@admin -@dangerous\n")
    redis = subprocess.Popen([redis_server, str(redis_conf)], stdout=(folder / "redis.log").open("wb"),
                             stderr=subprocess.STDOUT)
    cluster = KafkaCluster(folder / "kafka", secure=SaslSsl(keystore, {"worker": WORKER_PASSWORD,
                                                                       "stranger": STRANGER_PASSWORD}))
    try:
        cluster.start()
        wait_port(redis_port, 20, proc=redis)
        create_topics(cluster.bootstrap, [*topics.values(), *unwritable.values()])
        no_write = (TOPIC, unwritable["dlq"], LITERAL, "User:worker", WRITE)
        add_acls(cluster.bootstrap, worker_acls("worker", app_id, topics)
                 + worker_acls("stranger", app_id, topics, group=False)
                 + [acl for acl in worker_acls("worker", NO_WRITE_APP, unwritable) if acl != no_write])
        yield Secure(cluster.bootstrap, cluster.secure_bootstrap, ca[0], other_ca, redis_port, app_id, topics,
                     unwritable)
    finally:
        cluster.stop()
        stop(redis)


def health(worker: Worker) -> tuple[int, str]:
    status, body = http_get(worker.url + "/health", timeout=2)
    return status, body.decode(errors="replace")


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret shows: ...{text[max(0, text.find(secret) - 80):][:200]}"


def test_the_right_credentials_give_exact_numbers(secure: Secure, tmp_path: Path) -> None:
    """SCRAM-SHA-512 over verified TLS, only the ACLs deploy/kafka/init.sh grants, Redis over TLS as a user
    limited to the app's keys: the worker becomes ready and /kpis equals the oracle."""
    scenario = build(time.time(), secure.topics, seed=61, customers=30)
    worker = Worker(env=secure.env(), log=tmp_path / "worker.log").start()
    try:
        started = time.monotonic()
        worker.wait_ready(90)
        print(f"ready in {time.monotonic() - started:.1f} s")
        dead = _counted_exactly(secure, worker, scenario, "exact kpis over SASL_SSL")
        assert dead == len(scenario.bad)  # the dead-letter topic took them: Write is granted
        no_secret(health(worker)[1] + worker.log.read_text(errors="replace"))
    finally:
        worker.stop()


FAILURES = {
    "wrong password": ({"ADVOCACY_KAFKA_SASL_PASSWORD": "wrong-pw-0000"},
                       "kafka: authentication failed: SASL SCRAM-SHA-512 login of user 'worker' rejected"),
    "untrusted certificate": ({"ADVOCACY_KAFKA_SSL_CAFILE": "OTHER_CA"},
                              ("kafka: TLS certificate not trusted (issued by an unknown authority); "
                              "check ADVOCACY_KAFKA_SSL_CAFILE")),
    "no group ACL": ({"ADVOCACY_KAFKA_SASL_USERNAME": "stranger", "ADVOCACY_KAFKA_SASL_PASSWORD": STRANGER_PASSWORD},
                     "kafka: user 'stranger' is not authorized for consumer group 'sec'"),
    # a topic that does not exist: the worker may not create it (no Create ACL), and says so
    "no create ACL": ({"ADVOCACY_DLQ_TOPIC": "sec-missing-dlq"},
                      "may not create topic 'sec-missing-dlq'; create it beforehand or grant Create on it"),
    "redis wrong password": ({"ADVOCACY_REDIS_URL": "rediss://worker:wrong-pw-0000@localhost:REDIS_PORT/0"},
                             "redis: authentication failed; check the user and password in ADVOCACY_REDIS_URL"),
    "redis untrusted certificate": ({"ADVOCACY_REDIS_SSL_CA_FILE": "OTHER_CA"},
                                    ("redis: TLS certificate not trusted (issued by an unknown authority); "
                                    "check ADVOCACY_REDIS_SSL_CA_FILE")),
    "redis hostname mismatch": ({"ADVOCACY_REDIS_URL": f"rediss://worker:{REDIS_PASSWORD}@127.0.0.1:REDIS_PORT/0"},
                                ("redis: TLS certificate not trusted (issued for another IP address); "
                                "check the host in ADVOCACY_REDIS_URL")),
    # its keys (sec2:*) are outside the Redis user's ~sec:* (its Kafka group sec2 is within the prefix sec)
    "redis keys outside the ACL": ({"ADVOCACY_APP_ID": "sec2"},
                                   "redis: permission denied; the Redis user needs access to the keys sec2:*"),
}


def _counted_exactly(secure: Secure, worker: Worker, scenario: Scenario, what: str) -> float:
    """Publishes ``scenario``, waits for /kpis to equal the oracle; the dead letters the worker counted."""
    produce(secure.admin, scenario.messages())
    expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
    wait_for(lambda: strip(worker.kpis()) == expected, 60, what=what)
    return metric_sum(worker, "advocacy_dead_letters_total")


def _refused(worker: Worker, reason: str, secure: Secure, settle: float) -> tuple[str, str]:
    """Waits for /health's 503 with ``reason``; ``settle`` seconds later the worker still runs, still says
    it, and has logged it once. The reason says what is wrong without where: no host, no port, no
    exception's text (those are in the log line). Returns /health's body and the log."""
    started = time.monotonic()

    def reported() -> bool:
        status, body = health(worker)
        return status == 503 and reason in " ".join(json.loads(body)["reasons"])

    wait_for(reported, 60, interval=0.1, what=f"/health to say {reason!r}")
    print(f"/health 503 with {reason!r} after {time.monotonic() - started:.1f} s")
    time.sleep(settle)
    assert worker.proc is not None, "the worker exited"
    assert worker.proc.poll() is None, "the worker exited"
    status, body = health(worker)
    assert status == 503
    assert reason in body
    reasons = " ".join(json.loads(body)["reasons"])
    for where in ("127.0.0.1", "localhost", str(secure.redis_port), secure.bootstrap.split(":")[-1], "Error"):
        assert where not in reasons, (where, reasons)
    log = worker.log.read_text(errors="replace")
    assert sum(reason in line for line in log.splitlines()) == 1, log[-3000:]
    return body, log


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_security_failure_gives_one_clear_line_and_a_503_and_no_exit(secure: Secure, tmp_path: Path,
                                                                        case: str) -> None:
    """Each failure: /health 503 naming the reason within seconds, one log line with it, no secret, and the
    worker keeps waiting (no exit, no crash loop) for the operator to fix it."""
    changes, reason = FAILURES[case]
    changes = {k: str(secure.other_ca) if v == "OTHER_CA" else v.replace("REDIS_PORT", str(secure.redis_port))
               for k, v in changes.items()}
    worker = Worker(env=secure.env(**changes), log=tmp_path / "worker.log").start()
    try:
        body, log = _refused(worker, reason, secure, settle=6)  # several retries later
        if "certificate" in case or "hostname" in case:
            assert "TLS certificate not trusted" in body
        errors = [line for line in log.splitlines() if '"level": "error"' in line]
        assert len(errors) <= 2, errors  # ours, and at most one of aiokafka's (its repeats are dropped)
        assert "Traceback" not in log, log[-3000:]
        no_secret(body + log)
    finally:
        worker.stop()


def test_without_write_on_the_dead_letter_topic_it_says_so_at_start_and_counts_once_granted(
        secure: Secure, tmp_path: Path) -> None:
    """The worker may read its topics but not write its dead-letter topic: found at start-up (not at the first
    malformed event, which would be retried for ever): one log line and /health 503 naming the topic, the
    operation and the setting, no secret, no exit. Once an operator grants Write, the worker goes on by itself:
    ready, the dead letters written, /kpis equal to the oracle."""
    topics = secure.unwritable
    reason = f"kafka: user 'worker' is not authorized: it lacks Write on topic '{topics['dlq']}' (ADVOCACY_DLQ_TOPIC)"
    env = secure.env(ADVOCACY_APP_ID=NO_WRITE_APP, **secure.topic_env(topics))
    worker = Worker(env=env, log=tmp_path / "worker.log").start()
    try:
        started = time.monotonic()
        body, log = _refused(worker, reason, secure, settle=2.5)  # retries after 0.5 and 1 s at least
        assert "deploy/kafka/init.sh" in next(line for line in log.splitlines() if reason in line)
        no_secret(body + log)

        add_acls(secure.admin, [(TOPIC, topics["dlq"], LITERAL, "User:worker", WRITE)])
        granted = time.monotonic()
        worker.wait_ready(60)
        print(f"ready {time.monotonic() - granted:.1f} s after Write was granted")
        assert "accepts this worker now" in worker.log.read_text(errors="replace")
        scenario = build(time.time(), topics, seed=67, customers=20)
        dead = _counted_exactly(secure, worker, scenario, "exact kpis once Write is granted")
        assert dead == len(scenario.bad) > 0
        no_secret(health(worker)[1] + worker.log.read_text(errors="replace"))
        print(f"case took {time.monotonic() - started:.1f} s")
    finally:
        worker.stop()
