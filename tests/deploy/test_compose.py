"""docker-compose.yml and the Dockerfile, validated with the real docker-compose (no engine needed).

`docker-compose config` parses, validates and resolves the file (with the values a user
puts in .env); the tests read its resolved output and check each property the stack
promises: nothing published beyond loopback, no default password, authenticated Kafka
and Redis, data on volumes, the contract's topic retention, current pinned images,
locked Python dependencies, hardened containers. The scripts it runs (deploy/kafka,
deploy/make-secrets.sh) are run for real in test_secrets.py.
"""

from __future__ import annotations

import base64
import inspect
import re
import subprocess
import tempfile
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from stream.config import Settings
from tests.support import require_binary

from .observability import DEPLOY, PROMETHEUS_DIR, ROOT, WORKER_JOB

SERVICES = {"kafka", "kafka-init", "redis", "worker-1", "worker-2", "demo", "prometheus", "alertmanager",
            "grafana"}
WORKERS = ("worker-1", "worker-2")
ONE_SHOT = {"kafka-init"}
# what a user puts in .env (the values are the test's own)
USER_ENV = {"GRAFANA_ADMIN_PASSWORD": "test-only-grafana-password", "SECRETS_DIR": "/srv/advocacy/secrets"}
# lowest acceptable release per image: Redis with the fixes for CVE-2025-49844 (7.4.6) and
# CVE-2025-21605 (7.4.3); Prometheus 3 (2.x is out of support); Grafana 12+ (11.x is out of
# support); Alertmanager of the Prometheus 3 era; Apache Kafka 4 (what the tests run)
MINIMUM = {"redis": "7.4.6", "prom/prometheus": "3.5.0", "prom/alertmanager": "0.28.0",
           "grafana/grafana": "12.0.0", "apache/kafka": "4.0.0"}
DIGEST = re.compile(r"^(?P<repo>[a-z0-9./_-]+):(?P<tag>[\w.-]+)@sha256:[0-9a-f]{64}$")


def _compose(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with exactly ``env`` (an empty env file: a developer's .env is not read)."""
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        return subprocess.run([require_binary("docker-compose"), "--env-file", empty.name, "-f",
                               "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False, env={"PATH": "/usr/bin:/bin", **env})


@cache
def _config() -> dict[str, Any]:
    result = _compose(USER_ENV)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


def _services() -> dict[str, Any]:
    return _config()["services"]  # type: ignore[no-any-return]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def _seconds(duration: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def _secret_paths(name: str) -> set[str]:
    return {f"/run/secrets/{s['source']}" for s in _services()[name].get("secrets", [])}


def test_docker_compose_config_validates_the_stack() -> None:
    """`docker-compose config` accepts the file (with .env filled in) and it defines the whole stack."""
    assert set(_services()) == SERVICES


def test_compose_refuses_to_start_without_what_env_example_lists() -> None:
    """Each variable .env.example lists is required: without it, compose stops and names it."""
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert listed == required == set(USER_ENV)
    for name in sorted(required):
        result = _compose({k: v for k, v in USER_ENV.items() if k != name})
        assert result.returncode != 0, f"compose started without {name}"
        assert name in result.stderr
        empty = _compose({**USER_ENV, name: ""})
        assert empty.returncode != 0, f"compose started with an empty {name}"
    assert not re.search(r"^GRAFANA_ADMIN_PASSWORD=\S", example, re.MULTILINE), ".env.example must not carry a password"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored
    assert "deploy/secrets/" in ignored


def test_every_image_is_pinned_by_tag_and_digest_at_a_supported_release() -> None:
    """Third-party images: repo:tag@sha256:digest, at or above the fixed/supported releases."""
    seen = set()
    for name, service in _services().items():
        image = service["image"]
        if "build" in service:
            assert image == f"advocacy-stream:{_version()}", name
            continue
        match = DIGEST.match(image)
        assert match, f"{name}: {image} is not pinned by tag and digest"
        repo, tag = match["repo"], match["tag"]
        seen.add(repo)
        release = re.match(r"v?(\d+\.\d+\.\d+)", tag)
        assert release, f"{name}: {tag} is not an exact release"
        assert Version(release[1]) >= Version(MINIMUM[repo]), f"{name}: {repo} {tag} < {MINIMUM[repo]}"
    assert seen == set(MINIMUM)


def test_the_kafka_version_is_written_once_and_is_the_version_the_tests_run() -> None:
    """One anchor holds the Apache Kafka image; any Maven POM in the repo pins the same kafka_2.13."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert len(re.findall(r"apache/kafka:", text)) == 1
    version = DIGEST.match(_services()["kafka"]["image"])["tag"]  # type: ignore[index]
    assert _services()["kafka-init"]["image"] == _services()["kafka"]["image"]
    assert Version(version).major >= 4
    for pom in ROOT.glob("**/pom.xml"):
        if ".venv" in pom.parts or "kafka_2.13" not in (body := pom.read_text()):
            continue
        properties = dict(re.findall(r"<([\w.-]+)>([^<]+)</\1>", body))
        block = re.search(r"<artifactId>kafka_2\.13</artifactId>\s*<version>([^<]+)</version>", body)
        assert block, f"{pom}: kafka_2.13 without a version"
        pinned = re.sub(r"\$\{([\w.-]+)\}", lambda m, p=properties: p[m[1]], block[1])
        assert pinned == version, f"{pom.relative_to(ROOT)} runs Kafka {pinned}, docker-compose.yml {version}"


def test_long_running_services_have_a_health_check() -> None:
    """Every service that keeps running declares a health check; the one-shot job runs once."""
    for name, service in _services().items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_only_what_a_user_needs_is_published_and_only_on_loopback() -> None:
    """Ports bind 127.0.0.1; Alertmanager, Redis, the init job and the demo publish nothing."""
    published = {}
    for name, service in _services().items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
            published.setdefault(name, []).append(text)
    assert set(published) == {"kafka", "worker-1", "worker-2", "prometheus", "grafana"}


def test_no_default_passwords_and_no_anonymous_grafana() -> None:
    """Grafana's password is the user's; anonymous access off; no password literal in any environment."""
    grafana = _environment(_services()["grafana"])
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == USER_ENV["GRAFANA_ADMIN_PASSWORD"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    for name, service in _services().items():
        for key, value in _environment(service).items():
            if name == "grafana" and key == "GF_SECURITY_ADMIN_PASSWORD":
                continue
            if "PASSWORD" in key:
                assert key.endswith("_FILE"), f"{name}: {key}={value}"
                assert value in _secret_paths(name), f"{name}: {key}={value}"
            assert not re.search(r"://[^/@\s]*:[^/@\s]+@", value), f"{name}: credentials in {key}"


def test_prometheus_cannot_be_stopped_or_administered_over_http() -> None:
    """No --web.enable-lifecycle (POST /-/quit) and no admin API, anywhere."""
    for name, service in _services().items():
        command = " ".join(service.get("command") or [])
        assert "--web.enable-lifecycle" not in command, name
        assert "--web.enable-admin-api" not in command, name


def _kafka_config() -> dict[str, str]:
    env = _environment(_services()["kafka"])
    return {k.removeprefix("KAFKA_CFG_").lower().replace("_", "."): v for k, v in env.items()
            if k.startswith("KAFKA_CFG_")}


def test_kafka_runs_in_kraft_mode_on_a_volume() -> None:
    """One broker that is its own controller; a valid fixed cluster id; its log on a named volume."""
    env, config = _environment(_services()["kafka"]), _kafka_config()
    assert set(config["process.roles"].split(",")) == {"broker", "controller"}
    assert config["controller.quorum.voters"] == f"{config['node.id']}@localhost:9093"
    assert not any("ZOOKEEPER" in key for key in env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    volumes = {str(v).split(":")[1]: str(v).split(":")[0] for v in _services()["kafka"]["volumes"]}
    assert volumes[config["log.dirs"]] in _config()["volumes"], "Kafka's log must be on a named volume"
    assert config["auto.create.topics.enable"] == "false"


def test_kafka_is_sasl_ssl_with_acls_for_the_workers_principal() -> None:
    """Every listener others reach is SASL_SSL (SCRAM-SHA-512); ACLs deny what they do not allow."""
    config = _kafka_config()
    protocols = dict(item.split(":") for item in config["listener.security.protocol.map"].split(","))
    listeners = dict(item.split("://") for item in config["listeners"].split(","))
    for name, address in listeners.items():
        if name == config["controller.listener.names"]:
            # the broker's own requests to its controller: container loopback only
            assert address.startswith("localhost:")
            assert protocols[name] == "PLAINTEXT"
        else:
            assert protocols[name] == "SASL_SSL", f"listener {name} is {protocols[name]}"
    advertised = dict(item.split("://") for item in config["advertised.listeners"].split(","))
    assert config["controller.listener.names"] not in advertised
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert set(config["super.users"].split(";")) == {"User:admin", "User:ANONYMOUS"}
    assert config["ssl.keystore.location"] in _secret_paths("kafka")
    for name in (*WORKERS, "demo"):
        env = _environment(_services()[name])
        assert env["ADVOCACY_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["ADVOCACY_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["ADVOCACY_KAFKA_SSL_CAFILE"] in _secret_paths(name)
        assert env["ADVOCACY_KAFKA_SASL_PASSWORD_FILE"] in _secret_paths(name)
    init = _environment(_services()["kafka-init"])
    assert init["WORKER_USER"] == _environment(_services()["worker-1"])["ADVOCACY_KAFKA_SASL_USERNAME"]
    assert init["PRODUCER_USER"] == _environment(_services()["demo"])["ADVOCACY_KAFKA_SASL_USERNAME"]
    assert init["APP_ID"] == _environment(_services()["worker-1"])["ADVOCACY_APP_ID"]
    assert {k: v["condition"] for k, v in _services()["kafka-init"]["depends_on"].items()} == {
        "kafka": "service_healthy"}


def test_topics_get_the_retention_the_contract_requires() -> None:
    """The init job's retention = longest window + attribution window + 1 day of the workers' settings."""
    env = _environment(_services()["worker-1"])
    settings = Settings(windows=env["ADVOCACY_WINDOWS"], attribution_window=env["ADVOCACY_ATTRIBUTION_WINDOW"])
    required_ms = (settings.longest_window_seconds + settings.attribution_window + 86400) * 1000
    init = _environment(_services()["kafka-init"])
    assert int(init["TOPIC_RETENTION_MS"]) >= required_ms
    defaults = Settings()
    assert init["SOURCE_TOPICS"].split() == [defaults.reviews_topic, defaults.referrals_topic, defaults.tickets_topic]
    assert init["CUSTOMERS_TOPIC"] == defaults.customers_topic
    assert init["DLQ_TOPIC"] == defaults.dlq_topic
    assert init["TOPIC_PARTITIONS"] == env["ADVOCACY_TOPIC_PARTITIONS"]


def test_redis_is_current_never_evicts_and_serves_only_its_acl_users() -> None:
    """AOF on a volume, noeviction under a memory cap below the container's, the ACL file from a secret."""
    redis = _services()["redis"]
    command = redis["command"]
    option = {command[i]: command[i + 1] for i in range(1, len(command) - 1) if command[i].startswith("--")}
    assert option["--appendonly"] == "yes"
    assert option["--maxmemory-policy"] == "noeviction"
    assert _bytes(option["--maxmemory"]) < _bytes(redis["mem_limit"])
    assert option["--aclfile"] in _secret_paths("redis")
    assert any(str(v).endswith(":/data:rw") or str(v).endswith(":/data") for v in redis["volumes"])
    assert redis["user"] == "redis", "runs as its own user: no root entry point"
    for name in WORKERS:
        env = _environment(_services()[name])
        assert "ADVOCACY_REDIS_URL" not in env
        assert env["ADVOCACY_REDIS_URL_FILE"] in _secret_paths(name)


def _bytes(size: str | int) -> int:
    if isinstance(size, int):
        return size
    number, unit = re.fullmatch(r"(\d+)\s*([kmg]?)b?", size.lower()).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** " kmg".index(unit or " ")


def test_containers_are_hardened() -> None:
    """no-new-privileges, every capability dropped, memory and CPU limits, rotated logs."""
    for name, service in _services().items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("cap_drop") == ["ALL"], name
        assert service.get("mem_limit"), f"{name}: no limits"
        assert float(service.get("cpus", 0)) > 0, f"{name}: no limits"
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert logging["options"]["max-size"], name
        assert int(logging["options"]["max-file"]) >= 1, name


def test_workers_get_longer_to_stop_than_their_final_batch() -> None:
    """stop_grace_period exceeds the worker's final-batch grace (stream.agents._finish) with room to commit."""
    from stream.agents import _finish

    grace = inspect.signature(_finish).parameters["grace"].default
    for name in WORKERS:
        assert _seconds(_services()[name]["stop_grace_period"]) >= grace + 10, name


def test_two_workers_are_built_from_the_dockerfile_and_configured_by_the_contract_variables() -> None:
    """Each worker: built from ., the contract's ADVOCACY_* variables, started after the init job and Redis."""
    for name in WORKERS:
        worker = _services()[name]
        assert worker["build"]["context"] == str(ROOT)
        env = _environment(worker)
        assert env["ADVOCACY_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["ADVOCACY_WEB_PORT"] == "6066"
        assert env["ADVOCACY_WEB_BIND"] == "0.0.0.0"  # inside the container; published on 127.0.0.1
        assert env["ADVOCACY_APP_ID"] == "advocacy"
        assert {k: v["condition"] for k, v in worker["depends_on"].items()} == {
            "kafka-init": "service_completed_successfully", "redis": "service_healthy"}
        assert "6066/health" in " ".join(worker["healthcheck"]["test"])
        assert "command" not in worker, "the image's CMD (python -m stream worker) runs the worker"


def test_the_demo_producer_is_opt_in_and_only_a_producer() -> None:
    """Only the demo has a profile; it publishes as the producer principal, without Redis credentials."""
    services = _services()
    demo = services["demo"]
    assert demo["profiles"] == ["demo"]
    assert [name for name, s in services.items() if s.get("profiles")] == ["demo"]
    assert demo["command"][:4] == ["python", "-m", "stream", "demo"]
    env = _environment(demo)
    assert not any(key.startswith("ADVOCACY_REDIS") for key in env)
    assert "/run/secrets/redis-url" not in _secret_paths("demo")


def _mounts(name: str) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts."""
    out = {}
    for volume in _services()[name].get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("/"):
            out[target] = source
    return out


def test_deploy_files_are_mounted_where_each_tool_reads_them() -> None:
    """Kafka, Prometheus, Alertmanager and Grafana mount existing deploy/ directories at their config paths."""
    prometheus, alertmanager, grafana = _mounts("prometheus"), _mounts("alertmanager"), _mounts("grafana")
    assert _mounts("kafka")["/opt/advocacy"] == _mounts("kafka-init")["/opt/advocacy"] == str(DEPLOY / "kafka")
    assert _services()["kafka"]["entrypoint"] == ["/opt/advocacy/start.sh"]
    assert _services()["kafka-init"]["entrypoint"] == ["/opt/advocacy/init.sh"]
    assert prometheus["/etc/prometheus"] == str(DEPLOY / "prometheus")
    assert "--config.file=/etc/prometheus/prometheus.yml" in _services()["prometheus"]["command"]
    assert alertmanager["/etc/alertmanager"] == str(DEPLOY / "alertmanager")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in _services()["alertmanager"]["command"]
    assert grafana["/etc/grafana/provisioning"] == str(DEPLOY / "grafana" / "provisioning")
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "advocacy.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana[dashboards_path] == str(DEPLOY / "grafana" / "dashboards")
    home = _environment(_services()["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_path + "/")
    for name in _services():
        for source in _mounts(name).values():
            assert (ROOT / source).exists(), source
    for script in ("start.sh", "init.sh"):
        assert (DEPLOY / "kafka" / script).stat().st_mode & 0o111, f"deploy/kafka/{script} is not executable"


def test_every_secret_a_service_names_is_declared_and_made_by_make_secrets() -> None:
    """Services mount declared secrets from SECRETS_DIR; deploy/make-secrets.sh writes each of them."""
    declared = _config()["secrets"]
    script = (DEPLOY / "make-secrets.sh").read_text()
    for name, secret in declared.items():
        assert Path(secret["file"]) == Path(USER_ENV["SECRETS_DIR"]) / name
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", script), f"make-secrets.sh does not make {name}"
    for service in _services().values():
        for secret in service.get("secrets", []):
            assert secret["source"] in declared


def test_prometheus_scrapes_every_worker_and_alerts_the_compose_alertmanager() -> None:
    """The advocacy-worker job lists exactly the compose workers; Grafana reads the compose Prometheus."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:6066" for name in _services() if name.startswith("worker")}
    managers = {t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"]
                for t in sc["targets"]}
    assert managers == {"alertmanager:9093"}
    source = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def test_the_dockerfile_installs_locked_dependencies_and_runs_a_worker() -> None:
    """Base pinned by digest, dependencies from requirements.lock with hashes, non-root, CMD python -m stream worker."""
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)\s*$", text, re.MULTILINE)
    assert base, "base image not pinned by digest"
    assert DIGEST.match(base[1]), "base image not pinned by digest"
    assert base[1].startswith("python:3.11"), "base image not pinned by digest"
    assert re.search(r"^RUN pip install --require-hashes --no-deps -r requirements\.lock\s*$", text, re.MULTILINE)
    assert re.search(r"^RUN pip install --no-deps --no-build-isolation --no-index \.", text, re.MULTILINE)
    assert text.index("requirements.lock") < text.index("COPY stream"), "dependencies before the code (layer cache)"
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 6066$", text, re.MULTILINE)
    assert "ADVOCACY_WEB_PORT=6066" in text
    assert "ADVOCACY_WEB_BIND=0.0.0.0" in text
    assert "ADVOCACY_REDIS_URL=" not in text, "the Redis URL (a secret) is never baked into the image"
    assert text.rstrip().endswith('CMD ["python", "-m", "stream", "worker"]')
    for source in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: missing"


def _lock() -> dict[str, tuple[str, list[str]]]:
    """Name -> (version, hashes) of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    out = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        assert match, f"requirements.lock: not an exact pin: {line[:60]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        assert hashes, f"requirements.lock: {match[1]} has no hash"
        out[match[1].lower().replace("_", "-")] = (match[2], hashes)
    return out


def test_the_lock_pins_every_dependency_with_hashes_as_the_tests_ran_them() -> None:
    """requirements.lock: exact versions with SHA-256 hashes that satisfy pyproject, equal to this venv's."""
    lock = _lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = [(Requirement(r), True) for r in project["project"]["dependencies"]]
    build = [(Requirement(r), False) for r in project["build-system"]["requires"]]
    for requirement, at_run_time in runtime + build:
        name = requirement.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not in requirements.lock (make lock)"
        version = lock[name][0]
        assert requirement.specifier.contains(version), f"{name}=={version} does not satisfy {requirement}"
        if at_run_time:
            assert metadata.version(name) == version, (
                f"the tests run {name} {metadata.version(name)}, the image {version}: make deps")
    assert "requirements.lock" in (ROOT / ".dockerignore").read_text()


def test_dockerignore_keeps_the_build_context_to_what_pip_install_needs() -> None:
    """Everything is ignored except the lock, pyproject.toml, README.md and stream/ (no .venv, tests, secrets)."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {"!requirements.lock", "!pyproject.toml", "!README.md", "!stream/"} <= set(lines)
    assert not any(line.startswith("!") and ("deploy" in line or ".env" in line) for line in lines)
