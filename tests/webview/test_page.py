"""The worker's live web page (``GET /``) rendered by a real headless Chromium against a real worker."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stream.embedded import free_port, start_redis, stop
from tests.conftest import Namespace
from tests.support import Worker, http_get, produce, require_binary, rows, wait_for

ROOT = Path(__file__).parents[2]
SHOTS = Path(tempfile.gettempdir()) / "advocacy-webview"

# segment -> (active customers, customers with a testimonial): 90% high, 70% moderate, 30% low
SEGMENTS = {"enterprise": (10, 9), "mid_market": (10, 7), "smb": (10, 3)}
# team -> (customers with a closed ticket, how many of them acted afterwards)
TEAMS = {"billing": (["enterprise-1", "enterprise-2", "enterprise-3", "enterprise-10"], 3),  # 75% moderate
         "onboarding": (["smb-1", "smb-4", "smb-5", "smb-6", "smb-7"], 1),  # 20% low
         "tier-2": (["mid_market-1", "mid_market-2", "mid_market-3", "mid_market-4", "mid_market-5"], 5)}  # 100%


class Dom(HTMLParser):
    """A dumped DOM: table rows (attributes, cell classes and texts), selector, status line, error banner."""

    CAPTURED = ("status", "error")

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}
        self.hidden: dict[str, bool] = {}
        self.options: list[str] = []
        self.selected = ""
        self.generated_at = ""
        self._cell: dict[str, Any] | None = None
        self._capture: list[Any] = []  # [id, tag, depth] while inside a captured element
        self.feed(html)

    @property
    def windows(self) -> tuple[list[str], str]:
        """The window selector's options and its selected one."""
        return self.options, self.selected

    @property
    def status(self) -> str:
        return self.texts.get("status", "")

    @property
    def error(self) -> str | None:
        """The error banner's text, None while it is hidden."""
        return None if self.hidden.get("error", True) else self.texts.get("error", "")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self._capture and tag == self._capture[1]:
            self._capture[2] += 1
        if a.get("id") in self.CAPTURED and not self._capture:
            self._capture = [a["id"], tag, 1]
            self.texts[a["id"]] = ""
            self.hidden[a["id"]] = "hidden" in a
        if tag == "tr":
            self.rows.append({"attrs": a, "cells": []})
        elif tag in ("td", "th") and self.rows:
            self._cell = {"class": a.get("class", ""), "text": ""}
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "option":
            self.options.append(a["value"])
            if "selected" in a:
                self.selected = a["value"]
        elif tag == "time" and a.get("id") == "generated-at":
            self.generated_at = a.get("datetime", "")
        elif self._cell is not None and tag in ("div", "svg"):
            self._cell.setdefault("children", []).append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None
        if self._capture and tag == self._capture[1]:
            self._capture[2] -= 1
            if not self._capture[2]:
                self._capture = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._capture:
            self.texts[self._capture[0]] += data

    def row(self, attr: str, value: str) -> dict[str, Any]:
        [found] = [r for r in self.rows if r["attrs"].get(attr) == value]
        return found

    def cell(self, row: dict[str, Any], cls: str) -> dict[str, Any]:
        [found] = [c for c in row["cells"] if cls in c["class"].split()]
        return found


def _chromium(binary: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1280,900", "--virtual-time-budget=8000", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _dom(binary: str, url: str, tmp_path: Path) -> Dom:
    done = _chromium(binary, url, tmp_path / "profile-dom", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<html" in done.stdout, done.stderr[-2000:]
    return Dom(done.stdout)


def _event(customer: str, seconds_ago: float, **fields: str) -> bytes:
    when = datetime.fromtimestamp(time.time() - seconds_ago, UTC).isoformat(timespec="milliseconds")
    body = {"event_id": str(uuid.uuid4()), "customer_id": customer, "occurred_at": when.replace("+00:00", "Z"),
            **fields}
    return json.dumps(body).encode()


def _publish(namespace: Namespace) -> None:
    """Customers registered a day ago; tickets closed 15 minutes ago; testimonials 10 minutes ago."""
    topics = namespace.topics
    messages: list[tuple[str, bytes | None, bytes | None]] = []
    acting: set[str] = set()
    for segment, (active, actors) in SEGMENTS.items():
        for i in range(1, active + 1):
            customer = f"{segment}-{i}"
            messages.append((topics["customer"], customer.encode(),
                             _event(customer, 86_400, segment=segment, status="active")))
            if i <= actors:
                acting.add(customer)
    for team, (customers, _) in TEAMS.items():
        for n, customer in enumerate(customers):
            messages.append((topics["ticket"], customer.encode(),
                             _event(customer, 900, ticket_id=f"{team}-{n}", team=team)))
    messages.extend((topics["review"], customer.encode(), _event(customer, 600, kind="testimonial"))
                    for customer in sorted(acting))
    # a customer never registered: an action in segment "unknown", which has no active customers (no rate)
    messages.append((topics["review"], b"walk-in", _event("walk-in", 600, kind="social")))
    produce(namespace.stack.bootstrap, messages)


def _settled(worker: Worker) -> bool:
    kpis = worker.kpis("1h")
    actions = {s: (r["actions"], r["customers"]) for (s, _), r in rows(kpis, "advocacy_actions", "segment").items()}
    creation = {t: (r["advocates_created"], r["support_interactions"])
                for (t, _), r in rows(kpis, "advocacy_creation", "team").items()}
    return actions == {**{s: (actors, active) for s, (active, actors) in SEGMENTS.items()}, "unknown": (1, 0)} and \
        creation == {t: (acted, len(customers)) for t, (customers, acted) in TEAMS.items()}


def _worker(namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Worker:
    """A worker started in tmp_path, so that its Faust data directory is not left in the repo."""
    monkeypatch.chdir(tmp_path)
    return namespace.worker(tmp_path, PYTHONPATH=str(ROOT), **extra).start()


@pytest.mark.e2e
def test_page_shows_rates_bands_and_history_per_segment_and_team(
        namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headless Chromium renders a live worker's / with every row's counts, percent, band and sparkline."""
    chromium = require_binary("chromium")
    worker = _worker(namespace, tmp_path, monkeypatch)
    try:
        worker.wait_ready()
        status, page = http_get(worker.url + "/")
        assert status == 200
        assert b"static/app.js" in page
        for name in ("app.js", "style.css"):
            status, _ = http_get(f"{worker.url}/static/{name}")
            assert status == 200, name
        _publish(namespace)
        wait_for(lambda: _settled(worker), 60, what="the worker to count the events")

        dom = _dom(chromium, worker.url + "/", tmp_path)
        expected = {"enterprise": ("9", "10", "90.00%", "high"), "mid_market": ("7", "10", "70.00%", "moderate"),
                    "smb": ("3", "10", "30.00%", "low")}
        for segment, (actions, customers, rate, band) in expected.items():
            row = dom.row("data-segment", segment)
            assert row["attrs"]["data-band"] == band
            assert f"band-{band}" in row["attrs"]["class"].split()
            assert [dom.cell(row, c)["text"] for c in ("numerator", "denominator", "rate", "band")] == \
                [actions, customers, rate, band], row
            [bar] = dom.cell(row, "bar-cell")["children"][:1]
            assert bar["role"] == "img"
            assert f"{rate}, {band} band" in bar["aria-label"]
            [spark] = dom.cell(row, "spark-cell")["children"]
            assert spark["role"] == "img", spark
            assert "history, last " in spark["aria-label"], spark
        row = dom.row("data-segment", "unknown")
        assert row["attrs"]["data-band"] == "none"
        assert "band-none" in row["attrs"]["class"].split()
        assert [dom.cell(row, c)["text"] for c in ("numerator", "denominator", "rate", "band")] == \
            ["1", "0", "no data", "no data"], row
        teams = {"billing": ("3", "4", "75.00%", "moderate"), "onboarding": ("1", "5", "20.00%", "low"),
                 "tier-2": ("5", "5", "100.00%", "high")}
        for team, (advocates, interactions, rate, band) in teams.items():
            row = dom.row("data-team", team)
            assert [dom.cell(row, c)["text"] for c in ("numerator", "denominator", "rate", "band")] == \
                [advocates, interactions, rate, band], row
        overall = [r for r in dom.rows if "overall" in r["attrs"].get("class", "").split()]
        assert [dom.cell(r, "rate")["text"] for r in overall] == ["66.66%", "64.28%"]  # 20/30, 9/14, rounded down
        assert dom.error is None, dom.error
        assert dom.windows == (["1h", "1d", "7d", "30d", "90d"], "1h")  # from the worker's data; 1h by default
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", dom.generated_at), dom.generated_at
        # the page polled at least twice within the 8 s of virtual time: two points in the history
        row = dom.row("data-segment", "enterprise")
        assert "last 1 refresh:" not in dom.cell(row, "spark-cell")["children"][0]["aria-label"]

        week = _dom(chromium, worker.url + "/?window=7d", tmp_path)
        assert dom.windows[0] == week.windows[0]
        assert week.windows[1] == "7d"
        shown = [dom.cell(week.row("data-segment", s), "rate")["text"] for s in expected]
        assert shown == ["90.00%", "70.00%", "30.00%"]

        shot = tmp_path / "kpis.png"
        done = _chromium(chromium, worker.url + "/", tmp_path / "profile-shot", f"--screenshot={shot}")
        assert done.returncode == 0, done.stderr[-2000:]
        assert shot.is_file(), done.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 10_000
        SHOTS.mkdir(exist_ok=True)
        kept = SHOTS / "kpis.png"
        shutil.copyfile(shot, kept)
        print(f"\nscreenshot of the live page: {kept}")
    finally:
        worker.stop()


@pytest.mark.e2e
def test_page_shows_an_error_banner_when_kpis_fails(
        namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With its Redis gone the worker answers /kpis 503; the page says so in a visible alert, not a blank table."""
    chromium = require_binary("chromium")
    port = free_port()
    redis = start_redis(port, tmp_path, aof=False)
    worker = _worker(namespace, tmp_path, monkeypatch, ADVOCACY_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        worker.wait_ready()
        stop(redis)
        wait_for(lambda: http_get(worker.url + "/kpis")[0] == 503, 20, what="/kpis to fail")
        dom = _dom(chromium, worker.url + "/", tmp_path)
        assert dom.error is not None, dom.error
        assert "The worker answered 503 to /kpis: redis unavailable" in dom.error, dom.error
        assert "Retrying every 5 s." in dom.error
        assert not [r for r in dom.rows if "data-segment" in r["attrs"]]
        assert "could not be read" in dom.status, dom.status
        shot = tmp_path / "kpis-error.png"
        done = _chromium(chromium, worker.url + "/", tmp_path / "profile-shot", f"--screenshot={shot}")
        assert done.returncode == 0, done.stderr[-2000:]
        assert shot.is_file(), done.stderr[-2000:]
        SHOTS.mkdir(exist_ok=True)
        shutil.copyfile(shot, SHOTS / "kpis-error.png")
        print(f"\nscreenshot of the error banner: {SHOTS / 'kpis-error.png'}")
    finally:
        worker.stop()
        stop(redis)


def test_page_shows_an_error_banner_when_the_worker_cannot_be_reached(tmp_path: Path) -> None:
    """The packaged page whose /kpis request fails at the network level (no server) shows the unreachable alert."""
    chromium = require_binary("chromium")
    static = ROOT / "stream" / "static"
    site = tmp_path / "site"
    (site / "static").mkdir(parents=True)
    shutil.copyfile(static / "index.html", site / "index.html")  # the layout the worker serves: / and /static/*
    for name in ("app.js", "style.css"):
        shutil.copyfile(static / name, site / "static" / name)
    dom = _dom(chromium, (site / "index.html").as_uri(), tmp_path)
    assert dom.error is not None, dom.error
    assert dom.error.startswith("Cannot reach the worker at "), dom.error
    assert "Retrying every 5 s." in dom.error
    assert "could not be read" in dom.status


def test_page_assets_load_nothing_from_outside_the_worker() -> None:
    """index.html, app.js and style.css name no external URL (no CDN): only the worker's own paths."""
    static = ROOT / "stream" / "static"
    assert sorted(p.name for p in static.iterdir()) == ["app.js", "index.html", "style.css"]
    for path in static.iterdir():
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")  # the SVG namespace, never fetched
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
        assert "@import" not in text, path.name
        assert "url(" not in text, path.name


# --- percents never cross a band line (issue 11 case 4) ---------------------------------------------

EDGE_KPIS = {
    "generated_at": "2026-11-23T14:05:00Z",
    "advocacy_actions": [
        {"segment": "mid", "window": "1h", "actions": 79_996, "customers": 100_000, "rate": 0.79996,
         "band": "moderate"},
        {"segment": "smb", "window": "1h", "actions": 59_999, "customers": 100_000, "rate": 0.59999, "band": "low"},
        {"segment": "ent", "window": "1h", "actions": 4, "customers": 5, "rate": 0.8, "band": "high"}],
    "advocacy_actions_overall": [
        {"window": "1h", "actions": 139_999, "customers": 200_005, "rate": 139_999 / 200_005, "band": "moderate"}],
    "advocacy_creation": [
        {"team": "billing", "window": "1h", "advocates_created": 7_999, "support_interactions": 10_000,
         "rate": 0.7999, "percent": 79.99, "band": "moderate"},
        {"team": "tier-2", "window": "1h", "advocates_created": 29, "support_interactions": 100, "rate": 0.29,
         "percent": 29.0, "band": "low"}],
    "advocacy_creation_overall": [
        {"window": "1h", "advocates_created": 8_028, "support_interactions": 10_100, "rate": 8_028 / 10_100,
         "percent": 79.48, "band": "moderate"}],
}


def test_page_rounds_percents_down_so_none_crosses_a_band_line(tmp_path: Path) -> None:
    """Issue 11 case 4: the packaged page, given /kpis rows at the band lines, shows 79,996 of 100,000 as
    79.99% (moderate), never 80.0%, and every percent as the counts' rate x 100 rounded down."""
    import http.server
    import threading

    chromium = require_binary("chromium")
    static = ROOT / "stream" / "static"
    body = json.dumps(EDGE_KPIS).encode()

    class Site(http.server.BaseHTTPRequestHandler):  # the worker's layout: /, /static/*, /kpis
        def do_GET(self) -> None:  # the http.server hook
            path = self.path.split("?")[0]
            if path.startswith("/kpis"):
                content, kind = body, "application/json"
            elif path == "/":
                content, kind = (static / "index.html").read_bytes(), "text/html; charset=utf-8"
            else:
                content, kind = (static / path.removeprefix("/static/")).read_bytes(), "text/javascript"
                kind = "text/css" if path.endswith(".css") else kind
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dom = _dom(chromium, f"http://127.0.0.1:{server.server_port}/", tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    shown = [(r["attrs"].get("data-segment") or r["attrs"].get("data-team") or "overall",
              dom.cell(r, "rate")["text"], r["attrs"]["data-band"]) for r in dom.rows if "data-band" in r["attrs"]]
    assert sorted(shown) == sorted([
        ("mid", "79.99%", "moderate"), ("smb", "59.99%", "low"), ("ent", "80.00%", "high"),
        ("overall", "69.99%", "moderate"),  # 139,999 / 200,005
        ("billing", "79.99%", "moderate"), ("tier-2", "29.00%", "low"), ("overall", "79.48%", "moderate")])
    mid = dom.row("data-segment", "mid")
    [bar] = dom.cell(mid, "bar-cell")["children"][:1]
    assert "79.99%, moderate band" in bar["aria-label"]
    [spark] = dom.cell(mid, "spark-cell")["children"]
    assert "to 79.99%" in spark["aria-label"], spark
    assert "80" not in spark["aria-label"].split("history")[1], spark
