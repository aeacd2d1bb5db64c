"""Real Prometheus and Alertmanager processes for the deploy tests, and their test overrides.

The shipped files under deploy/ are never edited: each test writes a copy into its tmp
directory with only what a test must change (scrape and evaluation intervals, `for:`
durations, Alertmanager timings, target addresses and webhook URLs), and points the
real binaries at those copies.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from stream.embedded import free_port, stop, wait_port
from tests.support import http_get, iso, require_binary, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
WORKER_JOB = "advocacy-worker"

# What the test overrides change, and nothing else.
TEST_SCRAPE_INTERVAL = "1s"
TEST_FOR = "2s"  # every alert's `for:` (15m, 30m... in the shipped rules)
TEST_AM_TIMING = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}


# --- test overrides -----------------------------------------------------------------------


def rules_with_short_for(tmp: Path, duration: str = TEST_FOR) -> list[Path]:
    """Copies of the shipped rule files with every alert's `for:` set to ``duration``."""
    out = []
    tmp.mkdir(parents=True, exist_ok=True)
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule and "for" in rule:
                    rule["for"] = duration
        copy = tmp / path.name
        copy.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(copy)
    return out


def prometheus_config(tmp: Path, worker_targets: list[str], alertmanager: str | None,
                      rule_files: list[Path]) -> Path:
    """The shipped prometheus.yml with test intervals, targets and rule file paths."""
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    doc["global"].update(scrape_interval=TEST_SCRAPE_INTERVAL, scrape_timeout=TEST_SCRAPE_INTERVAL,
                         evaluation_interval=TEST_SCRAPE_INTERVAL)
    doc["rule_files"] = [str(p) for p in rule_files]
    if alertmanager:
        doc["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    else:
        doc.pop("alerting", None)
    jobs = [job for job in doc["scrape_configs"] if job["job_name"] == WORKER_JOB]
    assert len(jobs) == 1, f"prometheus.yml must have exactly one {WORKER_JOB} job"
    jobs[0]["static_configs"] = [{"targets": worker_targets}]
    doc["scrape_configs"] = jobs
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def alertmanager_config(tmp: Path, webhook_base: str) -> Path:
    """The shipped alertmanager.yml with short timings and every webhook sent to the test.

    Each receiver's URL becomes ``{webhook_base}/{receiver name}``; routes, matchers,
    grouping and inhibitions are untouched.
    """
    doc = yaml.safe_load(ALERTMANAGER_YML.read_text())

    def retime(route: dict[str, Any]) -> None:
        for key, value in TEST_AM_TIMING.items():
            if key in route or route is doc["route"]:
                route[key] = value
        for child in route.get("routes", []):
            retime(child)

    retime(doc["route"])
    for receiver in doc["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_base}/{receiver['name']}"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- processes ------------------------------------------------------------------------------


def _get_json(url: str, timeout: float = 5.0) -> Any:
    status, body = http_get(url, timeout=timeout)
    assert status == 200, f"{url} -> {status}: {body[:500]!r}"
    return json.loads(body)


@dataclass
class Prometheus:
    """A real `prometheus` on a free loopback port."""

    config: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        binary = require_binary("prometheus")
        log = (self.workdir / "prometheus.log").open("ab")  # closed with the process
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        wait_for(lambda: http_get(self.url + "/-/ready")[0] == 200, 30, what="prometheus ready")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def api(self, path: str, **params: Any) -> Any:
        body = _get_json(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises AssertionError on a query error."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]  # type: ignore[no-any-return]

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"]
                if a["labels"].get("alertname") == alertname and a["state"] == "firing"]


@dataclass
class Alertmanager:
    """A real `prometheus-alertmanager`, clustering off, on a free loopback port."""

    config: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        binary = require_binary("prometheus-alertmanager")
        log = (self.workdir / "alertmanager.log").open("ab")  # closed with the process
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--storage.path={self.workdir / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        wait_for(lambda: http_get(self.url + "/-/ready")[0] == 200, 30, what="alertmanager ready")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        import urllib.request

        request = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200

    def alerts(self) -> list[dict[str, Any]]:
        return _get_json(self.url + "/api/v2/alerts")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Notification:
    """One webhook POST from Alertmanager."""

    path: str
    payload: dict[str, Any]
    received_at: float

    @property
    def receiver(self) -> str:
        return self.path.strip("/")


class Webhook:
    """A tiny HTTP server in the test process that records Alertmanager's webhook calls."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length))
                with outer._lock:
                    outer.notifications.append(Notification(self.path, payload, time.time()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Webhook:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def alerts(self, **labels: str) -> list[tuple[Notification, dict[str, Any]]]:
        """Every (notification, alert) whose alert carries all of ``labels``."""
        return [(n, a) for n in self.received() for a in n.payload["alerts"]
                if all(a["labels"].get(k) == v for k, v in labels.items())]


# --- events (docs/contract.md section 2) -----------------------------------------------------------


def _event(customer_id: str, at: float, **fields: Any) -> bytes:
    body = {"event_id": uuid.uuid4().hex, "customer_id": customer_id, "occurred_at": iso(at), **fields}
    return json.dumps(body).encode()


def registration_event(topics: dict[str, str], customer_id: str, segment: str, at: float) -> tuple[str, bytes, bytes]:
    return topics["customer"], customer_id.encode(), _event(customer_id, at, segment=segment, status="active")


def action_event(topics: dict[str, str], customer_id: str, at: float) -> tuple[str, bytes, bytes]:
    return topics["review"], customer_id.encode(), _event(customer_id, at, kind="testimonial")


def ticket_event(topics: dict[str, str], customer_id: str, team: str, at: float) -> tuple[str, bytes, bytes]:
    return topics["ticket"], customer_id.encode(), _event(
        customer_id, at, ticket_id=f"T-{uuid.uuid4().hex[:8]}", team=team)
