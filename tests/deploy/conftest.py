"""Fixtures: a real worker observed by a real Prometheus (shipped rules) and Alertmanager."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Namespace
from tests.support import Worker, wait_for

from .observability import (
    WORKER_JOB,
    Alertmanager,
    Prometheus,
    Webhook,
    alertmanager_config,
    prometheus_config,
    rules_with_short_for,
)


@dataclass(frozen=True)
class Observed:
    """One worker on the embedded broker and Redis, scraped and alerted on for real."""

    namespace: Namespace
    worker: Worker
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: Webhook

    def publish(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        from tests.support import produce

        produce(self.namespace.stack.bootstrap, messages)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook().start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def observed(namespace: Namespace, tmp_path: Path, webhook: Webhook) -> Iterator[Observed]:
    """Worker + Alertmanager (shipped routes) + Prometheus (shipped rules, `for:` shortened)."""
    worker = namespace.worker(tmp_path).start()
    alertmanager = prometheus = None
    try:
        alertmanager = Alertmanager(alertmanager_config(tmp_path, webhook.url), tmp_path).start()
        rules = rules_with_short_for(tmp_path / "rules")
        config = prometheus_config(tmp_path, [f"127.0.0.1:{worker.port}"], alertmanager.address, rules)
        worker.wait_ready()
        prometheus = Prometheus(config, tmp_path).start()
        wait_for(lambda: prometheus.query(f'up{{job="{WORKER_JOB}"}} == 1'), 30,
                 what="prometheus to scrape the worker")
        yield Observed(namespace, worker, prometheus, alertmanager, webhook)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if alertmanager is not None:
            alertmanager.stop()
        worker.stop()
