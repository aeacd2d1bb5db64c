"""Helpers shared by the integration and end-to-end tests: real processes, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream.embedded import free_port, stop

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def iso(seconds: float) -> str:
    """Epoch seconds as RFC 3339 in UTC with milliseconds: the tests' one formatter (``tests.scenario.stamp``
    writes the other shapes the contract accepts, on purpose)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def require_binary(name: str) -> str:
    """Path of a binary the test needs; in CI its absence fails the run, never skips it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    status, body = http_get(url)
    assert status == 200, f"{url} -> {status}: {body[:300]!r}"
    return json.loads(body)


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "") -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, AssertionError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}: last={last!r}")


@dataclass
class Worker:
    """A ``python -m stream worker`` subprocess."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Worker:
        env = dict(self.env, ADVOCACY_WEB_PORT=str(self.port))
        out = self.log.open("ab")  # closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "stream", "worker"], env=env,
                                     stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; log {self.log}")
            status, _ = http_get(self.url + "/health", timeout=2)
            return status == 200

        wait_for(ready, timeout, what=f"worker on {self.port} ready")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=15)

    def kpis(self, window: str | None = None) -> dict[str, Any]:
        return get_json(self.url + "/kpis" + (f"?window={window}" if window else ""))  # type: ignore[no-any-return]


def rows(kpis: dict[str, Any], key: str, label: str | None = None) -> dict[Any, dict[str, Any]]:
    """Index a /kpis list by (label, window) or by window for the overall lists."""
    out: dict[Any, dict[str, Any]] = {}
    for row in kpis[key]:
        out[(row[label], row["window"]) if label else row["window"]] = row
    return out


def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]],
            partition_of: Callable[[int], int | None] | None = None) -> int:
    """Publish (topic, key, value) messages with a plain aiokafka producer; returns the count."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        n = 0
        try:
            futures = []
            for i, (topic, key, value) in enumerate(messages):
                partition = partition_of(i) if partition_of else None
                futures.append(await producer.send(topic, value, key=key, partition=partition))
                n += 1
            await producer.flush()
            for fut in futures:
                await fut
        finally:
            await producer.stop()
        return n

    return asyncio.run(run())


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Read a topic from the start (no group) until ``expected`` records or ``timeout``."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            parts: set[int] | None = None
            while parts is None and time.monotonic() < deadline:
                parts = consumer.partitions_for_topic(topic)
                if parts is None:
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.2)
            assert parts, f"topic {topic} not found"
            consumer.assign([TopicPartition(topic, p) for p in parts])
            await consumer.seek_to_beginning()
            records: list[Any] = []
            while len(records) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    records.extend(recs)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(run())


def strip(kpis: dict[str, Any]) -> dict[str, Any]:
    """/kpis without generated_at, for comparison with the oracle."""
    return {k: v for k, v in kpis.items() if k != "generated_at"}


IDENTITY = ("segment", "team", "window")


def diff(actual: dict[str, Any], expected: dict[str, Any]) -> str:
    """Readable differences between two /kpis bodies, row by row."""
    lines = []
    for key, want_rows in expected.items():
        got = {tuple(r.get(k) for k in IDENTITY): r for r in actual.get(key, [])}
        want = {tuple(r.get(k) for k in IDENTITY): r for r in want_rows}
        for ident in sorted(got.keys() | want.keys(), key=str):
            if got.get(ident) != want.get(ident):
                lines.append(f"{key} {ident}: expected {want.get(ident)} got {got.get(ident)}")
    return "\n".join(lines[:40])
