"""``python -m stream kpis``: a worker's ``GET /kpis`` as terminal tables, bands in colour.

High is green, moderate yellow, low red; a rate without a denominator shows as a dash. A rate
shows as its percent rounded down to two decimals (79.996% is 79.99%), computed from the row's
counts, so a shown value is never on the other side of a band line from its band.
``--watch`` redraws every 2 s until Ctrl-C and keeps going through a worker restart.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from stream.errors import AdvocacyError

__all__ = ["BAND_STYLES", "OVERALL", "fetch", "render", "run_view"]

BAND_STYLES = {"high": "bold green", "moderate": "bold yellow", "low": "bold red"}
OVERALL = "(overall)"


def fetch(url: str, window: str | None, timeout: float = 5.0) -> dict[str, Any]:
    """GET {url}/kpis[?window=]; an unreachable worker or an error answer raises AdvocacyError."""
    target = url.rstrip("/") + "/kpis"
    if window:
        target += "?" + urllib.parse.urlencode({"window": window})
    if not target.startswith(("http://", "https://")):
        raise AdvocacyError(f"--url must start with http:// or https://, not {url!r}")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise AdvocacyError(f"{target} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdvocacyError(f"cannot reach {target}: {reason}") from None
    except ValueError:
        raise AdvocacyError(f"{target} did not answer JSON") from None


def _band(band: str | None) -> Text:
    if band is None:
        return Text("-", style="dim")
    return Text(band, style=BAND_STYLES.get(band, ""))


def _percent(numerator: object, denominator: object) -> str:
    """Numerator / denominator x 100, rounded down to two decimals, in integers (no float rounding)."""
    if not isinstance(numerator, int) or not isinstance(denominator, int) or denominator <= 0:
        return "-"
    hundredths = numerator * 10_000 // denominator
    return f"{hundredths // 100}.{hundredths % 100:02d}%"


def _windows(body: dict[str, Any]) -> list[str]:
    """Windows in the order the worker lists them (shortest first)."""
    seen: dict[str, None] = {}
    for key in ("advocacy_actions_overall", "advocacy_creation_overall"):
        for row in body.get(key, []):
            seen.setdefault(row["window"], None)
    return list(seen)


def _table(body: dict[str, Any], title: str, label: str, key: str,
           columns: tuple[tuple[str, str], ...]) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column(label.capitalize())
    table.add_column("Window")
    for heading, _ in columns:
        table.add_column(heading, justify="right")
    table.add_column("Rate", justify="right")
    table.add_column("Band")
    windows = _windows(body)
    for i, window in enumerate(windows):
        rows = [r for r in body.get(key, []) if r["window"] == window]
        overall = [r for r in body.get(f"{key}_overall", []) if r["window"] == window]
        (_, numerator), (_, denominator) = columns
        for row in rows:
            table.add_row(str(row[label]), window, *(str(row[f]) for _, f in columns),
                          _percent(row[numerator], row[denominator]), _band(row["band"]))
        for row in overall:
            table.add_row(Text(OVERALL, style="bold"), window, *(str(row[f]) for _, f in columns),
                          _percent(row[numerator], row[denominator]), _band(row["band"]), style="bold")
        if i < len(windows) - 1:
            table.add_section()
    return table


def render(body: dict[str, Any], url: str) -> RenderableType:
    """The two KPI tables of one /kpis answer."""
    actions = _table(body, "Advocacy Actions rate", "segment", "advocacy_actions",
                     (("Actions", "actions"), ("Active customers", "customers")))
    creation = _table(body, "Customer Advocacy Creation", "team", "advocacy_creation",
                      (("Advocates", "advocates_created"), ("Interactions", "support_interactions")))
    header = Text(f"KPIs at {body.get('generated_at', '?')} from {url}", style="bold")
    legend = Text("rate = advocacy actions / active customers; advocates created / support interactions. "
                  "Bands: high >= 80%, moderate 60-80%, low < 60%.", style="dim")
    return Group(header, actions, creation, legend)


def run_view(url: str, window: str | None, *, watch: bool, interval: float = 2.0,
             console: Console | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """The ``kpis`` command; returns the exit code."""
    console = console or Console()
    if not watch:
        console.print(render(fetch(url, window), url))
        return 0
    try:
        if console.is_terminal:
            from rich.live import Live

            with Live(console=console, auto_refresh=False, screen=False) as live:
                while True:
                    live.update(_attempt(url, window), refresh=True)
                    sleep(interval)
        while True:  # not a terminal: one snapshot after another, like a log
            console.print(_attempt(url, window))
            sleep(interval)
    except KeyboardInterrupt:
        return 0


def _attempt(url: str, window: str | None) -> RenderableType:
    try:
        return render(fetch(url, window), url)
    except AdvocacyError as exc:  # a worker restarting: say so and try again
        return Text(f"{time.strftime('%H:%M:%S')} {exc}; retrying", style="bold red")
