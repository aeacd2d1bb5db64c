"""The one exception family of the service: callers catch ``AdvocacyError``."""

__all__ = ["AdvocacyError", "BrokerUnavailable", "ConfigError", "InvalidEvent", "StateError", "StateUnavailable"]


class AdvocacyError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigError(AdvocacyError):
    """A setting has a bad value; the message names the variable."""


class InvalidEvent(AdvocacyError):
    """A message breaks the wire contract and goes to the dead-letter topic."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StateError(AdvocacyError):
    """The shared state store cannot be used as it is."""


class StateUnavailable(StateError):
    """The shared state store does not answer; the batch is retried."""


class BrokerUnavailable(AdvocacyError):
    """Kafka does not answer at the configured bootstrap servers."""
