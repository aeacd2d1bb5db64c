"""Grafana dashboards and provisioning: static checks, and every query run against a real Prometheus.

Grafana cannot run here. Instead the live test does what Grafana would: it resolves each
template variable with its own query, substitutes the variables into every panel and
annotation query, and evaluates them against a real Prometheus (the shipped rules)
that has scraped a real worker fed with real events. A query that errors, or returns
no series (or only NaN), fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support import wait_for

from .conftest import Observed
from .observability import DEPLOY, Prometheus, action_event, iso, registration_event, ticket_event

GRAFANA = DEPLOY / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
EXPECTED_UIDS = {"advocacy-kpi-overview", "advocacy-drilldown", "advocacy-pipeline"}
# Grafana's built-in variables, as Grafana would expand them for a 15 s scrape interval.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.+),\s*)?(\w+)\)\s*$")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [p for p in out if p["type"] != "row"]


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(where, expr, instant) for every panel target and every Prometheus annotation."""
    out = []
    for panel in _panels(dashboard):
        for target in panel["targets"]:
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"],
                        bool(target.get("instant")) and not target.get("range")))
    for annotation in dashboard["annotations"]["list"]:
        if annotation.get("expr"):
            out.append((f"annotation {annotation['name']!r}", annotation["expr"], False))
    return out


def _datasource_uid() -> str:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


# --- static -----------------------------------------------------------------------------------


def test_the_dashboard_json_is_what_the_generator_writes() -> None:
    """deploy/grafana/dashboards/*.json equal build_dashboards.py's output: code and JSON never drift."""
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.DASHBOARDS) == {p.name for p in DASHBOARD_FILES}
    for path in DASHBOARD_FILES:
        assert module.render(module.DASHBOARDS[path.name]) == path.read_text(), (
            f"{path.name} is stale: run python deploy/grafana/build_dashboards.py")


def test_dashboards_have_fixed_uids_and_use_the_provisioned_datasource() -> None:
    """Fixed, unique uids; every panel and target reads the provisioned Prometheus uid."""
    uid = _datasource_uid()
    uids = set()
    for path in DASHBOARD_FILES:
        dashboard = _load(path)
        uids.add(dashboard["uid"])
        assert path.stem == dashboard["uid"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in _panels(dashboard):
            assert panel["datasource"]["uid"] == uid, f"{path.name}: {panel['title']}"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
            assert panel["gridPos"]["x"] >= 0
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid
    assert uids == EXPECTED_UIDS


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard_folder() -> None:
    """The datasource URL is the compose service; the provider path is where compose mounts the JSON."""
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "advocacy.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/etc/grafana/dashboards"


_RATE_SERIES = re.compile(r"(advocacy_actions|advocacy_customers_active|advocacy_advocates_created|_rate:ratio)")
_SHOWN = re.compile(r"^floor\(10000 \* [a-z_:]+(\{[^}]*\})? / (ignoring \(window\) group_left \(\) )?"
                    r"\([a-z_:]+(\{[^}]*\})? > 0\)\) / 10000$")


def _rate_panels() -> list[tuple[str, dict[str, Any]]]:
    """(file, panel) of every panel showing a KPI rate (unit percentunit, reading KPI series)."""
    return [(path.name, panel) for path in DASHBOARD_FILES for panel in _panels(_load(path))
            if panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
            and any(_RATE_SERIES.search(t["expr"]) for t in panel["targets"])]


def test_rate_panels_show_the_60_and_80_percent_bands() -> None:
    """Every panel of a rate (unit percentunit) has steps at 0.6 and 0.8."""
    checked = 0
    for name, panel in _rate_panels():
        defaults = panel["fieldConfig"]["defaults"]
        steps = [s["value"] for s in defaults["thresholds"]["steps"]]
        assert steps == [None, 0.6, 0.8], f"{name}: {panel['title']}: {steps}"
        if panel["type"] == "timeseries":
            assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
        checked += 1
    assert checked >= 10


def test_rate_panels_show_the_rate_rounded_down_to_two_decimals_of_a_percent() -> None:
    """Issue 11 case 4: every rate panel shows floor(10000 x numerator / denominator) / 10000 with two
    decimals, so 79.996% shows as 79.99%, never 80.00%; no panel shows an unrounded rate."""
    checked = 0
    for name, panel in _rate_panels():
        assert panel["fieldConfig"]["defaults"].get("decimals") == 2, f"{name}: {panel['title']}"
        for target in panel["targets"]:
            assert _SHOWN.match(target["expr"]), f"{name}: {panel['title']}: {target['expr']}"
            checked += 1
    for path in DASHBOARD_FILES:  # a rate shown anywhere else would be rounded to nearest
        for panel in _panels(_load(path)):
            if panel["fieldConfig"]["defaults"]["unit"] != "percentunit":
                assert not any(_RATE_SERIES.search(t["expr"]) and "/" in t["expr"] for t in panel["targets"]), \
                    f"{path.name}: {panel['title']}"
    assert checked >= 12


def test_kpi_overview_annotates_firing_kpi_alerts_and_drill_down_has_segment_and_team_variables() -> None:
    """The overview marks firing KPI alerts; the drill down is driven by $segment, $team and $window."""
    overview = _load(GRAFANA / "dashboards" / "advocacy-kpi-overview.json")
    exprs = [a.get("expr", "") for a in overview["annotations"]["list"]]
    assert 'ALERTS{alertstate="firing", category="kpi"}' in exprs
    drill = _load(GRAFANA / "dashboards" / "advocacy-drilldown.json")
    assert {v["name"] for v in drill["templating"]["list"]} == {"window", "segment", "team"}


# --- live -------------------------------------------------------------------------------------


def _resolve_variables(prometheus: Prometheus, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's value, found with its own query the way Grafana would; current value first."""
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: unsupported query {query!r}"
        metric, label = match.groups()
        params = {"match[]": metric} if metric else {}
        options = prometheus.api(f"label/{label}/values", **params)
        assert options, f"variable {variable['name']}: {query} returned nothing"
        current = (variable.get("current") or {}).get("value")
        values[variable["name"]] = current if current in options else options[0]
    return values


def _substitute(expr: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        assert name in values, f"undefined variable ${name} in {expr!r}"
        return values[name]

    return _VARIABLE.sub(one, expr)


def _has_data(result: list[dict[str, Any]]) -> bool:
    for series in result:
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(not math.isnan(float(v)) for _, v in points):
            return True
    return False


def test_every_dashboard_query_returns_data_from_a_real_prometheus(observed: Observed) -> None:
    """Each panel and annotation query, variables substituted, runs without error and returns data."""
    topics, prom = observed.namespace.topics, observed.prometheus
    at = time.time() - 900
    customers = [f"smb-{i:02d}" for i in range(20)]
    # smb: 5 actions for 20 active customers (25%); billing: 20 tickets, 5 of those
    # customers act within the attribution window (25%); one malformed review.
    observed.publish([registration_event(topics, c, "smb", at) for c in customers]
                     + [ticket_event(topics, c, "billing", at + 60) for c in customers]
                     + [action_event(topics, c, at + 120) for c in customers[:5]]
                     + [(topics["review"], b"bad", b"{not json")])
    wait_for(lambda: prom.query("advocacy_dead_letters_total") and prom.query(
        'team_window:advocacy_creation_rate:ratio{team="billing"}'), 60, what="the first scrapes")
    # more traffic once the counters exist, so that rate() sees them rise (Prometheus
    # cannot see the increase that created a series): a burst of bad input, a review
    # that is no advocacy action, one more billing ticket (5 / 21 is still low)
    observed.publish([(topics["review"], None, b"{not json either") for _ in range(20)]
                     + [(topics["review"], b"smb-19", json.dumps({
                         "event_id": "late-review", "customer_id": "smb-19", "occurred_at": iso(at + 180),
                         "kind": "review", "rating": 2}).encode()),
                        ticket_event(topics, "smb-19", "billing", at + 180)])
    for alertname in ("AdvocacyActionsRateLow", "AdvocacyCreationRateLow", "AdvocacyDeadLettersRising"):
        wait_for(lambda name=alertname: prom.firing(name), 60, what=f"{alertname} firing")
    time.sleep(2)  # the ALERTS series of the last evaluations are scraped into range queries

    failures, evaluated = [], 0
    for path in DASHBOARD_FILES:
        dashboard = _load(path)
        values = _resolve_variables(prom, dashboard)
        for where, expr, instant in _queries(dashboard):
            query = _substitute(expr, values)
            try:
                result = (prom.query(query) if instant
                          else prom.query_range(query, prom.started_at, time.time(), 1.0))
            except AssertionError as exc:
                failures.append(f"{path.name} {where}: {query}: error {exc}")
                continue
            evaluated += 1
            if not _has_data(result):
                failures.append(f"{path.name} {where}: {query}: no data")
    assert not failures, "\n".join(failures)
    assert evaluated >= 40

    # what a rate panel shows is the worker's percent: billing has 5 advocates / 21 interactions
    # (23.8095...%), shown as 23.80%; its recorded ratio would round to 23.81%
    overview = _load(GRAFANA / "dashboards" / "advocacy-kpi-overview.json")
    [panel] = [p for p in _panels(overview) if p["title"] == "Now, per team"]
    query = _substitute(panel["targets"][0]["expr"], _resolve_variables(prom, overview))
    shown = {s["metric"]["team"]: float(s["value"][1]) for s in prom.query(query)}
    [row] = [r for r in observed.worker.kpis("1h")["advocacy_creation"] if r["team"] == "billing"]
    assert (row["advocates_created"], row["support_interactions"], row["percent"]) == (5, 21, 23.8)
    assert round(shown["billing"] * 10_000) == round(row["percent"] * 100) == 2380
