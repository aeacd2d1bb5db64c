"""Kafka connection security (TLS, SASL PLAIN/SCRAM) for Faust and the plain aiokafka clients."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from stream.config import Settings
from stream.health import KAFKA_UNREACHABLE, Problem, certificate

__all__ = ["AccessDenied", "client_options", "describe", "faust_credentials", "login_problem", "ssl_context"]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                               "security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for the Faust app, or None for PLAINTEXT."""
    import faust

    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class AccessDenied(Exception):
    """The broker answered but refuses this principal something the worker needs (an ACL)."""


async def login_problem(settings: Settings) -> Problem | None:
    """Why a connection to the first bootstrap server fails (TLS, SASL login, network), or None.

    aiokafka's bootstrap reports only "Unable to bootstrap"; one direct connection says why.
    The text never carries a password.
    """
    from aiokafka.conn import create_conn

    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    options = client_options(settings)
    del options["bootstrap_servers"]
    try:
        async with asyncio.timeout(10):
            conn = await create_conn(host, int(port), request_timeout_ms=5000, **options)
    except Exception as exc:  # noqa: BLE001 - every failure is a reason to report, none a reason to crash
        return describe(settings, exc)
    conn.close()
    return None


def describe(settings: Settings, exc: BaseException) -> Problem:
    """A Kafka connection or authorization failure: one secret-free sentence for /health, naming
    the setting to check, and the server's address and the library's words for the log."""
    from aiokafka.errors import GroupAuthorizationFailedError, SaslAuthenticationFailed, TopicAuthorizationFailedError

    detail = f"kafka at {settings.kafka_bootstrap_servers}: {type(exc).__name__}"
    user = settings.kafka_sasl_username
    if isinstance(exc, ssl.SSLCertVerificationError):
        cause, mismatch = certificate(exc)
        check = "ADVOCACY_KAFKA_BOOTSTRAP_SERVERS" if mismatch else "ADVOCACY_KAFKA_SSL_CAFILE"
        return Problem(f"kafka: TLS certificate not trusted ({cause}); check {check}",
                       f"{detail}: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return Problem("kafka: TLS handshake failed; check ADVOCACY_KAFKA_SECURITY_PROTOCOL",
                       f"{detail}: {exc.reason}")
    if isinstance(exc, SaslAuthenticationFailed):
        return Problem(f"kafka: authentication failed: SASL {settings.kafka_sasl_mechanism} login of user "
                       f"{user!r} rejected; check ADVOCACY_KAFKA_SASL_USERNAME and its password", detail)
    if isinstance(exc, GroupAuthorizationFailedError):
        return Problem(f"kafka: user {user!r} is not authorized for consumer group {settings.app_id!r}; "
                       "grant it Read and Describe on the group", detail)
    if isinstance(exc, AccessDenied):  # our own words, naming the topic
        return Problem(f"kafka: user {user!r} is not authorized: {exc}", detail)
    if isinstance(exc, TopicAuthorizationFailedError):
        return Problem(f"kafka: user {user!r} is not authorized for a topic it reads or writes; grant it the "
                       "ACLs of deploy/kafka/init.sh", f"{detail}: {exc}")
    return Problem(KAFKA_UNREACHABLE, detail)
