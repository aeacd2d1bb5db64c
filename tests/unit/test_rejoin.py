"""stream.rejoin: which coordinator answers keep the member id (aiokafka's own response classes)."""

from __future__ import annotations

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetCommitResponse_v2
from aiokafka.protocol.group import HeartbeatResponse_v1, SyncGroupResponse_v1

from stream import rejoin


def test_a_refused_generation_keeps_the_member_and_an_unknown_member_does_not() -> None:
    assert rejoin.keeps_member(HeartbeatResponse_v1(0, 22))
    assert rejoin.keeps_member(SyncGroupResponse_v1(0, 22, b""))
    assert rejoin.keeps_member(OffsetCommitResponse_v2([("t", [(0, 22), (1, 22)])]))
    assert not rejoin.keeps_member(HeartbeatResponse_v1(0, 25))
    assert not rejoin.keeps_member(OffsetCommitResponse_v2([("t", [(0, 22), (1, 25)])]))
    assert not rejoin.keeps_member(HeartbeatResponse_v1(0, 0))
    assert not rejoin.keeps_member(None)  # no answer (the request failed): aiokafka's reset stands


def test_installed_once_and_the_reset_puts_only_a_known_member_back() -> None:
    rejoin.install()
    rejoin.install()
    assert rejoin.installed()
    wrapped = GroupCoordinator.reset_generation
    assert getattr(wrapped, "__wrapped__", None) is not None
    assert getattr(wrapped.__wrapped__, "_advocacy_keeps_member", False) is False  # wrapped once, not twice
