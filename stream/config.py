"""The settings object: the only reader of the environment (prefix ``ADVOCACY_``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stream.contract import largest_valid_bytes
from stream.errors import ConfigError
from stream.kpi.windows import Window, parse_duration

__all__ = ["ENV_PREFIX", "SECRET_FILES", "SOURCES", "TOPICS", "TOPIC_FIELDS", "Settings", "Topic", "load_settings"]

ENV_PREFIX = "ADVOCACY_"


@dataclass(frozen=True)
class Topic:
    """A topic of the contract (docs/contract.md section 2). ``TOPICS`` is the one table of them:
    settings, creation, retention checks, the pipeline, the schemas and the CLI derive from it."""

    kind: str  # the event kind it carries (``stream.contract.SPECS``), or "dlq"
    setting: str  # the Settings field holding its name (ADVOCACY_<SETTING>)
    default: str  # its name by default, also the schemas' and the CLI's name for it
    compacted: bool  # cleanup.policy=compact: every customer's latest record matters, however old
    source: bool  # read by the workers; the dead-letter topic is only written


TOPICS = (
    Topic("review", "reviews_topic", "reviews", compacted=False, source=True),
    Topic("referral", "referrals_topic", "referrals", compacted=False, source=True),
    Topic("ticket", "tickets_topic", "tickets-closed", compacted=False, source=True),
    Topic("customer", "customers_topic", "customers", compacted=True, source=True),
    Topic("dlq", "dlq_topic", "advocacy-dlq", compacted=False, source=False),
)
SOURCES = tuple(t for t in TOPICS if t.source)
TOPIC_FIELDS = tuple(t.setting for t in TOPICS)
_DEFAULT_NAME = {t.setting: t.default for t in TOPICS}
# secrets that may come from a file instead (docker/kubernetes secrets): X_FILE -> X
SECRET_FILES = {"kafka_sasl_password_file": "kafka_sasl_password", "redis_url_file": "redis_url"}


class Settings(BaseSettings):
    """Every knob of the service; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_url_file: str | None = None
    redis_ssl_ca_file: str | None = None
    redis_cluster: bool = False
    state_shards: int = Field(8, ge=1, le=1024)
    web_port: int = Field(6066, ge=1, le=65535)
    web_bind: str = "127.0.0.1"  # a developer's run; the image and docker-compose.yml set 0.0.0.0
    web_max_requests: int = Field(64, ge=1, le=100_000)
    web_refresh_seconds: float = Field(0.1, ge=0.01, le=1.0)
    app_id: str = Field("advocacy", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    windows: Annotated[tuple[Window, ...], NoDecode] = Field(
        default_factory=lambda: _parse_windows("1h,1d,7d,30d,90d")
    )
    attribution_window: Annotated[int, NoDecode] = 7 * 86400
    topic_partitions: int = Field(4, ge=1, le=10_000)
    topic_replication: int = Field(1, ge=1, le=10)
    reviews_topic: str = _DEFAULT_NAME["reviews_topic"]
    referrals_topic: str = _DEFAULT_NAME["referrals_topic"]
    tickets_topic: str = _DEFAULT_NAME["tickets_topic"]
    customers_topic: str = _DEFAULT_NAME["customers_topic"]
    dlq_topic: str = _DEFAULT_NAME["dlq_topic"]
    batch_max_events: int = Field(2000, ge=1, le=100_000)
    fetch_max_wait_ms: int = Field(100, ge=1, le=30_000)
    session_timeout_seconds: float = Field(6.0, ge=2, le=300)
    future_tolerance_seconds: int = Field(300, ge=0, le=86400)
    # at least the largest valid event (contract section 2: never dead-lettered for a length it allows)
    max_message_bytes: int = Field(1_000_000, ge=largest_valid_bytes())
    janitor_interval_seconds: float = Field(60.0, gt=0)
    redis_retry_max_seconds: float = Field(5.0, gt=0)
    stall_seconds: float = Field(60.0, gt=0)
    max_segments: int = Field(1000, ge=1, le=100_000)
    max_teams: int = Field(1000, ge=1, le=100_000)
    state_cache_customers: int = Field(100_000, ge=0, le=10_000_000)
    # actions + tickets one customer's record holds within retention (docs/contract.md, Bounded records)
    max_events_per_customer: int = Field(100_000, ge=1, le=10_000_000)
    # allocations between collections of the youngest generation; 0 keeps Python's own (700) and
    # freezes nothing. Measured: 22 -> 13 us an event in-process (docs/benchmarks-notes.md)
    gc_young_threshold: int = Field(200_000, ge=0, le=10_000_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """``ADVOCACY_X_FILE``: the value of secret X is the content of that file."""
        if not isinstance(data, dict):
            return data
        for source, target in SECRET_FILES.items():
            path = data.get(source)
            if not path:
                continue
            variable = f"{ENV_PREFIX}{source.upper()}"
            if data.get(target) is not None:
                raise ValueError(f"{variable}: set either it or {ENV_PREFIX}{target.upper()}, not both")
            try:
                value = Path(str(path)).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{variable}: cannot read {path} ({type(exc).__name__})") from None
            if not value:
                raise ValueError(f"{variable}: {path} is empty")
            data = {**data, target: value}
        return data

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, value: object) -> object:
        return _parse_windows(value) if isinstance(value, str) else value

    @field_validator("attribution_window", mode="before")
    @classmethod
    def _attribution(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL"):
            if not self.kafka_sasl_username:
                raise ValueError(f"{ENV_PREFIX}KAFKA_SASL_USERNAME: required with {self.kafka_security_protocol}")
            if self.kafka_sasl_password is None:
                raise ValueError(f"{ENV_PREFIX}KAFKA_SASL_PASSWORD: required with {self.kafka_security_protocol}")
        if not self.redis_url.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{ENV_PREFIX}REDIS_URL: must start with redis://, rediss:// or unix://")
        if self.redis_cluster and not self.redis_url.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError(f"{ENV_PREFIX}REDIS_CLUSTER: Redis Cluster needs a redis:// or rediss:// URL")
        return self

    @model_validator(mode="after")
    def _topics_distinct(self) -> Settings:
        seen: dict[str, str] = {}
        for field in TOPIC_FIELDS:
            name, variable = getattr(self, field), f"{ENV_PREFIX}{field.upper()}"
            if not name:
                raise ValueError(f"{variable}: a topic name must not be empty")
            if name in seen:
                raise ValueError(f"{variable}: topic {name!r} is already {seen[name]}")
            seen[name] = variable
        return self

    def topic_name(self, topic: Topic) -> str:
        """The configured name of ``topic``."""
        return str(getattr(self, topic.setting))

    def topic_names(self) -> list[str]:
        """Every topic the service reads or writes, in ``TOPICS`` order."""
        return [self.topic_name(t) for t in TOPICS]

    def source_kinds(self) -> dict[str, str]:
        """Configured name -> event kind, for the topics the workers read."""
        return {self.topic_name(t): t.kind for t in SOURCES}

    def compacted(self, name: str) -> bool:
        """Whether the topic of this configured name is compacted."""
        return any(t.compacted and self.topic_name(t) == name for t in TOPICS)

    @property
    def longest_window_seconds(self) -> int:
        return max(w.seconds for w in self.windows)

    @property
    def window_names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.windows)


def _parse_windows(value: object) -> tuple[Window, ...]:
    if not isinstance(value, str):
        raise ValueError("expected a comma-separated list such as 1h,1d,7d")  # noqa: TRY004 - pydantic reports a ValueError
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one window is required")
    windows = tuple(Window(name, parse_duration(name)) for name in names)
    if len({w.seconds for w in windows}) != len(windows):
        raise ValueError("windows must differ")
    return tuple(sorted(windows, key=lambda w: w.seconds))


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across fields; its message names the variable
            raise ConfigError(str(err["msg"]).removeprefix("Value error, ")) from None
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{ENV_PREFIX}{field.upper()}: {err['msg']}") from None
