"""The private parts of faust-streaming, aiokafka and prometheus_client this worker relies on,
checked at start-up.

``stream.batching`` (and ``stream.kafka_access``) overrides or calls members that are not part of either library's
public API. Each one is a promise that the library still works as we assumed: the
versions are pinned in ``pyproject.toml`` (and exactly in ``requirements.lock``), and
``check()`` looks at every member at start-up, so that a release that renames or
reshapes one stops the worker with one clear line instead of silently changing which
offsets are committed. ``tests/unit/test_compat.py`` tests the check itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stream.errors import AdvocacyError

__all__ = ["IncompatibleLibrary", "Member", "check", "members", "require"]


class IncompatibleLibrary(AdvocacyError):
    """An installed faust-streaming or aiokafka lacks a member the worker relies on."""


@dataclass(frozen=True)
class Member:
    """A member of ``owner`` we override, call or read, with the parameters we pass."""

    owner: Any
    name: str
    parameters: tuple[str, ...] | None  # None: an attribute, not a method
    why: str

    def problem(self) -> str | None:
        """What is wrong with this member in the installed library, or None."""
        where = f"{self.owner.__module__}.{self.owner.__qualname__}.{self.name}"
        found = inspect.getattr_static(self.owner, self.name, None)
        if found is None:
            found = _instance_attribute(self.owner, self.name)
        if found is None:
            return f"{where} is missing"
        if self.parameters is None:
            return None
        if not callable(getattr(self.owner, self.name, None)):
            return f"{where} is no longer a method"
        params = tuple(inspect.signature(getattr(self.owner, self.name)).parameters)
        if params[: len(self.parameters)] != self.parameters:
            return f"{where} takes {params}, expected {self.parameters}"
        return None


def _instance_attribute(owner: type, name: str) -> object | None:
    """An attribute set on instances by the class's own methods (looked for in its source, no
    instance needed)."""
    for cls in inspect.getmro(owner):
        if cls is object:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        if f"self.{name} =" in source or f"self.{name}:" in source:
            return name
    return None


def members() -> list[Member]:
    """Every private touch point, with what it is for."""
    import aiokafka
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.protocol.api import Request
    from faust import App
    from faust.tables import TableManager
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from mode import Service
    from prometheus_client import Histogram

    return [
        Member(Consumer, "_drain_messages", ("self", "fetcher"),
               "replaced: the fetch loop hands a fetch over as batches"),
        Member(Consumer, "_wait_next_records", ("self", "timeout"), "called: one fetch"),
        Member(Consumer, "_filter_tps_with_pending_acks", ("self", "topics"),
               "replaced: the committer asks which partitions have something to commit"),
        Member(Consumer, "_new_offset", ("self", "tp"), "replaced: the offset the committer commits"),
        Member(Consumer, "_commit_offsets", ("self", "offsets", "start_new_transaction"),
               "extended: a refused commit is not remembered as made"),
        Member(Consumer, "_committed_offset", None, "restored: what Faust believes is committed"),
        Member(Consumer, "_read_offset", None, "read and written: the last offset read per partition"),
        Member(Consumer, "perform_seek", ("self",), "replaced: after an assignment, seek to the state's positions"),
        Member(Consumer, "_buffered_partitions", None, "read: partitions paused for a full buffer"),
        Member(Consumer, "on_partitions_assigned", ("self", "assigned", "generation_id"),
               "extended: counts assignments"),
        Member(Consumer, "on_partitions_revoked", ("self", "revoked"), "extended: counts revocations"),
        Member(Consumer, "earliest_offsets", ("self",), "called: the reset policy's offset, taken explicitly"),
        Member(Consumer, "seek_wait", ("self", "partitions"), "called: rewinds"),
        Member(Consumer, "position", ("self", "tp"), "called: the gap check"),
        Member(Consumer, "highwaters", ("self",), "called: how far a rebuild has to read"),
        Member(ThreadDelegateConsumer, "_new_consumer_thread", ("self",), "replaced: our consumer thread"),
        Member(AIOKafkaConsumerThread, "_create_worker_consumer", ("self", "transport"),
               "extended: sets the fetch wait"),
        Member(TableManager, "_update_channels", ("self",), "called by our table-manager start"),
        Member(TableManager, "recovery", None, "started by our table-manager start"),
        Member(App, "_new_consumer", ("self",), "replaced: builds the batch consumer"),
        Member(App, "_on_partitions_revoked", ("self", "revoked"), "passed to the batch consumer, as Faust does"),
        Member(App, "_on_partitions_assigned", ("self", "assigned"), "passed to the batch consumer, as Faust does"),
        Member(Service, "_stopped", None, "read: whether the consumer and the fetcher are stopping"),
        Member(aiokafka.AIOKafkaConsumer, "_fetch_max_wait_ms", None, "written: the fetch wait"),
        # stream.rejoin: a commit refused for a stale generation keeps the member id
        Member(GroupCoordinator, "_send_req", ("self", "request"), "wrapped: keeps the coordinator's last answer"),
        Member(GroupCoordinator, "reset_generation", ("self",),
               "wrapped: puts the member id back after ILLEGAL_GENERATION"),
        Member(GroupCoordinator, "member_id", None, "read and written: the group member id"),
        # stream.metrics.observe_many: one increment per bucket for a whole batch of observations
        Member(Histogram, "_upper_bounds", None, "read: a histogram's bucket bounds"),
        Member(Histogram, "_buckets", None, "incremented: a histogram's bucket counters"),
        Member(Histogram, "_sum", None, "incremented: a histogram's sum"),
        # stream.kafka_access: a Metadata v8 request declared with aiokafka's protocol classes (not
        # private, not documented either); tests/unit/test_kafka_access.py checks its bytes
        Member(Request, "build", ("self", "request_struct_class"), "implemented: builds the v8 request"),
        Member(Request, "prepare", ("self", "versions"), "called by the connection: the negotiated version"),
        Member(AIOKafkaClient, "get_random_node", ("self",), "called: a broker to ask"),
        Member(AIOKafkaClient, "send", ("self", "node_id", "request"), "called: sends the v8 request"),
    ]


def check(candidates: Iterable[Member] | None = None) -> list[str]:
    """Problems found, one line each; empty when every member is as expected."""
    return [p for m in (members() if candidates is None else candidates) if (p := m.problem())]


def require() -> None:
    """Raise ``IncompatibleLibrary`` naming the first problem (the worker refuses to start)."""
    problems = check()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IncompatibleLibrary(
            "installed faust-streaming/aiokafka/prometheus_client differ from the tested versions: "
            f"{problems[0]}{more}; "
            "install the versions pinned in requirements.lock")
