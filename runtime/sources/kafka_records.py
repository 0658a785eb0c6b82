"""Kafka records and events in Lambda's exact shape (esm-spec §2.4, §6.4).

- ``records`` maps ``"<topic>-<partition>"`` to arrays of records;
- ``key`` and ``value`` are base64 and absent when the record has none (a tombstone has no
  ``value``: Powertools had to learn that from real Lambda events);
- header values are arrays of *signed* byte numbers (Java ``byte[]``), not base64;
- ``timestamp`` is epoch milliseconds, ``timestampType`` ``CREATE_TIME`` or ``LOG_APPEND_TIME``;
- self-managed Kafka: ``eventSource: "SelfManagedKafka"`` and ``bootstrapServers``; MSK:
  ``eventSource: "aws:kafka"`` with ``eventSourceArn``.

Pure functions: unit-tested against the AWS examples without a broker.
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
from collections.abc import Hashable, Sequence
from typing import Any

# confluent_kafka's TIMESTAMP_* constants, without importing it here.
TIMESTAMP_TYPES = {1: "CREATE_TIME", 2: "LOG_APPEND_TIME"}
NO_TIMESTAMP_TYPE = "NO_TIMESTAMP_TYPE"

# Bytes of a record's JSON beyond its variable parts, rounded up: field names, quotes, commas,
# braces and the numbers' digits (offsets and timestamps of up to 19 digits).
_RECORD_OVERHEAD = 190


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def signed_bytes(value: bytes | None) -> list[int]:
    return [b - 256 if b > 127 else b for b in value] if value else []


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def kafka_record(
    topic: str,
    partition: int,
    offset: int,
    timestamp: tuple[int, int],
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> dict[str, Any]:
    """One consumed message as the record Lambda puts in the event."""
    ts_type, ts = timestamp
    rec: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": ts,
        "timestampType": TIMESTAMP_TYPES.get(ts_type, NO_TIMESTAMP_TYPE),
    }
    if key is not None:
        rec["key"] = _b64(key)
    if value is not None:
        rec["value"] = _b64(value)
    rec["headers"] = [{k: signed_bytes(v)} for k, v in headers] if headers else []
    return rec


def record_size(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> int:
    """An upper bound of the record's JSON size, without encoding it (hot path)."""
    size = _RECORD_OVERHEAD + len(topic)
    if key is not None:
        size += 4 * ((len(key) + 2) // 3) + 10
    if value is not None:
        size += 4 * ((len(value) + 2) // 3) + 10
    if not headers:
        return size
    for k, v in headers:
        # Header keys are the only free text here (topics are ASCII, key/value base64).
        key_len = (
            len(k)
            if k.isascii() and k.isprintable() and '"' not in k and "\\" not in k
            else len(json.dumps(k))
        )
        size += key_len + 8 + (5 * len(v) if v else 0)  # "-128," is 5 characters at most
    return size


def envelope_size(bootstrap_servers: str, event_source_arn: str | None) -> int:
    size = len('{"eventSource":"SelfManagedKafka","bootstrapServers":"","records":{"":[]}}')
    size += len(bootstrap_servers) + 300  # the "topic-partition" key(s)
    if event_source_arn:
        size += len(event_source_arn) + 20
    return size


def kafka_event(
    payloads: Sequence[dict[str, Any]],
    *,
    bootstrap_servers: str,
    event_source_arn: str | None,
    partition: str | None = None,
) -> dict[str, Any]:
    """The event for a batch (records keep their order within each partition).
    ``partition``: the caller knows every payload is of this one ``topic-N`` (the runtime's
    batches never span partitions), so they are not grouped record by record."""
    by_partition: dict[str, list[dict[str, Any]]]
    if partition is not None:
        by_partition = {partition: list(payloads)}
    else:
        by_partition = {}
        for p in payloads:
            by_partition.setdefault(partition_key(p["topic"], p["partition"]), []).append(p)
    if event_source_arn:
        return {
            "eventSource": "aws:kafka",
            "eventSourceArn": event_source_arn,
            "bootstrapServers": bootstrap_servers,
            "records": by_partition,
        }
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": bootstrap_servers,
        "records": by_partition,
    }


def kafka_identifier(value: Any) -> Hashable | None:
    """A Kafka batchItemFailures itemIdentifier: {"partition": "topic-N", "offset": n}."""
    if not isinstance(value, dict):
        return None
    part, offset = value.get("partition"), value.get("offset")
    if not isinstance(part, str) or not part:
        return None
    if isinstance(offset, bool) or not isinstance(offset, int):
        return None
    return (part, offset)


def _iso_ms(epoch_ms: int) -> str:
    """ISO-8601 with milliseconds, computed in integers (no float rounding); timestamps
    outside datetime's range (a producer writing microseconds) are clamped."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    try:
        t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    except OverflowError:
        t = (
            dt.datetime.max.replace(tzinfo=dt.UTC)
            if seconds > 0
            else dt.datetime.min.replace(tzinfo=dt.UTC)
        )
        millis = 999 if seconds > 0 else 0
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def kafka_batch_info(
    payloads: Sequence[dict[str, Any]],
    *,
    payload_size: int,
    bootstrap_servers: str,
    event_source_arn: str | None,
) -> dict[str, Any]:
    """The ``KafkaBatchInfo`` block of an on-failure record (esm-spec §6.4)."""
    info: dict[str, Any] = {"batchSize": len(payloads)}
    if event_source_arn:
        info["eventSourceArn"] = event_source_arn
    info["bootstrapServers"] = bootstrap_servers
    info["payloadSize"] = payload_size
    records_info: dict[str, dict[str, str]] = {}
    for p in payloads:
        k = partition_key(p["topic"], p["partition"])
        entry = records_info.get(k)
        if entry is None:
            records_info[k] = {
                "firstRecordOffset": str(p["offset"]),
                "lastRecordOffset": str(p["offset"]),
                "firstRecordTimestamp": _iso_ms(p["timestamp"]),
                "lastRecordTimestamp": _iso_ms(p["timestamp"]),
            }
        else:
            entry["lastRecordOffset"] = str(p["offset"])
            entry["lastRecordTimestamp"] = _iso_ms(p["timestamp"])
    info["recordsInfo"] = records_info
    return info
