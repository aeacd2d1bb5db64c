"""A commit refused for a stale generation keeps the group member, as the Java client does.

A commit built before a rebalance can reach the coordinator after it; the broker answers
ILLEGAL_GENERATION. aiokafka (0.14) then forgets both the generation *and the member id*
and joins again as a new member, while the group still counts the old member id as one of
its own: the coordinator waits for that ghost to rejoin until its session or rebalance
timeout runs out (6 to 12 s with our settings), and the whole group stalls meanwhile,
every commit refused (measured on Apache Kafka 4.1: refusals for up to ~17 s). Apache
Kafka's own consumer keeps the member id on ILLEGAL_GENERATION ("it might be still valid,
to avoid waiting for the old member id leaving the group"): ``install`` makes aiokafka do
the same. If the member
id is no longer valid, the JoinGroup answers UNKNOWN_MEMBER_ID and aiokafka resets it
then, as before.

How: aiokafka resets right after the coordinator's answer to a heartbeat, a SyncGroup or
an OffsetCommit, in the task that sent it. ``_send_req`` is wrapped to keep the last answer
in a context variable (each task sees its own), and ``reset_generation`` to put the member
id back when that answer was ILLEGAL_GENERATION and not UNKNOWN_MEMBER_ID. ``stream.compat``
checks the members this relies on at start-up; tests/integration/test_kafka_overrides.py
shows it on Apache Kafka.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

__all__ = ["install", "installed", "keeps_member"]

_MARK = "_advocacy_keeps_member"
ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID = 22, 25
_answer: contextvars.ContextVar[Any] = contextvars.ContextVar("coordinator_answer", default=None)


def keeps_member(answer: Any) -> bool:
    """Whether this coordinator answer refused a stale generation, not the member itself."""
    codes = set()
    if hasattr(answer, "error_code"):
        codes.add(answer.error_code)
    for _, partitions in getattr(answer, "topics", None) or ():  # OffsetCommit: per partition
        codes.update(code for _, code in partitions)
    return ILLEGAL_GENERATION in codes and UNKNOWN_MEMBER_ID not in codes


def installed() -> bool:
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    return bool(getattr(GroupCoordinator.reset_generation, _MARK, False))


def install() -> None:
    """Patch aiokafka's ``GroupCoordinator`` once per process."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    if installed():
        return
    send, reset = GroupCoordinator._send_req, GroupCoordinator.reset_generation  # noqa: SLF001 - in compat.members()

    @functools.wraps(send)
    async def _send_req(self: Any, request: Any) -> Any:
        _answer.set(None)
        answer = await send(self, request)
        _answer.set(answer)
        return answer

    @functools.wraps(reset)
    def reset_generation(self: Any) -> None:
        member_id, answer = self.member_id, _answer.get()  # an OffsetCommit resets once per partition
        reset(self)  # the generation goes, and aiokafka asks to join again
        if member_id and keeps_member(answer):
            self.member_id = member_id

    setattr(reset_generation, _MARK, True)
    GroupCoordinator._send_req = _send_req  # noqa: SLF001 - in compat.members()
    GroupCoordinator.reset_generation = reset_generation
