"""Writes deploy/grafana/dashboards/*.json: the dashboards as code.

Edit this file, run ``python deploy/grafana/build_dashboards.py`` and commit both; the
test suite fails when the JSON and this file disagree. Standard library only.

Every query reads the recording rules of deploy/prometheus/rules where one exists, so a
dashboard and an alert always show the same number. The datasource uid is fixed to the
one provisioned in provisioning/datasources/prometheus.yml.

A rate is shown as /kpis shows ``percent``: rate x 100 rounded DOWN to two decimals, so a
shown value is never on the other side of a band line (60%, 80%) from its band. Grafana
only rounds to nearest (79.996% would show as 80.00%), so each rate query is
``floor(10000 * numerator / denominator) / 10000`` over the recorded numerator and
denominator, divided as the recording rule divides them (``shown_rate``: an integer
quotient floored, exact), and every rate panel shows exactly two decimals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"
TAGS = ["advocacy"]

# Contract bands: low < 60% <= moderate < 80% <= high.
BANDS = {"mode": "absolute", "steps": [
    {"color": "red", "value": None},
    {"color": "orange", "value": 0.6},
    {"color": "green", "value": 0.8},
]}


class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def place(self, width: int, height: int) -> tuple[int, dict[str, int]]:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        self.row_height = max(self.row_height, height)
        panel_id, self.next_id = self.next_id, self.next_id + 1
        return panel_id, pos

    def row(self, title: str) -> dict[str, Any]:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel_id, pos = self.place(24, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0
        return {"id": panel_id, "type": "row", "title": title, "collapsed": False, "gridPos": pos,
                "panels": []}


# recorded rate -> (numerator, denominator, how they are matched): the division of the recording rule
PER_SEGMENT = "ignoring (window) group_left ()"  # active customers have no window label
RATES = {
    "segment_window:advocacy_actions_rate:ratio": (
        "segment_window:advocacy_actions:max", "segment:advocacy_customers_active:max", PER_SEGMENT),
    "window:advocacy_actions_rate:ratio": (
        "window:advocacy_actions:sum", "overall:advocacy_customers_active:sum", PER_SEGMENT),
    "team_window:advocacy_creation_rate:ratio": (
        "team_window:advocacy_advocates_created:max", "team_window:advocacy_support_interactions:max", ""),
    "window:advocacy_creation_rate:ratio": (
        "window:advocacy_advocates_created:sum", "window:advocacy_support_interactions:sum", ""),
}


def shown_rate(rate: str, matchers: str = "") -> str:
    """The recorded ``rate``{matchers} as shown: rate x 100 rounded down to two decimals (a fraction of 1).

    ``floor(10000 * n / d)`` of integer counts is exact (the quotient is correctly rounded and never
    closer than 1/d to an integer it has not reached), which ``floor(10000 * rate)`` is not (0.29 x
    10000 is 2899.9999999999995). Matchers on ``window`` are dropped from a denominator without it.
    """
    numerator, denominator, join = RATES[rate]
    label_names = {"segment_window": ("segment", "window"), "window": ("window",), "team_window": ("team", "window"),
                   "segment": ("segment",), "overall": ()}
    kept = [m.strip() for m in matchers.split(",") if m.strip()]

    def select(series: str) -> str:
        names = label_names[series.split(":", maxsplit=1)[0]]
        own = [m for m in kept if m.split("=")[0].strip() in names]
        return f"{series}{{{', '.join(own)}}}" if own else series

    division = f"{select(numerator)} / {join + ' ' if join else ''}({select(denominator)} > 0)"
    return f"floor(10000 * {division}) / 10000"


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"refId": ref, "datasource": DATASOURCE, "expr": expr,
                           "legendFormat": legend, "range": not instant, "instant": instant}
    if table:
        out["format"] = "table"
    return out


def panel(layout: Layout, kind: str, title: str, targets: list[dict[str, Any]], *, width: int = 12,
          height: int = 8, unit: str = "short", description: str = "", bands: bool = False,
          thresholds: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
          minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    panel_id, pos = layout.place(width, height)
    defaults: dict[str, Any] = {"unit": unit, "custom": {}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if bands or thresholds:
        defaults["thresholds"] = thresholds or BANDS
        defaults["color"] = {"mode": "thresholds"}
    if bands:  # a rate: two decimals, of a value already rounded down to them (``shown_rate``)
        defaults["decimals"] = 2
    if kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 2, "fillOpacity": 0, "spanNulls": True,
                              "thresholdsStyle": {"mode": "line+area" if bands else
                                                  ("dashed" if thresholds else "off")}}
    base_options: dict[str, Any] = {}
    if kind in ("stat", "bargauge", "gauge"):
        base_options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "orientation": "horizontal"}
        if kind == "stat":
            base_options.update(colorMode="background", graphMode="area", textMode="value_and_name")
        if kind == "bargauge":
            base_options.update(displayMode="gradient", showUnfilled=True)
    if kind == "timeseries":
        base_options = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"],
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    base_options.update(options or {})
    return {"id": panel_id, "type": kind, "title": title, "description": description, "gridPos": pos,
            "datasource": DATASOURCE, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": base_options}


def query_variable(name: str, label: str, query: str, current: str | None = None) -> dict[str, Any]:
    selected = {"text": current, "value": current} if current else {}
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2, "sort": 1, "multi": False, "includeAll": False, "current": selected,
            "options": [], "hide": 0}


WINDOW = query_variable("window", "Window", "label_values(window:advocacy_actions_rate:ratio, window)", "1h")


def alert_annotation(name: str, expr: str, color: str) -> dict[str, Any]:
    return {"name": name, "datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": color,
            "expr": expr, "step": "60s", "titleFormat": "{{alertname}}",
            "textFormat": "{{severity}} {{segment}}{{team}}{{topic}} {{window}}",
            "tagKeys": "alertname,severity", "useValueForTime": False}


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              variables: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
               "type": "dashboard"}
    return {
        "uid": uid, "title": title, "description": description, "tags": TAGS, "editable": False,
        "schemaVersion": 39, "version": 1, "timezone": "browser", "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "graphTooltip": 1, "fiscalYearStartMonth": 0,
        "links": [{"type": "dashboards", "tags": TAGS, "asDropdown": True, "title": "Advocacy",
                   "includeVars": True, "keepTime": True}],
        "annotations": {"list": [builtin, *annotations]},
        "templating": {"list": variables}, "panels": panels,
    }


# --- KPI overview ---------------------------------------------------------------------------


def kpi_overview() -> dict[str, Any]:
    lay = Layout()
    w = 'window="$window"'
    panels = [
        lay.row("Overall ($window)"),
        panel(lay, "stat", "Advocacy Actions rate", [target(shown_rate("window:advocacy_actions_rate:ratio", w),
              "overall")], width=6, height=5, unit="percentunit", bands=True,
              description="All advocacy actions in the window / all active customers (sums, divided once)."),
        panel(lay, "stat", "Customer Advocacy Creation", [target(
              shown_rate("window:advocacy_creation_rate:ratio", w), "overall")], width=6, height=5,
              unit="percentunit", bands=True,
              description="All advocates created in the window / all support interactions."),
        panel(lay, "stat", "Active customers", [target("overall:advocacy_customers_active:sum", "customers")],
              width=4, height=5),
        panel(lay, "stat", "Advocacy actions", [target(f"window:advocacy_actions:sum{{{w}}}", "actions")],
              width=4, height=5),
        panel(lay, "stat", "Support interactions", [target(
              f"window:advocacy_support_interactions:sum{{{w}}}", "interactions")], width=4, height=5),
        panel(lay, "timeseries", "Overall rates", [
            target(shown_rate("window:advocacy_actions_rate:ratio", w), "Advocacy Actions rate"),
            target(shown_rate("window:advocacy_creation_rate:ratio", w), "Customer Advocacy Creation", "B"),
        ], width=24, unit="percentunit", bands=True, minimum=0,
            description="Bands: red below 60% (low), orange 60-80% (moderate), green from 80% (high)."),
        lay.row("Advocacy Actions rate per segment ($window)"),
        panel(lay, "timeseries", "Advocacy Actions rate per segment", [target(
              shown_rate("segment_window:advocacy_actions_rate:ratio", w), "{{segment}}")], width=16,
              unit="percentunit", bands=True, minimum=0),
        panel(lay, "bargauge", "Now, per segment", [target(
              shown_rate("segment_window:advocacy_actions_rate:ratio", w), "{{segment}}", instant=True)],
              width=8, unit="percentunit", bands=True, minimum=0, maximum=1),
        lay.row("Customer Advocacy Creation per team ($window)"),
        panel(lay, "timeseries", "Customer Advocacy Creation per team", [target(
              shown_rate("team_window:advocacy_creation_rate:ratio", w), "{{team}}")], width=16,
              unit="percentunit", bands=True, minimum=0),
        panel(lay, "bargauge", "Now, per team", [target(
              shown_rate("team_window:advocacy_creation_rate:ratio", w), "{{team}}", instant=True)],
              width=8, unit="percentunit", bands=True, minimum=0, maximum=1),
        lay.row("Alerts"),
        panel(lay, "table", "Firing KPI alerts", [target(
              'ALERTS{alertstate="firing", category="kpi"}', instant=True, table=True)], width=24, height=6,
              options={"showHeader": True}),
    ]
    return dashboard("advocacy-kpi-overview", "Advocacy KPIs: overview",
                     "Advocacy Actions rate and Customer Advocacy Creation, overall and per segment / team.",
                     panels, [WINDOW], [alert_annotation(
                         "Firing KPI alerts", 'ALERTS{alertstate="firing", category="kpi"}', "red")])


# --- drill down -----------------------------------------------------------------------------


def drilldown() -> dict[str, Any]:
    lay = Layout()
    seg, team, w = 'segment="$segment"', 'team="$team"', 'window="$window"'
    panels = [
        lay.row("Segment $segment"),
        panel(lay, "stat", "Advocacy Actions rate ($window)", [target(
              shown_rate("segment_window:advocacy_actions_rate:ratio", f"{seg}, {w}"), "$segment")], width=8, height=5,
              unit="percentunit", bands=True),
        panel(lay, "stat", "Advocacy actions ($window)", [target(
              f"segment_window:advocacy_actions:max{{{seg}, {w}}}", "actions")], width=8, height=5),
        panel(lay, "stat", "Active customers", [target(
              f"segment:advocacy_customers_active:max{{{seg}}}", "customers")], width=8, height=5),
        panel(lay, "timeseries", "Advocacy Actions rate of $segment, every window", [target(
              shown_rate("segment_window:advocacy_actions_rate:ratio", seg), "{{window}}")], unit="percentunit",
              bands=True, minimum=0),
        panel(lay, "timeseries", "Numerator and denominator of $segment", [
            target(f"segment_window:advocacy_actions:max{{{seg}, {w}}}", "actions ({{window}})"),
            target(f"segment:advocacy_customers_active:max{{{seg}}}", "active customers", "B"),
        ], minimum=0),
        lay.row("Team $team"),
        panel(lay, "stat", "Customer Advocacy Creation ($window)", [target(
              shown_rate("team_window:advocacy_creation_rate:ratio", f"{team}, {w}"), "$team")], width=8, height=5,
              unit="percentunit", bands=True),
        panel(lay, "stat", "Advocates created ($window)", [target(
              f"team_window:advocacy_advocates_created:max{{{team}, {w}}}", "advocates")], width=8, height=5),
        panel(lay, "stat", "Support interactions ($window)", [target(
              f"team_window:advocacy_support_interactions:max{{{team}, {w}}}", "interactions")],
              width=8, height=5),
        panel(lay, "timeseries", "Customer Advocacy Creation of $team, every window", [target(
              shown_rate("team_window:advocacy_creation_rate:ratio", team), "{{window}}")], unit="percentunit",
              bands=True, minimum=0),
        panel(lay, "timeseries", "Numerator and denominator of $team", [
            target(f"team_window:advocacy_advocates_created:max{{{team}, {w}}}", "advocates created"),
            target(f"team_window:advocacy_support_interactions:max{{{team}, {w}}}", "support interactions",
                   "B"),
        ], minimum=0),
    ]
    variables = [
        WINDOW,
        query_variable("segment", "Segment", "label_values(segment_window:advocacy_actions_rate:ratio, segment)"),
        query_variable("team", "Team", "label_values(team_window:advocacy_creation_rate:ratio, team)"),
    ]
    annotations = [
        alert_annotation("Alerts of this segment", 'ALERTS{alertstate="firing", category="kpi", segment="$segment"}',
                         "red"),
        alert_annotation("Alerts of this team", 'ALERTS{alertstate="firing", category="kpi", team="$team"}',
                         "purple"),
    ]
    return dashboard("advocacy-drilldown", "Advocacy KPIs: segment and team drill down",
                     "One segment's Advocacy Actions rate and one team's Customer Advocacy Creation, "
                     "with their numerators and denominators.", panels, variables, annotations)


# --- pipeline health ------------------------------------------------------------------------


def pipeline() -> dict[str, Any]:
    lay = Layout()
    ri = "$__rate_interval"
    stale = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1800}]}
    lag = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1000}]}
    panels = [
        lay.row("Workers"),
        panel(lay, "stat", "Workers up", [target('sum(up{job="advocacy-worker"})', "up")], width=6, height=5,
              thresholds={"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                        {"color": "green", "value": 1}]}),
        panel(lay, "stat", "Workers ready", [target("sum(advocacy_worker_ready)", "ready")], width=6,
              height=5, thresholds={"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                  {"color": "green", "value": 1}]}),
        panel(lay, "timeseries", "Redis reachable, per worker", [target(
              "advocacy_redis_up", "{{instance}}")], width=6, height=5, minimum=0, maximum=1,
              description="1 when the worker's last Redis call succeeded (updated when it stores a batch)."),
        panel(lay, "table", "Running versions", [target(
              "count by (version, python) (advocacy_build_info)", instant=True, table=True)], width=6,
              height=5),
        lay.row("Throughput"),
        panel(lay, "timeseries", "Messages per second, per topic and outcome", [target(
              f"sum by (topic, outcome) (rate(advocacy_events_processed_total[{ri}]))",
              "{{topic}} {{outcome}}")], unit="ops", minimum=0),
        panel(lay, "timeseries", "Messages per second, per worker", [target(
              f"sum by (instance) (rate(advocacy_events_processed_total[{ri}]))", "{{instance}}")],
              unit="ops", minimum=0),
        lay.row("Latency"),
        panel(lay, "timeseries", "Processing latency per topic (broker timestamp to stored)", [
            target(f"histogram_quantile(0.99, sum by (topic, le) "
                   f"(rate(advocacy_processing_latency_seconds_bucket[{ri}])))", "p99 {{topic}}"),
            target(f"histogram_quantile(0.5, sum by (topic, le) "
                   f"(rate(advocacy_processing_latency_seconds_bucket[{ri}])))", "p50 {{topic}}", "B"),
        ], unit="s", minimum=0),
        panel(lay, "timeseries", "Batch duration (validate and store)", [
            target(f"histogram_quantile(0.99, sum by (le) (rate(advocacy_batch_duration_seconds_bucket[{ri}])))",
                   "p99"),
            target(f"histogram_quantile(0.5, sum by (le) (rate(advocacy_batch_duration_seconds_bucket[{ri}])))",
                   "p50", "B"),
        ], unit="s", minimum=0),
        lay.row("Freshness and lag"),
        panel(lay, "timeseries", "Event-time freshness per topic", [target(
              "topic:advocacy_event_freshness_seconds:time_since_max", "{{topic}}")], unit="s", minimum=0,
              thresholds=stale,
              description="Age of the newest stored event (occurred_at) per topic; alert above 30m."),
        panel(lay, "timeseries", "Consumer lag per topic", [target(
              "topic:advocacy_consumer_lag_messages:sum", "{{topic}}")], minimum=0, thresholds=lag,
              description="Messages behind the end of the partitions (max per partition across workers)."),
        lay.row("Dead letters and state"),
        panel(lay, "timeseries", "Dead letters per second, per topic and reason", [target(
              f"sum by (topic, reason) (rate(advocacy_dead_letters_total[{ri}]))", "{{topic}} {{reason}}")],
              unit="ops", minimum=0),
        panel(lay, "stat", "Dead-lettered share (5m)", [target(
              "sum(topic:advocacy_dead_letters:rate5m) / sum(topic:advocacy_events_processed:rate5m)",
              "share")], width=6, unit="percentunit",
              thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                        {"color": "red", "value": 0.02}]}),
        panel(lay, "timeseries", "Optimistic state retries per second", [target(
              f"sum(rate(advocacy_state_conflicts_total[{ri}]))", "conflicts")], width=6, unit="ops",
              minimum=0),
        lay.row("Alerts"),
        panel(lay, "table", "Firing pipeline alerts", [target(
              'ALERTS{alertstate="firing", category="pipeline"}', instant=True, table=True)], width=24,
              height=6, options={"showHeader": True}),
    ]
    return dashboard("advocacy-pipeline", "Advocacy pipeline health",
                     "Workers, throughput, latency, event-time freshness, consumer lag and dead letters.",
                     panels, [], [alert_annotation(
                         "Firing pipeline alerts", 'ALERTS{alertstate="firing", category="pipeline"}', "orange")])


DASHBOARDS = {
    "advocacy-kpi-overview.json": kpi_overview,
    "advocacy-drilldown.json": drilldown,
    "advocacy-pipeline.json": pipeline,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
