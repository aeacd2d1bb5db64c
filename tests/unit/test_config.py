"""Settings from ``ADVOCACY_`` environment variables (docs/contract.md section 5)."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from stream.config import Settings, load_settings
from stream.errors import ConfigError

TOPIC_VARS = ("ADVOCACY_REVIEWS_TOPIC", "ADVOCACY_REFERRALS_TOPIC", "ADVOCACY_TICKETS_TOPIC",
              "ADVOCACY_CUSTOMERS_TOPIC", "ADVOCACY_DLQ_TOPIC")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from an environment without ADVOCACY_ variables."""
    for name in list(os.environ):
        if name.upper().startswith("ADVOCACY_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_contract() -> None:
    """Unset variables give the defaults of contract section 5 (and the documented topic names)."""
    s = load_settings()
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.redis_url.get_secret_value() == "redis://localhost:6379/0"
    assert s.web_port == 6066
    assert s.app_id == "advocacy"
    assert [(w.name, w.seconds) for w in s.windows] == [
        ("1h", 3_600), ("1d", 86_400), ("7d", 604_800), ("30d", 2_592_000), ("90d", 7_776_000)]
    assert s.window_names == ("1h", "1d", "7d", "30d", "90d")
    assert s.longest_window_seconds == 7_776_000
    assert s.attribution_window == 604_800
    assert (s.reviews_topic, s.referrals_topic, s.tickets_topic, s.customers_topic, s.dlq_topic) == (
        "reviews", "referrals", "tickets-closed", "customers", "advocacy-dlq")
    assert s.future_tolerance_seconds == 300


def test_the_web_port_listens_on_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's run is not reachable from the network; the image and compose set their address
    (checked in tests/deploy/test_compose.py)."""
    assert load_settings().web_bind == "127.0.0.1"
    assert load_settings().web_max_requests == 64
    monkeypatch.setenv("ADVOCACY_WEB_BIND", "0.0.0.0")
    assert load_settings().web_bind == "0.0.0.0"


@pytest.mark.parametrize(("name", "value", "attr", "expected"), [
    ("ADVOCACY_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092", "kafka_bootstrap_servers", "k1:9092,k2:9092"),
    ("ADVOCACY_WEB_PORT", "1", "web_port", 1),
    ("ADVOCACY_WEB_PORT", "65535", "web_port", 65535),
    ("ADVOCACY_APP_ID", "team-a.prod_1", "app_id", "team-a.prod_1"),
    ("ADVOCACY_ATTRIBUTION_WINDOW", "3d", "attribution_window", 259_200),
    ("ADVOCACY_ATTRIBUTION_WINDOW", "90m", "attribution_window", 5_400),
    ("ADVOCACY_TOPIC_PARTITIONS", "12", "topic_partitions", 12),
    ("ADVOCACY_DLQ_TOPIC", "dead", "dlq_topic", "dead"),
    ("ADVOCACY_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("ADVOCACY_STATE_SHARDS", "16", "state_shards", 16),
    ("ADVOCACY_REDIS_CLUSTER", "true", "redis_cluster", True),
])
def test_valid_values_are_read(monkeypatch: pytest.MonkeyPatch, name: str, value: str, attr: str,
                               expected: object) -> None:
    """A valid ADVOCACY_ value reaches the matching setting, converted."""
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), attr) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("7d,1h", [("1h", 3_600), ("7d", 604_800)]),
    (" 30m , 2w ", [("30m", 1_800), ("2w", 1_209_600)]),
    ("1d", [("1d", 86_400)]),
    ("1h,,1d,", [("1h", 3_600), ("1d", 86_400)]),
])
def test_windows_are_parsed_and_sorted(monkeypatch: pytest.MonkeyPatch, value: str,
                                       expected: list[tuple[str, int]]) -> None:
    """ADVOCACY_WINDOWS is a comma-separated list of durations, sorted shortest first."""
    monkeypatch.setenv("ADVOCACY_WINDOWS", value)
    assert [(w.name, w.seconds) for w in load_settings().windows] == expected


@pytest.mark.parametrize(("name", "value"), [
    ("ADVOCACY_WINDOWS", "1h,bad"),
    ("ADVOCACY_WINDOWS", ""),
    ("ADVOCACY_WINDOWS", ","),
    ("ADVOCACY_WINDOWS", "1h,60m"),
    ("ADVOCACY_WINDOWS", "1h,1h"),
    ("ADVOCACY_WINDOWS", "0h"),
    ("ADVOCACY_WEB_PORT", "0"),
    ("ADVOCACY_WEB_PORT", "99999"),
    ("ADVOCACY_WEB_PORT", "65536"),
    ("ADVOCACY_WEB_PORT", "abc"),
    ("ADVOCACY_WEB_PORT", "-1"),
    ("ADVOCACY_ATTRIBUTION_WINDOW", "soon"),
    ("ADVOCACY_ATTRIBUTION_WINDOW", "0d"),
    ("ADVOCACY_ATTRIBUTION_WINDOW", "-1d"),
    ("ADVOCACY_ATTRIBUTION_WINDOW", "1y"),
    ("ADVOCACY_ATTRIBUTION_WINDOW", ""),
    ("ADVOCACY_TOPIC_PARTITIONS", "0"),
    ("ADVOCACY_TOPIC_PARTITIONS", "many"),
    ("ADVOCACY_TOPIC_REPLICATION", "0"),
    ("ADVOCACY_APP_ID", "bad id"),
    ("ADVOCACY_APP_ID", ""),
    ("ADVOCACY_APP_ID", "a" * 65),
    ("ADVOCACY_LOG_LEVEL", "verbose"),
    ("ADVOCACY_BATCH_MAX_EVENTS", "0"),
    ("ADVOCACY_SESSION_TIMEOUT_SECONDS", "1"),
    ("ADVOCACY_FUTURE_TOLERANCE_SECONDS", "-1"),
    ("ADVOCACY_MAX_MESSAGE_BYTES", "10"),
    ("ADVOCACY_MAX_MESSAGE_BYTES", "80020"),
    ("ADVOCACY_JANITOR_INTERVAL_SECONDS", "0"),
    ("ADVOCACY_REDIS_RETRY_MAX_SECONDS", "0"),
    ("ADVOCACY_STALL_SECONDS", "-1"),
    ("ADVOCACY_STALL_SECONDS", "nan"),
    ("ADVOCACY_WEB_MAX_REQUESTS", "0"),
    ("ADVOCACY_STATE_SHARDS", "0"),
    ("ADVOCACY_STATE_SHARDS", "2000"),
    ("ADVOCACY_REDIS_CLUSTER", "maybe"),
])
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A bad value raises ConfigError with one line that starts with the variable's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    assert "\n" not in message


@pytest.mark.parametrize(("env", "names"), [
    ({"ADVOCACY_DLQ_TOPIC": "reviews"}, {"ADVOCACY_DLQ_TOPIC", "ADVOCACY_REVIEWS_TOPIC"}),
    ({"ADVOCACY_TICKETS_TOPIC": "customers"}, {"ADVOCACY_TICKETS_TOPIC", "ADVOCACY_CUSTOMERS_TOPIC"}),
    ({"ADVOCACY_REFERRALS_TOPIC": "x", "ADVOCACY_REVIEWS_TOPIC": "x"},
     {"ADVOCACY_REFERRALS_TOPIC", "ADVOCACY_REVIEWS_TOPIC"}),
    ({"ADVOCACY_REVIEWS_TOPIC": ""}, {"ADVOCACY_REVIEWS_TOPIC"}),
])
def test_bad_topic_names_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                           names: set[str]) -> None:
    """Duplicate or empty topic names raise ConfigError starting with one of the offending variables."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).split(":")[0] in names, str(info.value)


@pytest.mark.parametrize("env", [
    {"ADVOCACY_DLQ_TOPIC": "reviews"},
    {"ADVOCACY_TICKETS_TOPIC": "customers"},
    {"ADVOCACY_REVIEWS_TOPIC": ""},
])
def test_bad_topic_names_stop_start_up(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Duplicate or empty topic names are refused with a ConfigError (not silently accepted)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        load_settings()


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after load."""
    s = load_settings()
    with pytest.raises(ValidationError):
        s.web_port = 1
    assert s.web_port == 6066


def test_redis_url_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADVOCACY_REDIS_URL is a SecretStr: its password never shows in repr, str or JSON dumps."""
    url = "redis://:hunter2@cache.internal:6379/3"
    monkeypatch.setenv("ADVOCACY_REDIS_URL", url)
    s = load_settings()
    assert isinstance(s.redis_url, SecretStr)
    assert s.redis_url.get_secret_value() == url
    for shown in (repr(s), str(s), repr(s.redis_url), s.model_dump_json()):
        assert "hunter2" not in shown


def test_environment_is_read_at_load_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each load_settings() reads the current environment; overrides win over it."""
    monkeypatch.setenv("ADVOCACY_WEB_PORT", "7000")
    assert load_settings().web_port == 7000
    assert load_settings(web_port=7001).web_port == 7001
    assert isinstance(load_settings(), Settings)


def test_kraft_cluster_ids_never_start_with_a_dash() -> None:
    """kafka-storage reads an id starting with '-' as an option (a 1-in-64 failure of the test broker)."""
    from stream.kafka_node import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_redis_cluster_over_a_unix_socket_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis Cluster is reached over TCP: a unix:// URL with ADVOCACY_REDIS_CLUSTER=true stops start-up."""
    monkeypatch.setenv("ADVOCACY_REDIS_URL", "unix:///run/redis.sock")
    monkeypatch.setenv("ADVOCACY_REDIS_CLUSTER", "true")
    with pytest.raises(ConfigError, match=r"^ADVOCACY_REDIS_CLUSTER: "):
        load_settings()


def test_the_topic_table_is_the_one_home_of_the_topics() -> None:
    """Every ``*_topic`` setting is a row of TOPICS with its default; the sources carry every event kind."""
    from stream.config import SOURCES, TOPICS, Settings
    from stream.contract import SPECS

    topic_fields = {name for name in Settings.model_fields if name.endswith("_topic")}
    assert topic_fields == {t.setting for t in TOPICS}
    assert all(Settings.model_fields[t.setting].default == t.default for t in TOPICS)
    assert sorted(t.kind for t in SOURCES) == sorted(SPECS)
    s = load_settings(customers_topic="people", dlq_topic="dead")
    assert s.topic_names()[-1] == "dead"
    assert "people" in s.topic_names()
    assert s.source_kinds() == {"reviews": "review", "referrals": "referral", "tickets-closed": "ticket",
                                "people": "customer"}
    assert s.compacted("people")
    assert not s.compacted("customers")
    assert not s.compacted("dead")


def test_gc_tuning_is_a_setting_and_zero_leaves_the_collector_alone() -> None:
    import gc

    from stream.__main__ import _tune_gc

    before = gc.get_threshold()
    try:
        _tune_gc(0)
        assert gc.get_threshold() == before
        _tune_gc(load_settings(gc_young_threshold=12_345).gc_young_threshold)
        assert gc.get_threshold()[0] == 12_345
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
