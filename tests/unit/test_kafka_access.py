"""The start-up check of the worker's topic ACLs: the Metadata v8 bytes, the version choice, the verdict."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from stream.config import load_settings
from stream.kafka import AccessDenied, describe
from stream.kafka_access import (
    DESCRIBE,
    NOT_COMPUTED,
    READ,
    WRITE,
    MetadataRequestV8,
    MetadataResponseV8,
    TopicOperationsRequest,
    missing_access,
    topic_operations,
)

SETTINGS = load_settings(kafka_sasl_username="worker", dlq_topic="dead")
ALL = sum(1 << op for op in (READ, WRITE, 5, 6, 7, DESCRIBE, 10, 11))  # Kafka without an authorizer: 3576
SOURCES = ("reviews", "referrals", "tickets-closed", "customers")


def text(value: str) -> bytes:
    return struct.pack(">h", len(value)) + value.encode()


def test_the_request_is_metadata_v8_asking_for_the_topics_operations_and_creating_nothing() -> None:
    request = TopicOperationsRequest(["a", "bb"]).prepare({3: (0, 12)})
    assert isinstance(request, MetadataRequestV8)
    assert (request.API_KEY, request.API_VERSION) == (3, 8)
    # topics, allow_auto_topic_creation=false, include_cluster_authorized_operations=false, include_topic...=true
    assert request.encode() == struct.pack(">i", 2) + text("a") + text("bb") + bytes([0, 0, 1])
    header = request.build_request_header(correlation_id=7, client_id="c")
    assert header.encode() == struct.pack(">hhi", 3, 8, 7) + text("c")  # v8 is not a flexible version


def test_a_broker_without_metadata_v8_is_not_asked() -> None:
    class Client:  # what AIOKafkaClient.send does first: the connection prepares the negotiated version
        def __init__(self, versions: dict[int, tuple[int, int]]) -> None:
            self.versions = versions

        def get_random_node(self) -> int:
            return 1

        async def send(self, node: int, request: Any) -> Any:
            request.prepare(self.versions)
            raise AssertionError("not sent")

    assert asyncio.run(topic_operations(Client({3: (0, 7)}), ["a"])) is None
    assert asyncio.run(topic_operations(Client({18: (0, 3)}), ["a"])) is None  # no Metadata at all


def test_the_answer_is_read_by_its_v8_layout() -> None:
    partition = struct.pack(">hiii", 0, 0, 1, 5) + struct.pack(">ii", 1, 1) * 2 + struct.pack(">i", 0)
    topic = struct.pack(">h", 0) + text("dead") + b"\x00" + struct.pack(">i", 1) + partition + struct.pack(">i", 1 << 8)
    broker = struct.pack(">i", 1) + text("h") + struct.pack(">i", 9092) + struct.pack(">h", -1)
    body = (struct.pack(">ii", 0, 1) + broker + text("cluster") + struct.pack(">i", 1)
            + struct.pack(">i", 1) + topic + struct.pack(">i", NOT_COMPUTED))
    response = MetadataResponseV8.decode(body)
    assert [(t[1], t[0], t[4]) for t in response.topics] == [("dead", 0, 256)]
    assert response.topics[0][3][0][3] == 5  # the leader epoch, v7+: the layout is v8's

    class Client:
        def get_random_node(self) -> int:
            return 1

        async def send(self, node: int, request: Any) -> Any:
            return response

    assert asyncio.run(topic_operations(Client(), ["dead"])) == {"dead": (0, 256)}


def test_every_operation_allowed_lacks_nothing() -> None:
    answered = dict.fromkeys((*SOURCES, "dead"), (0, ALL))
    assert missing_access(SETTINGS, answered) == ([], [])


def test_write_missing_on_the_dead_letter_topic_names_topic_operation_and_setting() -> None:
    answered = dict.fromkeys(SOURCES, (0, 1 << READ | 1 << DESCRIBE)) | {"dead": (0, 1 << DESCRIBE)}
    lacking, unknown = missing_access(SETTINGS, answered)
    assert lacking == ["Write on topic 'dead' (ADVOCACY_DLQ_TOPIC)"]
    assert unknown == []
    problem = describe(SETTINGS, AccessDenied(f"it lacks {lacking[0]}"))
    assert problem.reason == ("kafka: user 'worker' is not authorized: "
                              "it lacks Write on topic 'dead' (ADVOCACY_DLQ_TOPIC)")


def test_read_missing_and_a_topic_it_may_not_even_describe_are_both_named() -> None:
    answered = dict.fromkeys(SOURCES, (0, ALL)) | {"dead": (0, ALL)}
    answered["referrals"] = (0, 1 << WRITE | 1 << DESCRIBE)
    answered["customers"] = (29, NOT_COMPUTED)  # TOPIC_AUTHORIZATION_FAILED
    lacking, _ = missing_access(SETTINGS, answered)
    assert lacking == ["Read on topic 'referrals' (ADVOCACY_REFERRALS_TOPIC)",
                       "Describe and Read on topic 'customers' (ADVOCACY_CUSTOMERS_TOPIC)"]


def test_a_broker_that_does_not_compute_the_field_is_not_judged() -> None:
    # tansu answers v8 with the "not computed" default; a field without Describe was not computed either
    # (Kafka answers such a topic with TOPIC_AUTHORIZATION_FAILED); another error: a topic still being made
    answered = {"reviews": (0, NOT_COMPUTED), "referrals": (0, 0), "tickets-closed": (3, ALL),
                "customers": (0, ALL)}
    assert missing_access(SETTINGS, answered) == ([], ["reviews", "referrals", "tickets-closed", "dead"])
