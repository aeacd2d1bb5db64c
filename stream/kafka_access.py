"""May this worker's principal do what it needs on its topics? Asked of the broker at start-up.

Read on every source topic, Write on the dead-letter topic: without Write, the first malformed event
would be retried for ever and stall its partition. The broker says which operations it allows on
each topic in its Metadata answer (v8+, ``include_topic_authorized_operations``, KIP-430): a bit field,
bit n set when operation n (Kafka's AclOperation code) is allowed. aiokafka 0.14 ships Metadata up to
v5; the v8 request and answer are declared here with its protocol building blocks and sent with
``AIOKafkaClient.send``, which picks the version the connection negotiated. A broker that does not
answer v8 (or does not compute the field) is not checked: one debug line says so.

Apache Kafka (``AuthHelper.authorizedOperations``): with an authorizer, the operations it allows
(an ALL ACL or an implied operation counts); without one, every operation of the resource type.
It answers a topic the principal may not Describe with TOPIC_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Schema, String

from stream.config import TOPICS, Settings

__all__ = ["DESCRIBE", "NOT_COMPUTED", "READ", "WRITE", "TopicOperationsRequest", "check_access", "missing_access",
           "needed_operations", "topic_operations"]

log = logging.getLogger("stream.topics")

READ, WRITE, DESCRIBE = 3, 4, 8  # org.apache.kafka.common.acl.AclOperation codes
NOT_COMPUTED = -(2**31)  # the field's default: the broker did not compute it
TOPIC_AUTHORIZATION_FAILED = 29
_NAMES = {READ: "Read", WRITE: "Write", DESCRIBE: "Describe"}


class MetadataResponseV8(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", Array(("node_id", Int32), ("host", String("utf-8")), ("port", Int32),
                          ("rack", String("utf-8")))),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        ("topics", Array(
            ("error_code", Int16),
            ("name", String("utf-8")),
            ("is_internal", Boolean),
            ("partitions", Array(("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                                 ("leader_epoch", Int32), ("replica_nodes", Array(Int32)),
                                 ("isr_nodes", Array(Int32)), ("offline_replicas", Array(Int32)))),
            ("topic_authorized_operations", Int32))),
        ("cluster_authorized_operations", Int32),
    )


class MetadataRequestV8(RequestStruct):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = MetadataResponseV8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),  # v8's topic entry has only its name: same bytes
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class TopicOperationsRequest(Request[MetadataRequestV8]):  # type: ignore[misc]
    """Metadata of ``topics`` with the operations this principal may do on each (never creates one)."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[MetadataRequestV8]) -> MetadataRequestV8:
        return request_struct_class(self.topics, False, False, True)


def needed_operations(settings: Settings) -> list[tuple[str, str, int]]:
    """(topic, its ADVOCACY_ setting, operation): Read on each source topic, Write on the dead-letter topic."""
    return [(settings.topic_name(t), f"ADVOCACY_{t.setting.upper()}", READ if t.source else WRITE)
            for t in TOPICS]


def missing_access(settings: Settings, answered: dict[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
    """What the principal lacks, one phrase per topic, from the broker's (error code, bit field) per topic;
    and the topics whose answer carries no bit field to judge (not checked).

    A topic answered without error always allows Describe (else Kafka answers
    TOPIC_AUTHORIZATION_FAILED); a field without the Describe bit (or the "not computed" default)
    was not computed by this broker.
    """
    lacking: list[str] = []
    unknown: list[str] = []
    for name, setting, operation in needed_operations(settings):
        code, bits = answered.get(name, (0, NOT_COMPUTED))
        if code == TOPIC_AUTHORIZATION_FAILED:
            lacking.append(f"{_NAMES[DESCRIBE]} and {_NAMES[operation]} on topic {name!r} ({setting})")
        elif code or bits == NOT_COMPUTED or not bits >> DESCRIBE & 1:
            unknown.append(name)  # another error (e.g. a topic just created) or nothing computed
        elif not bits >> operation & 1:
            lacking.append(f"{_NAMES[operation]} on topic {name!r} ({setting})")
    return lacking, unknown


async def topic_operations(client: Any, topics: list[str]) -> dict[str, tuple[int, int]] | None:
    """The broker's (error code, authorized operations) per topic; None when it cannot answer Metadata v8.

    ``client``: a bootstrapped ``aiokafka.client.AIOKafkaClient``.
    """
    from aiokafka.errors import IncompatibleBrokerVersion

    node = client.get_random_node()
    try:
        response = await client.send(node, TopicOperationsRequest(topics))
    except (NotImplementedError, IncompatibleBrokerVersion):  # raised by prepare(): no v8 on this broker
        return None
    return {t[1]: (t[0], t[4]) for t in response.topics}


async def check_access(settings: Settings, options: dict[str, Any]) -> list[str]:
    """What the principal lacks on its topics (empty when it has all, or the broker does not say)."""
    from aiokafka.client import AIOKafkaClient

    names = [name for name, _, _ in needed_operations(settings)]
    client = AIOKafkaClient(request_timeout_ms=10_000, **options)
    try:
        await client.bootstrap()
        answered = await topic_operations(client, names)
    finally:
        await client.close()
    if answered is None:
        log.debug("the broker does not answer Metadata v8: the topics' ACLs are not checked")
        return []
    lacking, unknown = missing_access(settings, answered)
    if unknown:
        log.debug("the broker says nothing of the operations allowed on %s: not checked", ", ".join(unknown))
    return lacking
