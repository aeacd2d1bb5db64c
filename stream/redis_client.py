"""The one Redis client factory (worker, replay, clock) and the mapping of redis-py's failures to this
service's errors."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    MovedError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.config import Settings
from stream.errors import StateError, StateUnavailable
from stream.labels import Client

__all__ = ["call", "redis_client"]


def redis_client(settings: Settings) -> Client:
    """The Redis client of the worker and of replay: Redis Cluster when ADVOCACY_REDIS_CLUSTER is set."""
    url = settings.redis_url.get_secret_value()
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if settings.redis_ssl_ca_file:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_file
    if settings.redis_cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, health_check_interval=10, **options)


async def call(awaitable: Any) -> Any:
    """Await a Redis call; its failures as this service's errors: ``StateUnavailable`` when Redis cannot
    be reached (the caller holds and retries), ``StateError`` otherwise."""
    try:
        return await awaitable
    except (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, TryAgainError,
            SlotNotCoveredError) as exc:
        raise StateUnavailable(f"redis unavailable: {type(exc).__name__}") from None
    except RedisClusterException as exc:
        if "cannot be connected" in str(exc):  # no node of the cluster answers
            raise StateUnavailable("redis unavailable: no node of the Redis Cluster answers") from None
        raise StateError(f"redis error: {exc}") from None
    except RedisError as exc:
        if isinstance(exc, MovedError):
            raise StateError("redis error: MOVED: ADVOCACY_REDIS_URL names a Redis Cluster node; "
                             "set ADVOCACY_REDIS_CLUSTER=true") from None
        raise StateError(f"redis error: {exc}") from None
    except (AttributeError, TypeError) as exc:
        # redis-py 8.1 asyncio: a write on a connection the peer reset leaks the transport's
        # AttributeError/TypeError instead of ConnectionError (redis/redis-py#4287); seen here
        # when a cluster node dies
        raise StateUnavailable(f"redis unavailable: connection lost ({type(exc).__name__})") from None
