"""Helpers of the reliability scenarios: publishing with offsets, paced streams, convergence, watching."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support import Worker, diff, http_get, strip, wait_for

Wire = tuple[str, bytes | None, bytes | None]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def publish(bootstrap: str, messages: Sequence[Wire], max_request_size: int = 4 * 1024 * 1024,
            acks: int | str = 1) -> list[tuple[int, int]]:
    """Publish (topic, key, value) messages; return each one's (partition, offset).

    ``acks="all"`` where a broker may fail: with 1, a leader's death can lose what it acknowledged.
    """
    from aiokafka import AIOKafkaProducer

    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=max_request_size,
                                    acks=acks)
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for topic, key, value in messages]
            await producer.flush()
            return [((meta := await fut).partition, meta.offset) for fut in futures]
        finally:
            await producer.stop()

    return asyncio.run(run())


class PacedStream:
    """Publishes ``messages`` in ``chunks`` from a thread, one chunk per ``interval`` seconds.

    The last ``held_back`` chunks wait for ``release()``, so that the stream is still
    flowing whatever the disruptions in between take; ``release()`` sends the rest at once.
    """

    def __init__(self, bootstrap: str, messages: Sequence[Wire], chunks: int, interval: float,
                 held_back: int = 0, acks: int | str = 1) -> None:
        size = -(-len(messages) // chunks)
        self.chunks = [messages[i:i + size] for i in range(0, len(messages), size)]
        self.bootstrap = bootstrap
        self.interval = interval
        self.held_back = held_back
        self.acks = acks
        self.sent = 0  # messages published so far
        self.error: BaseException | None = None
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PacedStream:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i, chunk in enumerate(self.chunks):
                if i >= len(self.chunks) - self.held_back:
                    self._release.wait()
                publish(self.bootstrap, chunk, acks=self.acks)
                self.sent += len(chunk)
                self._release.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - whatever stops the thread is surfaced by join()
            self.error = exc

    @property
    def flowing(self) -> bool:
        """Still publishing: some chunks are not sent yet."""
        return self._thread.is_alive() and self.sent < sum(len(c) for c in self.chunks)

    def release(self) -> None:
        self._release.set()

    def join(self, timeout: float = 120) -> None:
        self.release()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher did not finish"
        if self.error is not None:
            raise self.error


def converge(workers: Sequence[Worker], expected: Callable[[], dict[str, Any]], timeout: float) -> float:
    """Wait until every worker's /kpis equals ``expected()``; return the seconds it took."""
    started = time.monotonic()
    last: dict[str, Any] = {}

    def check() -> bool:
        want = expected()
        ok = True
        for worker in workers:
            last[worker.url] = (strip(worker.kpis()), want)
            ok = ok and last[worker.url][0] == want
        return ok

    try:
        wait_for(check, timeout, interval=1.0, what="/kpis to equal the oracle")
    except AssertionError:
        details = "\n".join(f"{url}:\n{diff(got, want)}" for url, (got, want) in last.items())
        raise AssertionError(f"/kpis never matched the oracle within {timeout} s:\n{details}") from None
    return time.monotonic() - started


def samples(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's /metrics as {(name, labels): value}."""
    status, body = http_get(worker.url + "/metrics")
    assert status == 200, status
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(worker: Worker, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples(worker).items()
               if n == name and all((k, want) in ls for k, want in labels.items()))


@dataclass
class HealthWatch:
    """Polls /health of some workers from a thread and remembers every answer that was not ready."""

    workers: list[Worker]
    interval: float = 0.25
    polls: int = 0
    bad: list[tuple[float, str, int, str]] = field(default_factory=list)  # when, url, status, body
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> HealthWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for worker in list(self.workers):
                try:
                    status, body = http_get(worker.url + "/health", timeout=5)
                except OSError as exc:
                    status, body = 0, repr(exc).encode()
                self.polls += 1
                if status != 200:
                    self.bad.append((time.monotonic(), worker.url, status, body[:300].decode(errors="replace")))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def alive(worker: Worker) -> bool:
    return worker.proc is not None and worker.proc.poll() is None


def log_text(worker: Worker) -> str:
    return worker.log.read_text(errors="replace") if worker.log.exists() else ""
