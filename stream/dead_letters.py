"""The dead-letter topic: a batch's bad messages, sent together, each with its provenance.

Each dead letter is the original key and value with headers ``source_topic``,
``source_partition``, ``source_offset``, ``reason`` and ``detail``. A ``too_large`` value
is cut to its first ``CUT_BYTES`` bytes, with header ``original_size`` (its size in
bytes); so is any other value that the broker refuses as too large with the headers
added. Everything else goes unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka.errors import MessageSizeTooLargeError

from stream.pipeline import DeadLetter, where

__all__ = ["CUT_BYTES", "Headers", "KafkaDeadLetters", "Producer", "dead_letter"]

log = logging.getLogger("stream.dead_letters")
CUT_BYTES = 64 * 1024
Headers = list[tuple[str, bytes]]


class Producer(Protocol):
    """Faust's producer, as used here: ``send`` queues a record and returns its delivery."""

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Headers | None) -> Awaitable[Any]: ...


def dead_letter(letter: DeadLetter, cut: bool = False) -> tuple[bytes | None, Headers]:
    """The value and headers of a dead letter; ``cut`` (always for too_large) bounds the value."""
    message = letter.message
    value = message.value
    headers = [
        ("source_topic", message.topic.encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
        ("reason", letter.reason.encode()),
        ("detail", letter.detail.encode()),
    ]
    if (cut or letter.reason == "too_large") and value is not None and len(value) > CUT_BYTES:
        headers.append(("original_size", str(len(value)).encode()))
        value = value[:CUT_BYTES]
    return value, headers


class KafkaDeadLetters:
    """Sends dead letters to the dead-letter topic through the worker's producer."""

    def __init__(self, producer: Callable[[], Producer], topic: str) -> None:
        self.producer = producer  # called at each send: Faust creates its producer when the worker starts
        self.topic = topic

    async def send(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Queue every letter at once, then wait for all of them; returns those not sent.

        A letter refused as too large is sent again at once, cut (``original_size``).
        """
        refused = await self._send_together(letters, cut=False)
        too_large = [letter for letter, error in refused if _too_large(error)]
        failed = [letter for letter, error in refused if not _too_large(error)]
        if too_large:
            failed += [letter for letter, _ in await self._send_together(too_large, cut=True)]
        for letter, error in refused[:1]:
            log.warning("dead letter for %s not sent: %s", where(letter.message), type(error).__name__)
        return failed

    async def _send_together(self, letters: Sequence[DeadLetter], cut: bool
                             ) -> list[tuple[DeadLetter, BaseException]]:
        producer = self.producer()
        queued: list[tuple[DeadLetter, Awaitable[Any]]] = []
        refused: list[tuple[DeadLetter, BaseException]] = []
        for letter in letters:
            value, headers = dead_letter(letter, cut)
            try:
                queued.append((letter, await producer.send(self.topic, letter.message.key, value, None, None,
                                                           headers)))
            except Exception as exc:  # noqa: BLE001 - refused before it was queued (too large, producer stopped)
                refused.append((letter, exc))
        outcomes = await asyncio.gather(*(delivery for _, delivery in queued), return_exceptions=True)
        for (letter, _), outcome in zip(queued, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                refused.append((letter, outcome))
        return refused


def _too_large(error: BaseException) -> bool:
    """Refused for its size, by the producer (Faust wraps aiokafka's error) or by the broker."""
    return isinstance(error, MessageSizeTooLargeError) or isinstance(error.__cause__, MessageSizeTooLargeError)
