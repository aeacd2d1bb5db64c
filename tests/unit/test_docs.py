"""The reference docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from stream.config import ENV_PREFIX, Settings
from stream.kpi import Totals
from stream.metrics import Metrics

ROOT = Path(__file__).parents[2]


def test_every_setting_is_documented_with_its_default() -> None:
    """docs/configuration.md has a row for every ADVOCACY_ variable of the settings object."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in text, name


def test_every_metric_is_documented() -> None:
    """docs/metrics.md names every metric family the worker exports."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    metrics = Metrics(CollectorRegistry())
    metrics.kpis.totals = Totals({("smb", "1h"): 1}, {"smb": 2}, {("billing", "1h"): 2},
                                 {("billing", "1h"): 1})
    names = {family.name for family in metrics.registry.collect()}
    assert len(names) >= 16
    for name in names:
        documented = f"`{name}`" in text or f"`{name}_total`" in text
        assert documented, name
