"""docker-compose.yml and the Dockerfile, validated with the real docker-compose (no engine needed).

`docker-compose -f docker-compose.yml config` parses, validates and resolves the file;
the tests read its resolved output, then check that the deploy/ files it mounts, the
scrape targets and the datasource URL agree with the services it defines.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tomllib
from functools import cache
from typing import Any

import yaml

from tests.support import require_binary

from .observability import DEPLOY, PROMETHEUS_DIR, ROOT, WORKER_JOB

SERVICES = {"kafka", "redis", "worker-1", "worker-2", "demo", "prometheus", "alertmanager", "grafana"}
WORKERS = ("worker-1", "worker-2")


@cache
def _config() -> dict[str, Any]:
    result = subprocess.run([require_binary("docker-compose"), "-f", "docker-compose.yml", "config"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
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


def test_docker_compose_config_validates_the_stack() -> None:
    """`docker-compose config` accepts the file and it defines the whole stack."""
    assert set(_services()) == SERVICES


def test_every_image_is_pinned_and_every_service_has_a_health_check() -> None:
    """No `latest`, no missing tag; each service declares a health check."""
    for name, service in _services().items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_kafka_runs_in_kraft_mode() -> None:
    """One broker that is its own controller; no ZooKeeper; a valid fixed cluster id."""
    env = _environment(_services()["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert not any("ZOOKEEPER" in key for key in env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"].split()[0] + "==")) == 16
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    """Redis runs with AOF on and /data on a named volume, so the KPI state survives restarts."""
    redis = _services()["redis"]
    command = redis["command"] if isinstance(redis["command"], list) else redis["command"].split()
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data:rw") or str(v).endswith(":/data") for v in redis["volumes"])


def test_two_workers_are_built_from_the_dockerfile_and_configured_by_the_contract_variables() -> None:
    """Each worker: built from ., the contract's ADVOCACY_* variables, waits for healthy Kafka and Redis."""
    for name in WORKERS:
        worker = _services()[name]
        assert worker["build"]["context"] == str(ROOT)
        assert worker["image"] == f"advocacy-stream:{_version()}"
        env = _environment(worker)
        assert env["ADVOCACY_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["ADVOCACY_REDIS_URL"] == "redis://redis:6379/0"
        assert env["ADVOCACY_WEB_PORT"] == "6066"
        assert env["ADVOCACY_APP_ID"] == "advocacy"
        assert {k: v["condition"] for k, v in worker["depends_on"].items()} == {
            "kafka": "service_healthy", "redis": "service_healthy"}
        assert "6066/health" in " ".join(worker["healthcheck"]["test"])
        assert "command" not in worker, "the image's CMD (python -m stream worker) runs the worker"


def test_the_demo_producer_is_opt_in() -> None:
    """Only the demo has a profile; it publishes with the workers' configuration."""
    services = _services()
    assert services["demo"]["profiles"] == ["demo"]
    assert [name for name, s in services.items() if s.get("profiles")] == ["demo"]
    assert services["demo"]["command"][:3] == ["python", "-m", "stream"]
    assert services["demo"]["command"][3] == "demo"
    assert _environment(services["demo"]) == _environment(services["worker-1"])


def _mounts(name: str) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    out = {}
    for volume in _services()[name].get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("/"):
            out[target] = source
    return out


def test_deploy_files_are_mounted_where_each_tool_reads_them() -> None:
    """Prometheus, Alertmanager and Grafana mount existing deploy/ directories at their config paths."""
    prometheus, alertmanager, grafana = _mounts("prometheus"), _mounts("alertmanager"), _mounts("grafana")
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
    for mounts in (prometheus, alertmanager, grafana):
        for source in mounts.values():
            assert (ROOT / source).exists(), source


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


def test_the_dockerfile_installs_the_project_and_runs_a_worker() -> None:
    """python:3.11-slim, pip install ., non-root, the contract's web port, CMD python -m stream worker."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert re.search(r"^EXPOSE 6066$", text, re.M)
    assert "ADVOCACY_WEB_PORT=6066" in text
    assert text.rstrip().endswith('CMD ["python", "-m", "stream", "worker"]')
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: missing"


def test_dockerignore_keeps_the_build_context_to_what_pip_install_needs() -> None:
    """Everything is ignored except pyproject.toml, README.md and stream/ (no .venv, no tests, no data)."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!stream/"} <= set(lines)
