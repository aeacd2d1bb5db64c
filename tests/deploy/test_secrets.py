"""The compose stack's secrets and scripts, run for real (openssl, redis-server, a worker).

deploy/make-secrets.sh writes the files docker-compose.yml mounts; the Redis ACL file it
writes is loaded by a real redis-server, and a real worker reads its Redis URL from the
secret file (ADVOCACY_REDIS_URL_FILE) and counts events through that restricted user.
deploy/kafka/start.sh and init.sh run with the Kafka tools replaced by recorders, so the
broker configuration and the ACL commands they produce are checked line by line.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stream.embedded import free_port, stop, wait_port
from tests.conftest import Namespace
from tests.support import Worker, produce, require_binary, rows, wait_for

from .observability import DEPLOY, ROOT

SECRETS = ("kafka-ca.pem", "kafka-broker.pem", "kafka-admin-password", "kafka-worker-password",
           "kafka-producer-password", "redis-users.acl", "redis-url")


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_binary("openssl")
    directory = tmp_path_factory.mktemp("compose") / "secrets"
    subprocess.run([str(DEPLOY / "make-secrets.sh"), str(directory)], check=True, capture_output=True, timeout=120)
    return directory


def test_make_secrets_writes_every_secret_privately_and_only_once(secrets: Path) -> None:
    """Every file compose mounts exists; the folder is 0700, the CA key 0600; a second run keeps them all."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose["secrets"]) == set(SECRETS)
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE((secrets / "kafka-ca.key").stat().st_mode) == 0o600
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    assert set(SECRETS) <= set(before)
    subprocess.run([str(DEPLOY / "make-secrets.sh"), str(secrets)], check=True, capture_output=True, timeout=60)
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before
    for name in ("kafka-admin-password", "kafka-worker-password", "kafka-producer-password"):
        assert re.fullmatch(r"[0-9a-f]{48}", (secrets / name).read_text().strip()), name
    passwords = {(secrets / n).read_text() for n in before if n.endswith("-password")}
    assert len(passwords) == 4, "each password is its own"


def test_the_broker_certificate_is_signed_by_the_ca_for_the_names_clients_use(secrets: Path) -> None:
    """kafka-broker.pem: an unencrypted PKCS#8 key and a chain that verifies for kafka and localhost."""
    pem = (secrets / "kafka-broker.pem").read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----"), "Kafka's PEM key store needs PKCS#8"
    leaf = pem[pem.index("-----BEGIN CERTIFICATE-----"):].split("-----END CERTIFICATE-----")[0]
    (secrets.parent / "leaf.pem").write_text(leaf + "-----END CERTIFICATE-----\n")
    for host in ("kafka", "localhost"):
        result = subprocess.run(["openssl", "verify", "-CAfile", str(secrets / "kafka-ca.pem"), "-verify_hostname",
                                 host, str(secrets.parent / "leaf.pem")], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    wrong = subprocess.run(["openssl", "verify", "-CAfile", str(secrets / "kafka-ca.pem"), "-verify_hostname",
                            "evil.example", str(secrets.parent / "leaf.pem")], capture_output=True, check=False)
    assert wrong.returncode != 0


@pytest.fixture
def acl_redis(secrets: Path, tmp_path: Path) -> Iterator[int]:
    """A redis-server with only the ACL file of make-secrets.sh."""
    port = free_port()
    proc = subprocess.Popen([require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path), "--save", "", "--aclfile", str(secrets / "redis-users.acl"),
                             "--logfile", str(tmp_path / "redis.log")])
    try:
        wait_port(port, proc=proc)
        yield port
    finally:
        stop(proc)


def _cli(port: int, *args: str, user: str | None = None, password: str | None = None) -> str:
    auth = ["--user", user, "--pass", password, "--no-auth-warning"] if user and password else []
    return subprocess.run([require_binary("redis-cli"), "-p", str(port), *auth, *args], capture_output=True,
                          text=True, timeout=10, check=False).stdout.strip()


def test_redis_users_are_limited_to_ping_and_to_the_services_keys(secrets: Path, acl_redis: int) -> None:
    """default: PING only; advocacy: its advocacy* keys, no admin, no flush, no KEYS, no functions."""
    password = (secrets / "redis-worker-password").read_text().strip()
    assert _cli(acl_redis, "ping") == "PONG"
    assert _cli(acl_redis, "get", "advocacy:meta").startswith("NOPERM")
    # a wrong password leaves the connection as the default user: nothing but PING
    assert _cli(acl_redis, "set", "advocacy:x", "1", user="advocacy", password="wrong").startswith("NOPERM")
    ok = {"set": ("set", "advocacy:x", "1"), "eval": ("eval", "return redis.call('get', KEYS[1])", "1", "advocacy:x")}
    assert _cli(acl_redis, *ok["set"], user="advocacy", password=password) == "OK"
    assert _cli(acl_redis, *ok["eval"], user="advocacy", password=password) == "1"
    for denied in (("set", "other:x", "1"), ("eval", "return redis.call('get', KEYS[1])", "1", "other:x"),
                   ("flushall",), ("flushdb",), ("keys", "*"), ("config", "get", "*"), ("acl", "list"),
                   ("function", "flush"), ("script", "flush"), ("shutdown",), ("client", "kill", "127.0.0.1:1"),
                   ("publish", "c", "m"), ("info",)):
        assert _cli(acl_redis, *denied, user="advocacy", password=password).startswith("NOPERM"), denied
    assert (secrets / "redis-url").read_text().strip() == f"redis://advocacy:{password}@redis:6379/0"
    assert password not in (secrets / "redis-users.acl").read_text(), "the ACL file keeps only a hash"


def test_a_worker_counts_through_the_restricted_redis_user_with_its_url_from_a_file(
        secrets: Path, acl_redis: int, namespace: Namespace, tmp_path: Path) -> None:
    """ADVOCACY_REDIS_URL_FILE with the compose URL: the worker's reads, Lua commits and pruning all pass the ACL."""
    url = (secrets / "redis-url").read_text().strip().replace("@redis:6379", f"@127.0.0.1:{acl_redis}")
    (tmp_path / "redis-url").write_text(url + "\n")
    env = {k: v for k, v in namespace.env.items() if k != "ADVOCACY_REDIS_URL"}
    env.update(ADVOCACY_APP_ID="advocacy", ADVOCACY_REDIS_URL_FILE=str(tmp_path / "redis-url"))
    worker = Worker(env=env, log=tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        now = time.time()
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
        customer = {"event_id": str(uuid.uuid4()), "customer_id": "c1", "occurred_at": at,
                    "segment": "smb", "status": "active"}
        review = {"event_id": str(uuid.uuid4()), "customer_id": "c1", "occurred_at": at, "kind": "testimonial"}
        produce(namespace.stack.bootstrap, [(namespace.topics["customer"], b"c1", json.dumps(customer).encode()),
                                            (namespace.topics["review"], b"c1", json.dumps(review).encode())])

        def counted() -> bool:
            row = rows(worker.kpis("1h"), "advocacy_actions", "segment").get(("smb", "1h"))
            return bool(row and row["actions"] == 1 and row["customers"] == 1)

        wait_for(counted, 30, what="the action counted through the ACL user")
        log = (tmp_path / "worker.log").read_text()
        assert "NOPERM" not in log
        assert "NoPermission" not in log
        assert url.split("@")[0].split(":")[-1] not in log, "the Redis password must never be logged"
    finally:
        worker.stop()


def _recorder(bin_dir: Path, record: Path) -> None:
    """Stand-ins for the Kafka tools: each appends its name, arguments and any config file it was given."""
    bin_dir.mkdir(parents=True)
    for tool in ("kafka-storage.sh", "kafka-server-start.sh", "kafka-configs.sh", "kafka-topics.sh", "kafka-acls.sh"):
        script = bin_dir / tool
        script.write_text(f"#!/usr/bin/env bash\nprintf '%s' '{tool}' >> {record}\n"
                          f"for a in \"$@\"; do printf ' %s' \"$a\" >> {record}; done\necho >> {record}\n")
        script.chmod(0o755)


def test_the_broker_entry_point_writes_its_config_from_the_environment_and_the_secrets(
        secrets: Path, tmp_path: Path) -> None:
    """start.sh: KAFKA_CFG_* -> properties, the admin's JAAS only in the file, SCRAM added at format."""
    home, record = tmp_path / "kafka", tmp_path / "calls"
    _recorder(home / "bin", record)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    env.update(PATH=os.environ["PATH"], KAFKA_HOME=str(home), SECRETS_PATH=str(secrets))
    result = subprocess.run([str(DEPLOY / "kafka" / "start.sh")], env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    properties = dict(line.split("=", 1) for line in (home / "config" / "advocacy" / "server.properties")
                      .read_text().splitlines() if line and not line.startswith("#"))
    assert properties["listeners"] == env["KAFKA_CFG_LISTENERS"]
    assert properties["listener.security.protocol.map"] == env["KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["log.dirs"] == "/var/lib/kafka/data"
    admin = (secrets / "kafka-admin-password").read_text().strip()
    assert f'password="{admin}"' in properties["listener.name.internal.scram-sha-512.sasl.jaas.config"]
    assert not any(admin in value for value in env.values())
    assert stat.S_IMODE((home / "config" / "advocacy" / "server.properties").stat().st_mode) == 0o600
    calls = record.read_text().splitlines()
    assert calls[0].startswith("kafka-storage.sh format --ignore-formatted --cluster-id " + env["CLUSTER_ID"])
    assert f"SCRAM-SHA-512=[name=admin,password={admin}]" in calls[0]
    assert calls[1] == f"kafka-server-start.sh {home}/config/advocacy/server.properties"
    client = (home / "config" / "admin-client.properties").read_text()
    assert "security.protocol=SASL_SSL" in client
    assert f"ssl.truststore.location={secrets}/kafka-ca.pem" in client


def test_the_init_job_creates_users_topics_with_retention_and_least_privilege_acls(
        secrets: Path, tmp_path: Path) -> None:
    """init.sh: both SCRAM users, every topic with its retention or compaction, exactly the ACLs listed."""
    home, record = tmp_path / "kafka", tmp_path / "calls"
    _recorder(home / "bin", record)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {k: str(v) for k, v in compose["services"]["kafka-init"]["environment"].items()}
    env.update(PATH=os.environ["PATH"], KAFKA_HOME=str(home), SECRETS_PATH=str(secrets))
    result = subprocess.run([str(DEPLOY / "kafka" / "init.sh")], env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    calls = [c.split(" --command-config ")[1].split(" ", 1)[1] for c in record.read_text().splitlines()]
    worker = (secrets / "kafka-worker-password").read_text().strip()
    assert ("--alter --entity-type users --entity-name advocacy --add-config "
            f"SCRAM-SHA-512=[iterations=8192,password={worker}]") in calls
    retention = f"retention.ms={env['TOPIC_RETENTION_MS']}"
    for topic in ("reviews", "referrals", "tickets-closed", "advocacy-dlq"):
        assert (f"--create --if-not-exists --topic {topic} --partitions 4 --replication-factor 1 "
                f"--config {retention} --config cleanup.policy=delete") in calls
        assert f"--alter --entity-type topics --entity-name {topic} --add-config {retention},cleanup.policy=delete" \
            in calls
    assert ("--create --if-not-exists --topic customers --partitions 4 --replication-factor 1 "
            "--config cleanup.policy=compact --config retention.ms=-1") in calls
    assert "--alter --entity-type topics --entity-name customers --add-config cleanup.policy=compact,retention.ms=-1" \
        in calls
    acls = sorted(c.removeprefix("--add --force ") for c in calls if c.startswith("--add --force"))
    expected = sorted(
        [f"--allow-principal User:advocacy --operation Read --operation Describe --operation DescribeConfigs "
         f"--topic {t}" for t in ("reviews", "referrals", "tickets-closed", "customers")]
        + [f"--allow-principal User:producer --operation Write --operation Describe --topic {t}"
           for t in ("reviews", "referrals", "tickets-closed", "customers")]
        + [("--allow-principal User:advocacy --operation Write --operation Describe --operation DescribeConfigs "
           "--topic advocacy-dlq"),
           "--allow-principal User:producer --operation Describe --topic advocacy-dlq",
           "--allow-principal User:advocacy --operation All --resource-pattern-type prefixed --topic advocacy-__",
           ("--allow-principal User:advocacy --operation Read --operation Describe --resource-pattern-type prefixed "
           "--group advocacy")])
    assert acls == expected
    assert worker not in result.stdout + result.stderr
