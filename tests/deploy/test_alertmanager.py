"""The shipped Alertmanager configuration: amtool checks, routing cases, and a real Alertmanager.

Routing is checked two ways: `amtool config routes test` on the shipped file, one case
per shipped alert, and a real Alertmanager (shipped routes; only timings and webhook
URLs rewritten) receiving alerts through its API, to see grouping and inhibition act.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require_binary, wait_for

from .observability import ALERTMANAGER_YML, RULE_FILES, TEST_AM_TIMING, Alertmanager, Webhook, alertmanager_config

# Every shipped alert, with example labels as Prometheus would send them, and who gets it.
ROUTES = {
    "AdvocacyActionsRateLow": ({"segment": "smb", "window": "1h"}, "kpi-advocacy-actions"),
    "AdvocacyActionsRateLowOverall": ({"window": "1h"}, "kpi-advocacy-actions"),
    "AdvocacyActionsRateDropping": ({"segment": "smb", "window": "1h"}, "kpi-advocacy-actions"),
    "AdvocacyCreationRateLow": ({"team": "billing", "window": "1h"}, "kpi-support-teams"),
    "AdvocacyCreationRateLowOverall": ({"window": "1h"}, "kpi-support-teams"),
    "AdvocacyCreationRateDropping": ({"team": "billing", "window": "1h"}, "kpi-support-teams"),
    "AdvocacyNoWorkerUp": ({}, "oncall"),
    "AdvocacyRedisUnreachable": ({"instance": "worker-1:6066", "job": "advocacy-worker"}, "oncall"),
    "AdvocacyEventsStale": ({"topic": "reviews"}, "oncall"),
    "AdvocacyConsumerLagGrowing": ({"topic": "reviews"}, "oncall"),
    "AdvocacyDeadLettersRising": ({"topic": "reviews"}, "oncall"),
}


def _rule_labels() -> dict[str, dict[str, str]]:
    out = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    out[rule["alert"]] = {"alertname": rule["alert"], **rule["labels"]}
    return out


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_amtool_check_config_accepts_the_shipped_file() -> None:
    """`amtool check-config` passes on deploy/alertmanager/alertmanager.yml."""
    result = _amtool("check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_routing_table_covers_every_shipped_alert() -> None:
    """Each alert of deploy/prometheus/rules has a routing case below, and no case is stale."""
    assert set(ROUTES) == set(_rule_labels())


@pytest.mark.parametrize("alertname", list(ROUTES))
def test_amtool_routes_each_alert_to_its_owner(alertname: str) -> None:
    """`amtool config routes test`: KPI alerts go to their KPI's owners, pipeline alerts to on-call."""
    extra, receiver = ROUTES[alertname]
    labels = {**_rule_labels()[alertname], **extra}
    result = _amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_YML}",
                     f"--verify.receivers={receiver}", *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, f"{labels} -> {result.stdout.strip()} (expected {receiver})"


def test_amtool_sends_an_unknown_alert_to_oncall_rather_than_nowhere() -> None:
    """An alert nobody planned for (no category) still reaches a human: the on-call engineer."""
    result = _amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_YML}",
                     "--verify.receivers=oncall", "alertname=SomethingNew", "severity=critical")
    assert result.returncode == 0, result.stdout


def test_the_test_override_only_changes_timings_and_webhook_urls(tmp_path: Path) -> None:
    """The copy the live tests run has the shipped routes, matchers, grouping and inhibitions."""
    shipped = yaml.safe_load(ALERTMANAGER_YML.read_text())
    override = yaml.safe_load(alertmanager_config(tmp_path, "http://127.0.0.1:1").read_text())

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in TEST_AM_TIMING and k != "url"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    assert strip(override) == strip(shipped)


# --- a real Alertmanager ----------------------------------------------------------------------


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[Alertmanager]:
    manager = Alertmanager(alertmanager_config(tmp_path, webhook.url), tmp_path).start()
    try:
        yield manager
    finally:
        manager.stop()


def _alert(alertname: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    full = {**_rule_labels()[alertname], **ROUTES[alertname][0], **labels}
    return {"labels": full, "annotations": {"summary": alertname},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}


def _state(manager: Alertmanager, alertname: str, **labels: str) -> dict[str, Any]:
    for alert in manager.alerts():
        if alert["labels"]["alertname"] == alertname and all(alert["labels"].get(k) == v
                                                            for k, v in labels.items()):
            return alert["status"]  # type: ignore[no-any-return]
    raise AssertionError(f"{alertname} {labels} not in Alertmanager")


def test_kpi_alerts_are_grouped_per_segment_and_per_team(alertmanager: Alertmanager, webhook: Webhook) -> None:
    """Two segments below 60% are two notifications to the actions owners; two teams, two to support."""
    alertmanager.post_alerts([
        _alert("AdvocacyActionsRateLow", segment="smb"), _alert("AdvocacyActionsRateLow", segment="enterprise"),
        _alert("AdvocacyCreationRateLow", team="billing"), _alert("AdvocacyCreationRateLow", team="success"),
    ])
    wait_for(lambda: len(webhook.received()) >= 4, 30, what="four notifications")
    time.sleep(1.5)  # nothing else arrives: no group merges two segments or two teams
    got = sorted((n.receiver, tuple(sorted(n.payload["groupLabels"].items())), len(n.payload["alerts"]))
                 for n in webhook.received())
    assert got == [
        ("kpi-advocacy-actions", (("alertname", "AdvocacyActionsRateLow"), ("segment", "enterprise")), 1),
        ("kpi-advocacy-actions", (("alertname", "AdvocacyActionsRateLow"), ("segment", "smb")), 1),
        ("kpi-support-teams", (("alertname", "AdvocacyCreationRateLow"), ("team", "billing")), 1),
        ("kpi-support-teams", (("alertname", "AdvocacyCreationRateLow"), ("team", "success")), 1),
    ]


def test_kpi_alerts_are_held_back_while_the_pipeline_is_down(alertmanager: Alertmanager,
                                                             webhook: Webhook) -> None:
    """Stale events inhibit every KPI alert; dead letters alone do not; on-call is still paged."""
    alertmanager.post_alerts([_alert("AdvocacyEventsStale"), _alert("AdvocacyActionsRateLow", segment="smb"),
                              _alert("AdvocacyCreationRateLowOverall")])
    wait_for(lambda: webhook.alerts(alertname="AdvocacyEventsStale"), 30, what="the pipeline alert at on-call")
    assert webhook.received()[0].receiver == "oncall"
    for name in ("AdvocacyActionsRateLow", "AdvocacyCreationRateLowOverall"):
        status = _state(alertmanager, name)
        assert status["state"] == "suppressed", (name, status)
        assert status["inhibitedBy"], (name, status)
    time.sleep(2)
    assert [n.receiver for n in webhook.received()] == ["oncall"], "a KPI alert got through the inhibition"


@pytest.mark.parametrize("source", ["AdvocacyNoWorkerUp", "AdvocacyRedisUnreachable", "AdvocacyEventsStale",
                                    "AdvocacyConsumerLagGrowing"])
def test_each_pipeline_down_alert_inhibits_kpi_alerts(source: str, tmp_path: Path, webhook: Webhook) -> None:
    """No worker, Redis, stale events and growing lag each make the KPI numbers untrustworthy."""
    manager = Alertmanager(alertmanager_config(tmp_path, webhook.url), tmp_path).start()
    try:
        manager.post_alerts([_alert(source), _alert("AdvocacyActionsRateLow", segment="smb")])
        status = wait_for(lambda: _state(manager, "AdvocacyActionsRateLow"), 10, what="the KPI alert")
        assert status["state"] == "suppressed", status
    finally:
        manager.stop()


def test_dead_letters_do_not_inhibit_and_a_low_rate_only_inhibits_its_own_segments_drop(
        alertmanager: Alertmanager, webhook: Webhook) -> None:
    """DeadLettersRising leaves KPI alerts alone; Low(smb) hides Dropping(smb), not Dropping(enterprise)."""
    alertmanager.post_alerts([
        _alert("AdvocacyDeadLettersRising"), _alert("AdvocacyActionsRateLow", segment="smb"),
        _alert("AdvocacyActionsRateDropping", segment="smb"),
        _alert("AdvocacyActionsRateDropping", segment="enterprise"),
    ])
    wait_for(lambda: _state(alertmanager, "AdvocacyActionsRateDropping", segment="enterprise"), 10,
             what="the alerts in Alertmanager")
    assert _state(alertmanager, "AdvocacyActionsRateLow", segment="smb")["state"] == "active"
    assert _state(alertmanager, "AdvocacyActionsRateDropping", segment="smb")["state"] == "suppressed"
    assert _state(alertmanager, "AdvocacyActionsRateDropping", segment="enterprise")["state"] == "active"
    wait_for(lambda: webhook.alerts(alertname="AdvocacyActionsRateDropping", segment="enterprise"), 30,
             what="the enterprise drop warning")
    assert not webhook.alerts(alertname="AdvocacyActionsRateDropping", segment="smb")
