"""Before Faust starts: wait for Kafka and Redis while /health answers 503 with the reason.

Faust opens the web port only once the app starts, which needs the topics to exist; an
orchestrator probing /health during that wait would otherwise see a refused connection
and learn nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from stream.health import Problem, certificate, not_ready

__all__ = ["Waiting", "interim_health", "redis_tls_problem"]


@dataclass
class Waiting:
    """What start-up is waiting for; shown by the interim /health."""

    reason: str = "worker starting"


@contextlib.asynccontextmanager
async def interim_health(socket_path: str, waiting: Waiting) -> AsyncIterator[None]:
    """Serve ``GET /health`` (503, the reason) on the worker's socket until the block ends."""

    async def health(request: web.Request) -> web.Response:  # noqa: ARG001 - aiohttp's handler signature
        return web.json_response(not_ready(waiting.reason), status=503,
                                 headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.UnixSite(runner, socket_path)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


async def redis_tls_problem(url: str, cafile: str | None) -> Problem | None:
    """Why the TLS handshake with the server of a ``rediss://`` URL fails, or None.

    redis-py reports a failed handshake as a plain ConnectionError; one handshake of our own says
    why. The reason names no host; the detail (for the log) names host and port, never the URL
    (it may hold a password).
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    where = f"redis at {parts.hostname}:{parts.port or 6379}"
    context = ssl.create_default_context(cafile=cafile)
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379, ssl=context)
    except ssl.SSLCertVerificationError as exc:
        cause, mismatch = certificate(exc)
        check = "the host in ADVOCACY_REDIS_URL" if mismatch else "ADVOCACY_REDIS_SSL_CA_FILE"
        return Problem(f"redis: TLS certificate not trusted ({cause}); check {check}", f"{where}: {exc.verify_message}")
    except ssl.SSLError as exc:
        return Problem("redis: TLS handshake failed; check that the server speaks TLS (rediss://)",
                       f"{where}: {exc.reason}")
    except (OSError, TimeoutError):
        return None
    writer.close()
    return None
