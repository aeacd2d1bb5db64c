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


def test_observe_many_takes_the_fast_path_when_the_private_members_exist() -> None:
    """The bulk path increments the counters directly: ``observe`` is never called for each amount
    (a release that renames a member falls back, and stream.compat refuses to start on it)."""
    histogram = Histogram("h_seconds", "h", buckets=(0.1, 1.0), registry=CollectorRegistry())
    calls: list[float] = []
    histogram.observe = calls.append  # type: ignore[method-assign]
    observe_many(histogram, [0.05, 0.5, 2.0])
    assert calls == []
    assert [b.get() for b in histogram._buckets] == [1.0, 1.0, 1.0]
    assert histogram._sum.get() == pytest.approx(2.55)


def test_observe_many_falls_back_to_observe_without_the_private_members() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    plain = Plain()
    observe_many(plain, [0.05, 0.5])  # type: ignore[arg-type]
    assert plain.seen == [0.05, 0.5]
