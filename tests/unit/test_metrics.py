"""Metric helpers: bulk histogram observation equals one observation at a time."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream.metrics import observe_many


def _exposition(values: list[float], bulk: bool) -> list[str]:
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", ["topic"], buckets=(0.1, 0.5, 1.0, 5.0), registry=registry)
    child = histogram.labels("reviews")
    if bulk:
        observe_many(child, values)
    else:
        for value in values:
            child.observe(value)
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@pytest.mark.parametrize("values", [
    [],
    [0.0, 0.1, 0.1000001, 0.5, 0.7, 1.0, 3.0, 5.0, 5.1, 100.0],  # on, just over and beyond the bounds
    [0.2] * 1000,
])
def test_observe_many_equals_observing_each(values: list[float]) -> None:
    assert _exposition(values, bulk=True) == _exposition(values, bulk=False)
