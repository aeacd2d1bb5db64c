"""The one way to build the Redis client: the worker and replay use the same TLS CA and timeouts."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from stream.config import Settings

SOCKET_TIMEOUT_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 10


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client for ``ADVOCACY_REDIS_URL``; with ``ADVOCACY_REDIS_SSL_CA_FILE`` it verifies the
    server against that CA. Calls time out after 5 s (``StateUnavailable``, retried), and an
    idle connection is checked before it is used again."""
    tls: dict[str, Any] = {"ssl_ca_certs": settings.redis_ssl_ca_file} if settings.redis_ssl_ca_file else {}
    return aioredis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                   socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                                   health_check_interval=HEALTH_CHECK_SECONDS, **tls)
