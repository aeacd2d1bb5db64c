"""The web port's server: a process of its own in front of the worker's, so that clients cost
the consumer's process (one core, the GIL's) next to nothing.

Every request on ``ADVOCACY_WEB_BIND:ADVOCACY_WEB_PORT`` is answered here. ``/kpis`` (per
window) and ``/metrics`` come from the worker's own server (a Unix socket private to the
worker) at most once per ``ADVOCACY_WEB_REFRESH_SECONDS`` / 2 and once per 0.5 s respectively,
one request in flight per answer whatever the number of clients; everyone meanwhile gets the
answer held (stale while revalidating, as the worker's own snapshot: an answer is at most that
period plus one fetch behind the worker's; over 2 s behind, requests wait for the fetch).
Every other path (``/health``, the page) is passed on as it is. At most
``ADVOCACY_WEB_MAX_REQUESTS`` requests are in progress (``/health`` apart); over that, 503 at
once with ``Retry-After``. A worker that does not answer (starting, stopping, hung) gives 503
with a reason, never an exception's text.

Why a process: HTTP costs about 0.2-0.3 ms of interpreter time a request on our machines
(aiohttp's parsing and writing and the kernel's, measured with a trivial handler), so 200
clients polling every second took 10-17% of a draining worker's throughput when its own
event loop served them (docs/benchmarks.md). Here that time is spent on another core.

The worker starts this process (``python -m stream.front SOCKET``) before anything else and
restarts it if it dies (``FrontProcess``); the front exits when the worker's end of its
standard input closes, so a worker killed with SIGKILL takes it along, and removes the
socket's directory. It ignores SIGINT (a terminal's Ctrl-C reaches the worker too, which stops
in order and then closes the pipe).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web
from prometheus_client import CollectorRegistry, generate_latest

from stream.config import Settings, load_settings
from stream.health import not_ready
from stream.metrics import FrontMetrics
from stream.snapshot import json_bytes
from stream.web import JSON_CONTENT_TYPE, METRICS_CONTENT_TYPE, NOSNIFF, UNCAPPED, accepts_gzip, json_error

__all__ = ["METRICS_TTL_SECONDS", "Answer", "Front", "FrontProcess"]

log = logging.getLogger("stream.front")
METRICS_TTL_SECONDS = 0.5  # the worker builds the /metrics body at most once a second anyway
UPSTREAM_TIMEOUT = ClientTimeout(total=10)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})
NOT_ANSWERING = "the worker is not answering (starting, stopping or busy); retry in a second"
STALE_SECONDS = 2.0  # an answer this old is not served while the next is fetched: the worker is stuck
SOCKET_DIRECTORY_PREFIX = "advocacy-web-"
BIND_SECONDS = 15.0  # a front of a worker that just died may hold the port for a moment


@dataclass(frozen=True)
class Answer:
    """An HTTP answer held in memory: status, headers (without hop-by-hop ones) and body."""

    status: int
    headers: dict[str, str]
    body: bytes
    fetched: float = field(default_factory=time.monotonic)


class Front:
    """The web port's handler: held answers for /kpis and /metrics, the rest passed on."""

    def __init__(self, settings: Settings, upstream: Callable[[str, str, dict[str, str]], Awaitable[Answer]],
                 registry: CollectorRegistry | None = None) -> None:
        self.upstream = upstream
        self.max_requests = settings.web_max_requests
        self.kpis_ttl = settings.web_refresh_seconds / 2
        self.windows = frozenset(w.name for w in settings.windows)
        self.registry = registry or CollectorRegistry()
        self.metrics = FrontMetrics(self.registry)
        self._held: dict[tuple[str, str, bool], Answer] = {}
        self._pending: dict[tuple[str, str, bool], asyncio.Task[Answer]] = {}
        self._in_progress = 0

    async def handle(self, request: web.BaseRequest) -> web.Response:
        if request.path not in UNCAPPED and self._in_progress >= self.max_requests:
            self.metrics.http_rejected.inc()
            return _response(Answer(503, {"Content-Type": JSON_CONTENT_TYPE, "Retry-After": "1"},
                                    json_error("too many requests in progress; retry in a second")))
        self._in_progress += 1
        try:
            return _response(await self._answer(request))
        finally:
            self._in_progress -= 1

    async def _answer(self, request: web.BaseRequest) -> Answer:
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding"))
        if request.method in ("GET", "HEAD") and request.path == "/kpis" and set(request.query) <= {"window"}:
            window = request.query.get("window")
            if window is None or window in self.windows:  # an unknown window: the worker's 400, not held
                query = "" if window is None else f"window={window}"
                return await self._held_answer(("/kpis", query, gzipped), self.kpis_ttl,
                                               lambda: self._fetch("/kpis", query, gzipped))
        if request.method in ("GET", "HEAD") and request.path == "/metrics":
            return await self._held_answer(("/metrics", "", gzipped), METRICS_TTL_SECONDS,
                                           lambda: self._metrics(gzipped))
        headers = {"Accept-Encoding": request.headers.get("Accept-Encoding", "identity")}
        return await self._fetch_or_503(request.method, request.path_qs, headers)

    async def _held_answer(self, key: tuple[str, str, bool], ttl: float,
                           fetch: Callable[[], Awaitable[Answer]]) -> Answer:
        """The answer held for ``key``; past ``ttl``, one fetch starts (one in flight per answer, whatever
        the number of clients) and the held answer is served meanwhile, unless it is over ``STALE_SECONDS``
        old (a worker that stopped answering) or was not a 200: then requests wait for the fetch."""
        held = self._held.get(key)
        age = time.monotonic() - held.fetched if held is not None else STALE_SECONDS
        if age < ttl and held is not None:
            return held
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._refill(key, fetch))
            self._pending[key] = pending
        if age < STALE_SECONDS and held is not None and held.status == 200:  # noqa: PLR2004 - HTTP's OK
            return held
        return await asyncio.shield(pending)

    async def _refill(self, key: tuple[str, str, bool], fetch: Callable[[], Awaitable[Answer]]) -> Answer:
        try:
            answer = await fetch()
            self._held[key] = answer
            return answer
        finally:
            del self._pending[key]

    async def _fetch(self, path: str, query: str, gzipped: bool) -> Answer:
        path_qs = f"{path}?{query}" if query else path
        return await self._fetch_or_503("GET", path_qs, {"Accept-Encoding": "gzip" if gzipped else "identity"})

    async def _metrics(self, gzipped: bool) -> Answer:
        """The worker's exposition followed by the front's own (the rejected requests)."""
        answer = await self._fetch_or_503("GET", "/metrics", {"Accept-Encoding": "identity"})
        if answer.status != 200:  # noqa: PLR2004 - HTTP's OK
            return answer
        body = answer.body + generate_latest(self.registry)
        headers = {**answer.headers, "Content-Type": METRICS_CONTENT_TYPE}
        if gzipped:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return Answer(200, headers, body, answer.fetched)

    async def _fetch_or_503(self, method: str, path_qs: str, headers: dict[str, str]) -> Answer:
        started = time.monotonic()
        try:
            answer = await self.upstream(method, path_qs, headers)
        except (ClientError, OSError, TimeoutError) as exc:
            log.debug("worker not answering %s %s: %r", method, path_qs.partition("?")[0], exc)
            body = json_bytes(not_ready("worker not answering")) if path_qs == "/health" else json_error(NOT_ANSWERING)
            return Answer(503, {"Content-Type": JSON_CONTENT_TYPE, "Retry-After": "1", "Cache-Control": "no-store"},
                          body, started)
        return replace(answer, fetched=started)


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers={**answer.headers, **NOSNIFF})


def unix_upstream(socket_path: str) -> tuple[ClientSession, Callable[[str, str, dict[str, str]], Awaitable[Answer]]]:
    """A client of the worker's server on ``socket_path``, and the fetch ``Front`` calls."""
    session = ClientSession(connector=UnixConnector(path=socket_path), timeout=UPSTREAM_TIMEOUT,
                            auto_decompress=False)

    async def fetch(method: str, path_qs: str, headers: dict[str, str]) -> Answer:
        async with session.request(method, f"http://worker{path_qs}", headers=headers,
                                   allow_redirects=False) as response:
            body = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
            return Answer(response.status, kept, body)

    return session, fetch


async def serve(settings: Settings, socket_path: str, stopped: asyncio.Event) -> None:
    """Serve the web port until ``stopped`` is set."""
    session, fetch = unix_upstream(socket_path)
    front = Front(settings, fetch)
    server = web.Server(front.handle, access_log=None)
    runner = web.ServerRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.web_bind, settings.web_port, reuse_address=True)
    deadline = time.monotonic() + BIND_SECONDS
    try:
        while True:
            try:
                await site.start()
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    log.error("web: cannot listen on %s:%s (%s); check ADVOCACY_WEB_PORT", settings.web_bind,  # noqa: TRY400 - one line, no traceback
                              settings.web_port, exc.strerror)
                    raise
                await asyncio.sleep(0.2)
        await stopped.wait()
    finally:
        await runner.cleanup()
        await session.close()


def _watch_parent(loop: asyncio.AbstractEventLoop, stopped: asyncio.Event) -> None:
    """Set ``stopped`` when the worker's end of our standard input closes (it exited, however)."""

    def readable() -> None:
        if not os.read(0, 4096):
            loop.remove_reader(0)
            stopped.set()

    loop.add_reader(0, readable)


def main(argv: list[str] | None = None) -> int:
    socket_path = (argv or sys.argv[1:])[0]
    settings = load_settings()
    from stream.logs import setup

    setup(settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker stops first, then closes our stdin

    async def run() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        _watch_parent(loop, stopped)
        await serve(settings, socket_path, stopped)

    try:
        asyncio.run(run())
    except OSError:
        return 1
    finally:  # the worker is gone (or going): its socket's directory with it, however it ended
        directory = Path(socket_path).parent
        if directory.name.startswith(SOCKET_DIRECTORY_PREFIX):
            shutil.rmtree(directory, ignore_errors=True)
    return 0


class FrontProcess:
    """The worker's side: starts the front, restarts it if it dies, and owns the socket's directory."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix=SOCKET_DIRECTORY_PREFIX)
        self.socket = str(Path(self.directory) / "worker.sock")
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="web-front", daemon=True)

    def start(self) -> None:
        self._process = self._spawn()
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "stream.front", self.socket],
                                stdin=subprocess.PIPE)

    def _keep(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("web: the front process exited (code %s); starting it again", code)
            time.sleep(1)
            self._process = self._spawn()

    def stop(self) -> None:
        """Close the front's standard input (it exits) and remove the socket's directory."""
        self._stopping.set()
        process = self._process
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
