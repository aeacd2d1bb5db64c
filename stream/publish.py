"""``python -m stream publish TOPIC [FILE]``: validate JSON lines and publish the good ones.

Each non-blank line is one message value, checked with ``stream.events.parse`` exactly as
a worker would. Bad lines are reported on stderr as ``FILE:LINE: reason: detail`` and
not sent; good lines are sent unchanged, keyed by their ``customer_id``. A summary goes
to stdout; the exit code is 1 when any line was rejected or not delivered, else 0.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

from stream.config import Settings
from stream.errors import AdvocacyError, InvalidEvent
from stream.producer import Producer, topic_name, validate

__all__ = ["IN_FLIGHT", "LARGE_FILE_BYTES", "Reporter", "Tally", "run_publish"]

LARGE_FILE_BYTES = 1_000_000  # a progress bar from this size on, when stderr is a terminal
IN_FLIGHT = 1000  # wait for deliveries every this many messages: bounded memory on big files


@dataclass
class Tally:
    """What happened to the lines of one run."""

    sent: int = 0
    rejected: int = 0
    failed: int = 0

    def summary(self, topic: str, name: str, dry_run: bool) -> str:
        verb = "valid" if dry_run else "sent"
        text = f"{topic} ({name}): {verb} {self.sent}, rejected {self.rejected}"
        return text + (f", not delivered {self.failed}" if self.failed else "")


class Reporter:
    """Writes bad lines to stderr, through the progress bar's console when one is shown."""

    def __init__(self, source: str, stderr: IO[str], total_bytes: int | None) -> None:
        self.source = source
        self.stderr = stderr
        self.progress: Any = None
        self.task: Any = None
        if total_bytes is not None and total_bytes >= LARGE_FILE_BYTES and stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                     TextColumn("{task.fields[lines]} lines"), TimeRemainingColumn(),
                                     console=Console(file=stderr))
            self.task = self.progress.add_task(f"publishing {Path(source).name}", total=total_bytes,
                                              lines=0)

    def __enter__(self) -> Self:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def advance(self, size: int, lines: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=size, lines=lines)

    def line(self, number: int, message: str) -> None:
        text = f"{self.source}:{number}: {message}"
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stderr)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, int]]:
    """(line number, value without the line end, bytes consumed); blank lines are skipped."""
    for number, line in enumerate(stream, 1):
        value = line.rstrip(b"\r\n")
        if value.strip():
            yield number, value, len(line)


def _validate(settings: Settings, topic: str, stream: IO[bytes], reporter: Reporter, tally: Tally) -> None:
    """A dry run: each line validated, nothing sent."""
    for number, value, size in _lines(stream):
        try:
            validate(settings, topic, value)
        except InvalidEvent as exc:
            reporter.line(number, f"{exc.reason}: {exc.detail}")
            tally.rejected += 1
        else:
            tally.sent += 1
        reporter.advance(size, number)


async def _publish(settings: Settings, topic: str, stream: IO[bytes], reporter: Reporter,
                   tally: Tally, dry_run: bool) -> None:
    if dry_run:
        _validate(settings, topic, stream, reporter, tally)
        return
    async with Producer(settings=settings) as producer:
        pending: list[tuple[int, asyncio.Future[Any]]] = []

        async def settle() -> None:
            results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
            for (number, _), result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    reporter.line(number, f"not delivered: {type(result).__name__}: {result}")
                    tally.failed += 1
                else:
                    tally.sent += 1
            pending.clear()

        for number, value, size in _lines(stream):
            try:
                pending.append((number, await producer.send(topic, value)))
            except InvalidEvent as exc:
                reporter.line(number, f"{exc.reason}: {exc.detail}")
                tally.rejected += 1
            if len(pending) >= IN_FLIGHT:
                await settle()
            reporter.advance(size, number)
        await producer.flush()
        await settle()


def run_publish(settings: Settings, topic: str, file: str | None, *, dry_run: bool = False,
                stdin: IO[bytes] | None = None, stdout: IO[str] | None = None,
                stderr: IO[str] | None = None) -> int:
    """The ``publish`` command; returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    name = topic_name(settings, topic)
    tally = Tally()
    with ExitStack() as stack:
        if file is None or file == "-":
            source, stream, total = "<stdin>", stdin or sys.stdin.buffer, None
        else:
            try:
                stream = stack.enter_context(Path(file).open("rb"))
            except OSError as exc:
                raise AdvocacyError(f"cannot read {file}: {exc.strerror}") from None
            info = os.fstat(stream.fileno())
            source, total = file, (info.st_size if stat.S_ISREG(info.st_mode) else None)
        with Reporter(source, stderr, total) as reporter:
            asyncio.run(_publish(settings, topic, stream, reporter, tally, dry_run))
    print(tally.summary(topic, name, dry_run), file=stdout)
    return 1 if tally.rejected or tally.failed else 0
