"""Kafka helpers for tests: topics, producing, reading committed offsets (real broker)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, partitions: int, prefix: str = "t") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
        f.result(15)
    return name


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[Any],
    *,
    partition: int | None = None,
    partitions: int | None = None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    config: dict[str, Any] | None = None,
) -> int:
    """Produce JSON values (bytes/None as given); round-robin over ``partitions`` if given."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(config or {})})
    n = 0
    for i, v in enumerate(values):
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        elif partitions is not None:
            kwargs["partition"] = i % partitions
        if key is not None:
            kwargs["key"] = key
        if headers is not None:
            kwargs["headers"] = headers
        value = v if isinstance(v, bytes) or v is None else json.dumps(v).encode()
        p.produce(topic, value=value, **kwargs)
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return n


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, i) for i in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def kafka_mapping(
    bootstrap: str,
    topic: str,
    record_file: Any,
    *,
    handler: str = "tests.handlers.kafka.handler",
    timeout: int = 5,
    function: dict[str, Any] | None = None,
    **mapping: Any,
) -> dict[str, Any]:
    return {
        "functions": {
            "fn": {
                "Handler": handler,
                "Timeout": timeout,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
                **(function or {}),
            }
        },
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
                **mapping,
            }
        ],
    }


# Settings every Kafka test runtime needs against Tansu (see shared test-infra notes).
KAFKA_ENV = {
    "ESM_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "ESM_KAFKA_FETCH_WAIT_MAX_MS": "10",
    "ESM_RETRY_BACKOFF_SECONDS": "0.1",
}


def copy_group_offsets(bootstrap: str, topic: str, old_group: str, new_group: str) -> None:
    """Commit ``old_group``'s committed offsets of ``topic`` as ``new_group``'s."""
    from confluent_kafka import Consumer, TopicPartition

    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    wanted = [TopicPartition(topic, p) for p in partitions]
    old = Consumer({"bootstrap.servers": bootstrap, "group.id": old_group})
    try:
        committed = [p for p in old.committed(wanted, timeout=10) if p.offset >= 0]
    finally:
        old.close()
    new = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": new_group, "enable.auto.commit": False}
    )
    try:
        if committed:
            new.commit(offsets=committed, asynchronous=False)
    finally:
        new.close()
