"""How a customer's record is stored in Redis: ``version|[registration, actions, tickets, "us"]``, with the
events of later batches appended (``encode_added``) rather than the whole record rewritten; and the
record versions (``Tokens``)."""

from __future__ import annotations

import itertools
import os
from typing import Any

import orjson

from stream.kpi.record import Customer

__all__ = ["APPEND", "DELETE", "MICROS", "SET", "Tokens", "decode", "encode", "encode_added"]

SET, APPEND, DELETE = 0, 1, 2  # how the commit writes a record

# Event times in a record are microseconds, marked by a fourth element of the head; a head of three
# elements is a record written before microseconds (times in milliseconds): it is read as the same
# times x 1000, and rewritten whole (never appended to) the first time it changes.
MICROS = "us"


def encode(customer: Customer) -> bytes:
    """The whole record: ``version|[registration, actions, tickets, "us"]``."""
    body = orjson.dumps([customer.registration, customer.actions, customer.tickets, MICROS])
    return customer.version.encode() + b"|" + body


def encode_added(added: tuple[dict[str, Any], dict[str, Any]]) -> bytes:
    """Events appended to a stored record: a newline, then ``[actions, tickets]`` (JSON has none)."""
    return b"\n" + orjson.dumps(added)


def decode(blob: bytes | None) -> Customer:
    """A record as written by ``encode``, with any appended events merged in."""
    if blob is None:
        return Customer()
    head, _, body = blob.partition(b"|")
    parts = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
    registration, actions, tickets, *unit = parts[0]
    for added_actions, added_tickets in parts[1:]:
        actions.update(added_actions)
        tickets.update(added_tickets)
    if unit != [MICROS]:
        return _from_milliseconds(head.decode(), registration, actions, tickets)
    return Customer(
        version=head.decode(),
        registration=(registration[0], registration[1], registration[2], registration[3]) if registration else None,
        # JSON arrays unpack like the (time, name) tuples they were: no per-event copy
        actions=actions,
        tickets=tickets,
    )


def _from_milliseconds(version: str, registration: list[Any] | None, actions: dict[str, list[Any]],
                       tickets: dict[str, list[Any]]) -> Customer:
    """A record written before microseconds, its times x 1000; marked to be rewritten whole."""
    return Customer(
        version=version,
        registration=(registration[0] * 1000, registration[1], registration[2], registration[3])
        if registration else None,
        actions={k: (at * 1000, seg) for k, (at, seg) in actions.items()},
        tickets={k: (at * 1000, team) for k, (at, team) in tickets.items()},
        legacy=True,
    )


class Tokens:
    """Record versions that never repeat: a random prefix per process and a counter, one
    per commit (every record a commit writes gets the commit's token). Fixed width, so an
    appending commit overwrites the version in place.

    A version is compared for equality only, so a record deleted (expired) and written
    again by another worker can never be mistaken for the one a cache holds.
    """

    WIDTH = 24

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}.{next(self.counter):011x}"
