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

__all__ = ["Waiting", "interim_health", "redis_tls_problem"]


@dataclass
class Waiting:
    """What start-up is waiting for; shown by the interim /health."""

    reason: str = "worker starting"


@contextlib.asynccontextmanager
async def interim_health(bind: str, port: int, waiting: Waiting) -> AsyncIterator[None]:
    """Serve ``GET /health`` (503, the reason) on the web port until the block ends."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "not ready", "reasons": [waiting.reason]}, status=503)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bind, port, reuse_address=True)
    try:
        await site.start()
    except OSError:  # the port is taken: Faust will report it when it binds
        await runner.cleanup()
        yield
        return
    try:
        yield
    finally:
        await runner.cleanup()


async def redis_tls_problem(url: str, cafile: str | None) -> str:
    """Why the TLS handshake with the server of a ``rediss://`` URL fails, or "".

    redis-py reports a failed handshake as a plain ConnectionError; one handshake of our own says
    why. The text names host and port only, never the URL (it may hold a password).
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return ""
    where = f"redis at {parts.hostname}:{parts.port or 6379}"
    context = ssl.create_default_context(cafile=cafile)
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379, ssl=context)
    except ssl.SSLCertVerificationError as exc:
        return f"{where}: TLS certificate not trusted ({exc.verify_message}); check ADVOCACY_REDIS_SSL_CA_FILE"
    except ssl.SSLError as exc:
        return f"{where}: TLS handshake failed ({exc.reason})"
    except (OSError, TimeoutError):
        return ""
    writer.close()
    return ""
