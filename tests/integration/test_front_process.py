"""The web front as a process (stream.front): it serves the web port from the worker's Unix
socket, ignores a terminal's SIGINT, exits when the worker's end of its stdin closes (however
the worker ended) and takes the socket's directory along; the worker restarts it if it dies.
The worker's server here is a real aiohttp server on a Unix socket (tests/e2e run the real pair)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from stream.embedded import free_port
from stream.front import FrontProcess

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_status(port: int, path: str, status: int, seconds: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            got, body = _get(port, path)
            if got == status:
                return body
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.1)


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> int:
    chosen = free_port()
    monkeypatch.setenv("ADVOCACY_WEB_PORT", str(chosen))
    monkeypatch.setenv("ADVOCACY_LOG_LEVEL", "WARNING")
    return chosen


@pytest.fixture
async def worker_server(tmp_path: Path) -> AsyncIterator[str]:
    """A server standing for the worker's, on a Unix socket: /kpis counts its requests."""
    served = {"kpis": 0}

    async def kpis(request: web.Request) -> web.Response:  # noqa: ARG001 - aiohttp's handler signature
        served["kpis"] += 1
        return web.json_response({"served": served["kpis"]})

    app = web.Application()
    app.router.add_get("/kpis", kpis)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "worker.sock")
    await web.UnixSite(runner, path).start()
    yield path
    await runner.cleanup()


async def test_the_front_serves_ignores_sigint_and_exits_when_its_stdin_closes(
        port: int, worker_server: str, tmp_path: Path) -> None:
    directory = tmp_path / "advocacy-web-test"
    directory.mkdir()
    socket_path = directory / "worker.sock"
    socket_path.symlink_to(worker_server)
    front = subprocess.Popen([sys.executable, "-m", "stream.front", str(socket_path)],  # noqa: ASYNC220 - at once
                             stdin=subprocess.PIPE)
    try:
        body = await asyncio.to_thread(_wait_status, port, "/kpis", 200)
        assert body == {"served": 1}
        front.send_signal(signal.SIGINT)  # a terminal's Ctrl-C: the worker stops first, not the front
        await asyncio.sleep(0.5)
        assert front.poll() is None
        assert (await asyncio.to_thread(_get, port, "/kpis"))[0] == 200
        assert front.stdin is not None
        front.stdin.close()  # the worker exited
        assert await asyncio.to_thread(front.wait, 5) == 0
        assert not directory.exists()  # the socket's directory went with it
    finally:
        front.kill()
        front.wait()


async def test_a_front_that_dies_is_started_again_and_stop_ends_it(port: int) -> None:
    """FrontProcess (the worker's side): no worker behind the socket yet -> 503 with a reason;
    the front SIGKILLed -> started again; stop() -> gone, the directory too."""
    process = FrontProcess()
    process.start()
    try:
        body = await asyncio.to_thread(_wait_status, port, "/health", 503)
        assert body == {"status": "not ready", "reasons": ["worker not answering"]}
        first = process._process
        assert first is not None
        first.kill()
        await asyncio.to_thread(first.wait, 5)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(_wait_status, port, "/health", 503)
        assert process._process is not first
        assert process._process is not None
        assert process._process.poll() is None
    finally:
        process.stop()
    assert process._process is not None
    assert process._process.poll() is not None
    assert not Path(process.directory).exists()  # noqa: ASYNC240 - one stat
