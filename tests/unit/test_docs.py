"""The reference docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream.config import ENV_PREFIX, Settings
from stream.kpi.totals import Totals
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


def _user_facing() -> list[Path]:
    """What a user of the repository reads: the README, docs/, schemas/, deploy/, the code, the stack files."""
    files = [ROOT / "README.md", ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / ".env.example",
             ROOT / "Makefile", *ROOT.glob("docs/*.md"), *ROOT.glob("schemas/*.md"), *ROOT.glob("stream/**/*.py")]
    files += [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix in (".yml", ".sh", ".md", ".py")]
    return files


def test_the_repository_carries_its_contract_and_no_reference_leaves_it() -> None:
    """docs/contract.md exists; no README/docs/deploy/code reference points outside the repository."""
    contract = (ROOT / "docs" / "contract.md").read_text()
    for section in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6."):
        assert section in contract, section
    outside = re.compile(r"\.\./shared|shared/CONTRACT|(?<![\w/])CONTRACT\.md")
    for path in _user_facing():
        text = path.read_text(errors="replace")
        match = outside.search(text)
        assert not match, f"{path.relative_to(ROOT)} refers outside the repository: {match[0]!r}"


def test_every_repository_path_the_docs_name_exists() -> None:
    """Backticked paths (docs/..., deploy/..., schemas/..., stream/...) and relative links resolve in the repo."""
    named = re.compile(r"`((?:docs|deploy|schemas|stream|tests)/[\w./-]*[\w/])`")
    link = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)")
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("schemas/*.md")]:
        text = path.read_text()
        for target in named.findall(text):
            if "*" in target or "NAME" in target:
                continue
            assert (ROOT / target).exists(), f"{path.relative_to(ROOT)} names {target}, which does not exist"
        for target in link.findall(text):
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(ROOT.resolve()), f"{path.relative_to(ROOT)} links outside: {target}"
            assert resolved.exists(), f"{path.relative_to(ROOT)} links to missing {target}"
