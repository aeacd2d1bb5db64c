"""The per-partition check that compares what was stored with where the fetcher is (issue 10)."""

from __future__ import annotations

from stream.gaps import GapWatch, Reading


def _run(watch: GapWatch[str], *readings: dict[str, Reading]) -> list[dict[str, tuple[int, int]]]:
    return [watch.update(r) for r in readings]


def test_a_position_ahead_of_the_stored_offset_with_nothing_on_its_way_is_a_gap_after_three_readings() -> None:
    watch: GapWatch[str] = GapWatch(checks=3)
    lost = {"reviews-3": Reading(stored=0, position=350, busy=False)}
    assert _run(watch, lost, lost, lost) == [{}, {}, {"reviews-3": (0, 350)}]
    assert watch.open == {"reviews-3": (0, 350)}


def test_records_on_their_way_to_the_state_are_no_gap() -> None:
    watch: GapWatch[str] = GapWatch(checks=2)
    busy = {"t-0": Reading(10, 50, busy=True)}
    assert _run(watch, busy, busy, busy, busy) == [{}, {}, {}, {}]


def test_a_moving_stored_offset_or_position_restarts_the_count() -> None:
    watch: GapWatch[str] = GapWatch(checks=2)
    found = _run(watch, {"t-0": Reading(10, 50, False)}, {"t-0": Reading(20, 50, False)},
                 {"t-0": Reading(20, 60, False)}, {"t-0": Reading(20, 60, False)})
    assert found == [{}, {}, {}, {"t-0": (20, 60)}]


def test_a_gap_closes_when_the_re_read_records_are_stored() -> None:
    watch: GapWatch[str] = GapWatch(checks=1)
    assert watch.update({"t-0": Reading(0, 9, False)}) == {"t-0": (0, 9)}
    assert watch.update({"t-0": Reading(0, 9, True)}) == {}  # re-read, on its way
    assert watch.open == {"t-0": (0, 9)}
    assert watch.update({"t-0": Reading(9, 9, False)}) == {}
    assert watch.open == {}


def test_a_range_that_a_re_read_shows_empty_is_not_reported_again() -> None:
    """Transaction markers or compacted offsets: the position moves past offsets that hold no record."""
    watch: GapWatch[str] = GapWatch(checks=1)
    marker = {"t-0": Reading(99, 100, False)}
    assert watch.update(marker) == {"t-0": (99, 100)}
    assert watch.update(marker) == {}  # the re-read found nothing: no records there
    assert watch.open == {}
    assert _run(watch, marker, marker) == [{}, {}]
    assert watch.update({"t-0": Reading(99, 140, False)}) == {"t-0": (99, 140)}  # new records: checked again


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    watch: GapWatch[str] = GapWatch(checks=1)
    watch.update({"t-0": Reading(0, 5, False)})
    assert watch.update({}) == {}
    assert watch.open == {}


def test_health_reports_a_rebuild_as_degraded_with_the_share_done_until_it_ends() -> None:
    """Partitions read again from their start (the state had no position): /health stays ready but
    'degraded' with the share re-read; the warning goes once the state holds what was there."""
    from faust.types import TP

    from stream.health import Health
    from stream.timers import report_rebuild

    class Consumer:
        def __init__(self) -> None:
            self.rebuilding = {TP("reviews", 0): (0, 400), TP("reviews", 1): (100, 200)}

        def rebuilt(self, stored: dict[TP, int]) -> tuple[int, int]:
            from stream.batching import BatchConsumer

            return BatchConsumer.rebuilt(self, stored)  # type: ignore[arg-type]

    consumer, health = Consumer(), Health()
    report_rebuild(consumer, {TP("reviews", 0): Reading(100, 150, False), TP("reviews", 1): Reading(100, 150, False)},
                    health)
    assert health.degraded() == ["rebuilding the state from the topics: 20% re-read (100 of 500 messages)"]
    report_rebuild(consumer, {TP("reviews", 0): Reading(400, 400, False), TP("reviews", 1): Reading(200, 200, False)},
                    health)
    assert health.degraded() == []
    assert consumer.rebuilding == {}
