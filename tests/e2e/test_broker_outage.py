"""Kafka unreachable mid-run: /health says so, and the worker recovers with exact numbers.

The broker advertises a proxy's port, so every client connection goes through the proxy,
which the test cuts and restores (tansu keeps topics in memory: restarting it would lose them).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import pytest

from stream.embedded import free_port, stop, tansu_path, wait_port
from tests.conftest import Namespace
from tests.oracle import expected_kpis
from tests.scenario import ATTRIBUTION, WINDOWS, build
from tests.support import http_get, produce, strip, wait_for

pytestmark = pytest.mark.e2e


class Proxy:
    """A TCP proxy on its own event loop thread; ``cut`` drops every connection."""

    def __init__(self, listen: int, target: int) -> None:
        self.listen, self.target = listen, target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen)

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()

    def start(self) -> None:
        if not self.thread.is_alive():
            self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(5)

    def close(self) -> None:
        if self.server is not None and self.server.is_serving():
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_kafka_unreachable_mid_run_is_reported_and_recovered_from(namespace: Namespace, tmp_path: Path) -> None:
    """Connections to Kafka cut for 10 s: /health answers 503 naming Kafka, then the worker resumes exactly."""
    broker_port, proxy_port = free_port(), free_port()
    broker = subprocess.Popen([str(tansu_path()), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
                               "--advertised-listener-url", f"tcp://127.0.0.1:{proxy_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = Proxy(proxy_port, broker_port)
    try:
        wait_port(broker_port, proc=broker)
        proxy.start()
        bootstrap = f"127.0.0.1:{proxy_port}"
        scenario = build(time.time(), namespace.topics, seed=61, customers=30)
        messages = scenario.messages()
        half = len(messages) // 2
        worker = namespace.worker(tmp_path, ADVOCACY_KAFKA_BOOTSTRAP_SERVERS=bootstrap).start().wait_ready()
        try:
            produce(bootstrap, messages[:half])
            time.sleep(2)
            proxy.cut()
            cut_at = time.monotonic()

            def kafka_down() -> bool:
                status, body = http_get(worker.url + "/health")
                return status == 503 and b"kafka unreachable" in body

            wait_for(kafka_down, 20, what="/health to report Kafka unreachable")
            time.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))
            proxy.start()
            worker.wait_ready(60)
            produce(bootstrap, messages[half:])
            expected = expected_kpis(scenario.all_valid(), time.time(), WINDOWS, ATTRIBUTION)
            wait_for(lambda: strip(worker.kpis()) == expected, 90, what="exact kpis after the outage")
        finally:
            worker.stop()
        assert "kafka unreachable" in worker.log.read_text()
    finally:
        proxy.close()
        stop(broker)
