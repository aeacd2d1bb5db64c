"""Retention rules of the source topics (contract section 2): pure, from the settings."""

from __future__ import annotations

import pytest

from stream.config import load_settings
from stream.retention import creation_configs, required_ms, shortfall

DAY = 86_400_000
SETTINGS = load_settings()  # windows 1h..90d, attribution 7d


def test_required_retention_is_longest_window_plus_attribution_plus_a_day() -> None:
    """98 days with the defaults; follows the settings."""
    assert required_ms(SETTINGS) == 98 * DAY
    assert required_ms(load_settings(windows="1h,7d", attribution_window="2d")) == 10 * DAY


def test_created_topics_keep_events_long_enough_and_customers_is_compacted() -> None:
    """Event topics get retention.ms = the requirement; customers gets cleanup.policy=compact only."""
    for name in ("reviews", "referrals", "tickets-closed", "advocacy-dlq"):
        assert creation_configs(SETTINGS, name) == {"retention.ms": str(98 * DAY)}
    assert creation_configs(SETTINGS, "customers") == {"cleanup.policy": "compact", "retention.ms": "-1"}


@pytest.mark.parametrize(("name", "configs", "problem"), [
    ("reviews", {"retention.ms": str(98 * DAY), "cleanup.policy": "delete"}, None),
    ("reviews", {"retention.ms": "-1"}, None),
    ("reviews", {}, None),  # a broker that reports nothing keeps everything (tansu)
    ("tickets-closed", {"retention.ms": str(98 * DAY - 1)}, "topic tickets-closed keeps events"),
    ("reviews", {"retention.ms": str(7 * DAY), "cleanup.policy": "delete"},
     ("topic reviews keeps events 7d (retention.ms=604800000); the KPIs need 98d (longest window 90d + "
     "attribution window 7d + 1d)")),
    ("referrals", {"retention.ms": "-1", "cleanup.policy": "compact"}, "topic referrals is compacted"),
    ("referrals", {"cleanup.policy": "compact,delete"}, "topic referrals is compacted"),
    ("customers", {"retention.ms": str(7 * DAY), "cleanup.policy": "compact"}, None),
    ("customers", {"retention.ms": "-1", "cleanup.policy": "delete"}, None),  # keeps everything
    ("customers", {"retention.ms": str(7 * DAY), "cleanup.policy": "compact,delete"},
     "topic customers deletes records after 7d (retention.ms=604800000, cleanup.policy=compact,delete)"),
    ("customers", {"retention.ms": str(7 * DAY), "cleanup.policy": "delete"},
     ("topic customers deletes records after 7d (retention.ms=604800000, cleanup.policy=delete); customers must "
     "be compacted (cleanup.policy=compact)")),
])
def test_shortfall_names_the_topic_what_it_keeps_and_what_is_needed(
        name: str, configs: dict[str, str], problem: str | None) -> None:
    """Empty when the topic keeps what the KPIs need, else one sentence saying why not."""
    why = shortfall(SETTINGS, name, configs)
    if problem is None:
        assert why == ""
    else:
        assert why.startswith(problem), why
