"""Kafka TLS/SASL options and secret handling, from the settings object."""

from __future__ import annotations

import ssl

import pytest

from stream.config import Settings, load_settings
from stream.errors import ConfigError
from stream.kafka import client_options, faust_credentials


def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    """Without security settings the clients connect in PLAINTEXT, Faust gets no credentials."""
    settings = Settings()
    assert client_options(settings) == {"bootstrap_servers": "localhost:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_scram_over_tls_maps_to_aiokafka_and_faust() -> None:
    """SASL_SSL + SCRAM gives aiokafka its mechanism, user, password and a TLS context; Faust likewise."""
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
                        kafka_sasl_username="svc", kafka_sasl_password="pw-123")
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "svc"
    assert options["sasl_plain_password"] == "pw-123"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(settings)
    assert credentials.username == "svc" and credentials.password == "pw-123"
    assert credentials.mechanism.value == "SCRAM-SHA-256"


@pytest.mark.parametrize(("env", "variable"), [
    ({"ADVOCACY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "ADVOCACY_KAFKA_SASL_USERNAME"),
    ({"ADVOCACY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "ADVOCACY_KAFKA_SASL_USERNAME": "u"},
     "ADVOCACY_KAFKA_SASL_PASSWORD"),
    ({"ADVOCACY_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, "ADVOCACY_KAFKA_SECURITY_PROTOCOL"),
    ({"ADVOCACY_REDIS_URL": "http://redis:6379"}, "ADVOCACY_REDIS_URL"),
])
def test_incomplete_security_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                        variable: str) -> None:
    """A SASL protocol without user or password, or a bad URL scheme, stops start-up naming the variable."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings()


def test_secrets_never_show_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Redis URL password and the SASL password stay out of repr and of configuration errors."""
    monkeypatch.setenv("ADVOCACY_REDIS_URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("ADVOCACY_KAFKA_SASL_PASSWORD", "sasl-hunter3")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "sasl-hunter3" not in repr(settings)
    monkeypatch.setenv("ADVOCACY_WEB_PORT", "nope")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter" not in str(info.value)


def test_security_failures_are_described_without_the_password() -> None:
    """A refused login, an untrusted certificate and a denied group each read as one sentence naming the
    setting to check, with the user but never the password."""
    from aiokafka.errors import GroupAuthorizationFailedError, SaslAuthenticationFailed

    from stream.kafka import describe

    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc",
                        kafka_sasl_password="pw-secret-42", app_id="adv")
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    texts = [describe(settings, SaslAuthenticationFailed("invalid credentials")),
             describe(settings, untrusted),
             describe(settings, GroupAuthorizationFailedError())]
    assert "login of user 'svc' rejected; check ADVOCACY_KAFKA_SASL_USERNAME" in texts[0]
    assert "TLS certificate not trusted (unable to get local issuer certificate); check ADVOCACY_KAFKA_SSL_CAFILE" \
        in texts[1]
    assert "not authorized for consumer group 'adv'" in texts[2]
    assert all("pw-secret-42" not in text for text in texts)
