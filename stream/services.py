"""The worker's parts, built once by ``stream.app.create_app`` and attached to the app.

Tests and the command line reach the store, the pipeline or the health through
``app.services`` (typed), never through loose keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.clock import SharedClock
from stream.config import Settings
from stream.health import Health
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.state import Store
from stream.web import Api

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    """One worker's parts (the references are fixed; the parts themselves change as it runs)."""

    settings: Settings
    metrics: Metrics
    health: Health  # the one owner of readiness
    store: Store
    clock: SharedClock
    pipeline: Pipeline
    api: Api  # the endpoints' answers, with the snapshot /kpis and /metrics are served from
