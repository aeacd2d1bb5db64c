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
    assert credentials.username == "svc"
    assert credentials.password == "pw-123"
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
    assert "hunter2" not in repr(settings)
    assert "sasl-hunter3" not in repr(settings)
    monkeypatch.setenv("ADVOCACY_WEB_PORT", "nope")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter" not in str(info.value)


def test_security_failures_are_described_without_the_password_or_the_address() -> None:
    """A refused login, an untrusted certificate, a certificate for another name and a denied group each
    read as one sentence saying what is wrong and naming the setting to check, with the user but never the
    password, the broker's address or the library's words; those go to the log line only."""
    from aiokafka.errors import GroupAuthorizationFailedError, SaslAuthenticationFailed

    from stream.kafka import describe

    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc",
                        kafka_sasl_password="pw-secret-42", app_id="adv",
                        kafka_bootstrap_servers="kafka-0.internal:9093")
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_code, untrusted.verify_message = 20, "unable to get local issuer certificate"
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_code = 62
    mismatch.verify_message = "Hostname mismatch, certificate is not valid for 'kafka-0.internal'."
    problems = [describe(settings, SaslAuthenticationFailed("invalid credentials")), describe(settings, untrusted),
                describe(settings, mismatch), describe(settings, GroupAuthorizationFailedError()),
                describe(settings, ConnectionRefusedError(111, "Connect call failed ('10.1.2.3', 9093)"))]
    reasons = [p.reason for p in problems]
    assert reasons[0] == ("kafka: authentication failed: SASL SCRAM-SHA-512 login of user 'svc' rejected; "
                          "check ADVOCACY_KAFKA_SASL_USERNAME and its password")
    assert reasons[1] == ("kafka: TLS certificate not trusted (issued by an unknown authority); "
                          "check ADVOCACY_KAFKA_SSL_CAFILE")
    assert reasons[2] == ("kafka: TLS certificate not trusted (issued for another host name); "
                          "check ADVOCACY_KAFKA_BOOTSTRAP_SERVERS")
    assert reasons[3] == ("kafka: user 'svc' is not authorized for consumer group 'adv'; "
                          "grant it Read and Describe on the group")
    assert reasons[4] == "kafka unreachable"
    for text in reasons:
        for leak in ("pw-secret-42", "internal", "9093", "10.1.2.3", "Error", "local issuer"):
            assert leak not in text, (leak, text)
    logged = [p.logged("not ready until it is fixed") for p in problems]
    assert all(line.startswith(reason) for line, reason in zip(logged, reasons, strict=True))
    assert "kafka at kafka-0.internal:9093" in logged[1]
    assert "unable to get local issuer certificate" in logged[1]
    assert "ConnectionRefusedError" in logged[4]
    assert all("pw-secret-42" not in line for line in logged)


def test_redis_failures_are_described_without_the_address_or_the_servers_words() -> None:
    from stream.health import redis_problem

    assert redis_problem("redis unavailable: AuthenticationError", True) == \
        "redis: authentication failed; check the user and password in ADVOCACY_REDIS_URL"
    assert redis_problem("redis unavailable: ConnectionError", True) == "redis unavailable"
    assert redis_problem("redis error: No permissions to access a key", False, "adv") == \
        "redis: permission denied; the Redis user needs access to the keys adv:*"
    assert redis_problem("redis error: WRONGPASS invalid username-password pair", False) == \
        "redis: authentication failed; check the user and password in ADVOCACY_REDIS_URL"
    assert redis_problem("redis error: OOM command not allowed when used memory > 'maxmemory'.", False) == \
        "redis: out of memory (maxmemory reached); writes are refused"
    assert redis_problem("redis error: NOSCRIPT No matching script at 10.0.0.7", False) == \
        "redis error (details in the worker's log)"
