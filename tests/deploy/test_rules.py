"""The shipped Prometheus rules: promtool check and unit tests, their coverage, and their teeth.

The rule unit tests live in deploy/prometheus/tests (promtool format). Here they are run
with the real promtool, checked to cover every alert both firing and not firing, and
run again against deliberately broken copies of the rules, which they must reject.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import require_binary

from .observability import PROMETHEUS_DIR, ROOT, RULE_FILES

RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
KPI_SERIES = ("advocacy_actions", "advocacy_customers_active", "advocacy_support_interactions",
              "advocacy_advocates_created")


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def test_promtool_check_rules_is_clean() -> None:
    """`promtool check rules` accepts every rule file without a warning."""
    result = _promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in (result.stdout + result.stderr).upper()
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_check_config_accepts_prometheus_yml_and_its_rule_files() -> None:
    """The shipped prometheus.yml is valid and loads every rule file."""
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    """Every promtool unit test of deploy/prometheus/tests passes."""
    result = _promtool("test", "rules", *(str(p.relative_to(PROMETHEUS_DIR)) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    """Each alert has a promtool case where it fires and one where it does not (guard or resolved)."""
    fires: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"


def _slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    """severity, category, summary, description, for, and a runbook_url whose anchor is a runbook heading."""
    anchors = {_slug(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}
    for rule in _alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["labels"]["category"] in ("kpi", "pipeline"), name
        assert rule.get("for"), f"{name} has no for:"
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        url = annotations["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", name
        assert url.split("#")[1] in anchors, f"docs/runbook.md has no section for {name}"


def test_recording_rules_follow_level_metric_operations_and_never_sum_kpis_across_workers() -> None:
    """Names are level:metric:operations; raw KPI gauges are only ever read through a max across workers."""
    for rule in _rules():
        if "record" not in rule:
            continue
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
        for series in KPI_SERIES:
            for match in re.finditer(rf"(?<![:\w]){series}(?![:\w])", rule["expr"]):
                before = rule["expr"][:match.start()].rstrip()
                assert before.endswith("max without (instance, pod, job) ("), (
                    f"{rule['record']} reads {series} without taking the max across workers")


# --- the unit tests have teeth: broken rules fail them -----------------------------------------

MUTATIONS = {
    "no hysteresis (clear at 60% instead of 65%)": ("advocacy-kpi-alerts.yml", "< 0.65", "< 0.60"),
    "no volume guard": ("advocacy-kpi-alerts.yml", ">= 20", ">= 0"),
    "KPI summed across workers": ("advocacy-recording.yml", "max without (instance, pod, job) (advocacy_",
                                  "sum without (instance, pod, job) (advocacy_"),
    "overall rate as a mean of segment rates": (
        "advocacy-recording.yml",
        ("window:advocacy_actions:sum\n            / ignoring (window) group_left ()\n"
        "          (overall:advocacy_customers_active:sum > 0)"),
        "avg without (segment) (segment_window:advocacy_actions_rate:ratio)"),
    "alert on every window, not just 1h": ("advocacy-kpi-alerts.yml", '{window="1h"}', ""),
    "no for: duration": ("advocacy-kpi-alerts.yml", "for: 15m", "for: 0m"),
    "trend against the current hour": ("advocacy-kpi-alerts.yml", "[6h] offset 1h", "[6h]"),
    "Redis alert on an idle worker": ("advocacy-pipeline-alerts.yml", ("and on (instance, job)\n"
                                      "          advocacy_worker_ready == 0"), ""),
    "customers topic counted as stale": ("advocacy-pipeline-alerts.yml", '{topic!~".*customers"}', ""),
    "lag counted twice during a rebalance": ("advocacy-recording.yml",
                                             "max without (instance, pod, job) (advocacy_consumer_lag_messages)",
                                             "sum without (instance, pod, job) (advocacy_consumer_lag_messages)"),
    "dead letters without a minimum count": ("advocacy-pipeline-alerts.yml", "* 300 >= 10", "* 300 >= 0"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_rule_unit_tests_reject_a_broken_rule(mutation: str, tmp_path: Path) -> None:
    """A copy of the rules with one deliberate mistake fails `promtool test rules`."""
    filename, old, new = MUTATIONS[mutation]
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    target = tmp_path / "rules" / filename
    text = target.read_text()
    assert old in text, f"mutation {mutation!r} no longer applies: update MUTATIONS"
    target.write_text(text.replace(old, new))
    assert _promtool("check", "rules", str(target)).returncode == 0, "the mutant must still be valid"
    result = _promtool("test", "rules", *(f"tests/{p.name}" for p in RULE_TESTS), cwd=tmp_path)
    assert result.returncode != 0, f"the unit tests did not notice: {mutation}"
    assert "FAILED" in result.stdout + result.stderr
