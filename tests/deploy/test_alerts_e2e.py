"""End to end: a real worker, Prometheus with the shipped rules, Alertmanager with the shipped routes.

Test overrides (tmp copies, never the shipped files): scrape and evaluation every 1 s,
every alert's `for:` shortened to 2 s, Alertmanager group_wait / group_interval 1 s,
webhook URLs pointed at a receiver in this process. Thresholds, volume guard,
hysteresis, labels, routes and grouping are the shipped ones.
"""

from __future__ import annotations

import time

import pytest

from tests.support import wait_for

from .conftest import Observed
from .observability import action_event, registration_event

pytestmark = pytest.mark.e2e

ALERT = "AdvocacyActionsRateLow"


def test_a_segment_below_60_percent_pages_its_owners_and_resolves_when_it_recovers(
        observed: Observed) -> None:
    """20 active smb customers with 5 actions (25%) fire the alert to the KPI owners; 20 actions resolve it."""
    topics = observed.namespace.topics
    hook = observed.webhook
    at = time.time() - 600
    customers = [f"smb-{i:02d}" for i in range(20)]
    observed.publish([registration_event(topics, c, "smb", at) for c in customers]
                     + [action_event(topics, c, at + 60) for c in customers[:5]])

    def firing() -> list:
        return [(n, a) for n, a in hook.alerts(alertname=ALERT, segment="smb") if a["status"] == "firing"]

    notification, alert = wait_for(firing, 90, what=f"{ALERT} for smb at the webhook")[0]
    assert notification.receiver == "kpi-advocacy-actions"
    assert notification.payload["receiver"] == "kpi-advocacy-actions"
    assert notification.payload["groupLabels"] == {"alertname": ALERT, "segment": "smb"}
    labels = alert["labels"]
    assert {k: labels[k] for k in ("severity", "category", "kpi", "segment", "window")} == {
        "severity": "critical", "category": "kpi", "kpi": "advocacy_actions",
        "segment": "smb", "window": "1h"}
    assert alert["annotations"]["summary"] == "Advocacy Actions rate of segment smb is low: 25.00% over 1h"
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#advocacyactionsratelow"
    # the KPI owners are paged, not the on-call engineer
    assert not [n for n in hook.received() if n.receiver == "oncall"
                and any(a["labels"].get("category") == "kpi" for a in n.payload["alerts"])]

    # recovery: 15 more customers act, 20 / 20 = 100%, above the 65% clear line
    observed.publish([action_event(topics, c, at + 120) for c in customers[5:]])

    def resolved() -> list:
        return [(n, a) for n, a in hook.alerts(alertname=ALERT, segment="smb") if a["status"] == "resolved"]

    notification, alert = wait_for(resolved, 90, what=f"{ALERT} for smb resolved at the webhook")[0]
    assert notification.receiver == "kpi-advocacy-actions"
    assert notification.payload["status"] == "resolved"
    assert alert["labels"]["segment"] == "smb"
    rate = observed.prometheus.query('segment_window:advocacy_actions_rate:ratio{segment="smb",window="1h"}')
    assert float(rate[0]["value"][1]) == 1.0
