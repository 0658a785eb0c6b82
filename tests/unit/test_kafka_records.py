"""Kafka records, events, item identifiers and KafkaBatchInfo (runtime.sources.kafka_records).

The conformance part rebuilds the AWS example events (tests/conformance/kafka_events.json,
copied from the esm-spec examples) from the raw message parts a consumer returns, and compares
the JSON text, so key names, key order and value types all count (esm-spec §2.4, §6.4).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runtime.invoke.response import OutcomeKind, parse_batch_response
from runtime.sources.kafka_records import (
    kafka_batch_info,
    kafka_event,
    kafka_identifier,
    kafka_record,
    partition_key,
    record_size,
    signed_bytes,
)

FIXTURE = Path(__file__).resolve().parent.parent / "conformance" / "kafka_events.json"
EXAMPLES: dict[str, Any] = {
    name: entry["value"] for name, entry in json.loads(FIXTURE.read_text())["examples"].items()
}
SELF_MANAGED = EXAMPLES["selfmanaged_kafka_event"]
MSK = EXAMPLES["msk_event"]
ONFAILURE = EXAMPLES["kafka_onfailure_record_sqs_sns"]
BATCH_RESPONSE = EXAMPLES["kafka_batch_response"]

RECORD_KEYS = [
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestampType",
    "key",
    "value",
    "headers",
]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BOOTSTRAP = "b-1.example:9092,b-2.example:9092"
MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/demo/751d2973-a626-431c-9d4e-d7975eb44dd7-2"


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _epoch_ms(iso: str) -> int:
    """``2019-11-14T00:38:04.835Z`` -> epoch milliseconds, with integer arithmetic."""
    t = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (t - EPOCH) // dt.timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    """The reference formatting of epoch milliseconds, with integer arithmetic."""
    t = EPOCH + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _raw_parts(rec: dict[str, Any]) -> dict[str, Any]:
    """What confluent_kafka's Message would give for an AWS example record."""
    ts_type = {"CREATE_TIME": TIMESTAMP_CREATE_TIME, "LOG_APPEND_TIME": TIMESTAMP_LOG_APPEND_TIME}
    headers = []
    for h in rec["headers"]:
        ((name, numbers),) = h.items()
        headers.append((name, struct.pack(f"{len(numbers)}b", *numbers)))
    return {
        "topic": rec["topic"],
        "partition": rec["partition"],
        "offset": rec["offset"],
        "timestamp": (ts_type[rec["timestampType"]], rec["timestamp"]),
        "key": base64.b64decode(rec["key"]) if "key" in rec else None,
        "value": base64.b64decode(rec["value"]) if "value" in rec else None,
        "headers": headers,
    }


def _rebuild(example: dict[str, Any]) -> dict[str, Any]:
    payloads = [
        kafka_record(**_raw_parts(rec)) for recs in example["records"].values() for rec in recs
    ]
    return kafka_event(
        payloads,
        bootstrap_servers=example["bootstrapServers"],
        event_source_arn=example.get("eventSourceArn"),
    )


# ------------------------------------------------------------------ AWS examples


def test_msk_example_is_rebuilt_exactly() -> None:
    assert _compact(_rebuild(MSK)) == _compact(MSK)


def test_self_managed_example_is_rebuilt_exactly_up_to_the_non_canonical_sample_key() -> None:
    rebuilt = _rebuild(SELF_MANAGED)
    got = rebuilt["records"]["mytopic-0"][0]
    want = SELF_MANAGED["records"]["mytopic-0"][0]
    # AWS's sample key "abcDEFghiJKLmnoPQRstuVWXyz1234==" is a placeholder with non-zero
    # padding bits; it decodes to the same bytes as the canonical encoding we print.
    assert want["key"] == "abcDEFghiJKLmnoPQRstuVWXyz1234=="
    assert got["key"] == "abcDEFghiJKLmnoPQRstuVWXyz123w=="
    assert base64.b64decode(got["key"]) == base64.b64decode(want["key"])
    got["key"] = want["key"]
    assert _compact(rebuilt) == _compact(SELF_MANAGED)


def test_example_record_fields_decode_as_documented() -> None:
    rec = SELF_MANAGED["records"]["mytopic-0"][0]
    built = kafka_record(**_raw_parts(rec))
    assert base64.b64decode(built["value"]) == b"Hello, this is a test."
    assert built["headers"] == [{"headerKey": list(b"headerValue")}]
    assert list(built) == RECORD_KEYS
    assert list(SELF_MANAGED) == ["eventSource", "bootstrapServers", "records"]
    assert list(MSK) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]


def test_example_batch_response_names_one_record() -> None:
    batch_ids = {("mytopic-0", 99), ("mytopic-0", 100), ("mytopic-0", 101)}
    outcome = parse_batch_response(BATCH_RESPONSE, batch_ids, kafka_identifier)
    assert outcome.kind is OutcomeKind.PARTIAL
    assert outcome.failed_ids == frozenset({("mytopic-0", 100)})
    # An identifier that names no record of the batch fails the whole batch (§2.4).
    other = parse_batch_response(BATCH_RESPONSE, {("mytopic-0", 99)}, kafka_identifier)
    assert other.kind is OutcomeKind.FAILURE


# ------------------------------------------------------------------ kafka_record


def _rec(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "topic": "orders",
        "partition": 3,
        "offset": 41,
        "timestamp": (TIMESTAMP_CREATE_TIME, 1595035749700),
        "key": b"k",
        "value": b"v",
        "headers": [],
    }
    args.update(kw)
    return kafka_record(**args)


def test_record_key_order_and_values() -> None:
    rec = _rec(key=b"\x00\xffkey", value=b"Hello", headers=[("h", b"x")])
    assert list(rec) == RECORD_KEYS
    assert rec == {
        "topic": "orders",
        "partition": 3,
        "offset": 41,
        "timestamp": 1595035749700,
        "timestampType": "CREATE_TIME",
        "key": "AP9rZXk=",
        "value": "SGVsbG8=",
        "headers": [{"h": [120]}],
    }


def test_key_absent_when_none_and_empty_key_kept() -> None:
    rec = _rec(key=None)
    assert "key" not in rec
    assert list(rec) == [k for k in RECORD_KEYS if k != "key"]
    assert _rec(key=b"")["key"] == ""


def test_tombstone_has_no_value() -> None:
    rec = _rec(value=None)
    assert "value" not in rec
    assert list(rec) == [k for k in RECORD_KEYS if k != "value"]
    assert rec["key"] == "aw=="
    assert _rec(value=b"")["value"] == ""


def test_headers_are_signed_bytes() -> None:
    rec = _rec(headers=[("name", "ë".encode())])
    assert rec["headers"] == [{"name": [-61, -85]}]
    every = bytes(range(256))
    assert signed_bytes(every) == list(struct.unpack("256b", every))
    assert signed_bytes(b"\x7f\x80\xff\x00") == [127, -128, -1, 0]


def test_header_order_duplicates_and_empty_values() -> None:
    rec = _rec(headers=[("a", b""), ("b", b"\x01"), ("a", b"\xfe"), ("n", None)])
    assert rec["headers"] == [{"a": []}, {"b": [1]}, {"a": [-2]}, {"n": []}]
    assert _rec(headers=None)["headers"] == []
    assert _rec(headers=[])["headers"] == []


@pytest.mark.parametrize(
    ("ts_type", "name"),
    [
        (TIMESTAMP_CREATE_TIME, "CREATE_TIME"),
        (TIMESTAMP_LOG_APPEND_TIME, "LOG_APPEND_TIME"),
        (TIMESTAMP_NOT_AVAILABLE, "NO_TIMESTAMP_TYPE"),
        (7, "NO_TIMESTAMP_TYPE"),
    ],
)
def test_timestamp_type(ts_type: int, name: str) -> None:
    rec = _rec(timestamp=(ts_type, 1234))
    assert rec["timestampType"] == name
    assert rec["timestamp"] == 1234


# ------------------------------------------------------------------ kafka_event


def _payload(topic: str, partition: int, offset: int, ts: int = 1_600_000_000_000) -> dict:
    return _rec(topic=topic, partition=partition, offset=offset, timestamp=(1, ts))


def test_self_managed_event() -> None:
    payloads = [_payload("my-topic", 10, 5), _payload("my-topic", 10, 6)]
    event = kafka_event(payloads, bootstrap_servers=BOOTSTRAP, event_source_arn=None)
    assert list(event) == ["eventSource", "bootstrapServers", "records"]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == BOOTSTRAP
    assert list(event["records"]) == ["my-topic-10"]
    assert [r["offset"] for r in event["records"]["my-topic-10"]] == [5, 6]
    assert all(type(r["partition"]) is int for r in event["records"]["my-topic-10"])
    assert event["records"]["my-topic-10"][0] is payloads[0]


def test_msk_event() -> None:
    event = kafka_event(
        [_payload("t", 0, 1)], bootstrap_servers=BOOTSTRAP, event_source_arn=MSK_ARN
    )
    assert list(event) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"] == MSK_ARN
    assert event["bootstrapServers"] == BOOTSTRAP
    assert list(event["records"]) == ["t-0"]


def test_event_keeps_order_within_partitions() -> None:
    order = [("t", 1, 7), ("t", 0, 3), ("t", 1, 8), ("u", 0, 1), ("t", 0, 4), ("t", 1, 9)]
    event = kafka_event(
        [_payload(*o) for o in order], bootstrap_servers=BOOTSTRAP, event_source_arn=None
    )
    assert list(event["records"]) == ["t-1", "t-0", "u-0"]
    assert [r["offset"] for r in event["records"]["t-1"]] == [7, 8, 9]
    assert [r["offset"] for r in event["records"]["t-0"]] == [3, 4]
    assert [r["offset"] for r in event["records"]["u-0"]] == [1]
    assert partition_key("a-b", 12) == "a-b-12"


# ------------------------------------------------------------------ record_size

TOPIC_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
# Header keys without characters JSON escapes (see the xfail below for those).
SAFE_HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')


@settings(max_examples=300, deadline=None)
@given(
    topic=st.text(TOPIC_CHARS, min_size=1, max_size=249),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    ts=st.tuples(st.integers(0, 2), st.integers(-1, 2**63 - 1)),
    key=st.none() | st.binary(max_size=300),
    value=st.none() | st.binary(max_size=2000),
    headers=st.none()
    | st.lists(
        st.tuples(st.text(SAFE_HEADER_CHARS, max_size=40), st.none() | st.binary(max_size=100)),
        max_size=8,
    ),
)
# The longest fixed part: every number at its most digits, the longest timestampType.
@example(
    topic="t" * 249,
    partition=2**31 - 1,
    offset=2**63 - 1,
    ts=(TIMESTAMP_NOT_AVAILABLE, 2**63 - 1),
    key=None,
    value=None,
    headers=None,
)
@example(
    topic="t",
    partition=2**31 - 1,
    offset=2**63 - 1,
    ts=(TIMESTAMP_NOT_AVAILABLE, 2**63 - 1),
    key=b"",
    value=b"",
    headers=[("", b"\x80" * 50), ("", b"")],
)
def test_record_size_is_an_upper_bound(
    topic: str,
    partition: int,
    offset: int,
    ts: tuple[int, int],
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]] | None,
) -> None:
    rec = kafka_record(topic, partition, offset, ts, key, value, headers)
    assert len(_compact(rec)) <= record_size(topic, key, value, headers)


def test_record_size_bounds_non_ascii_header_keys() -> None:
    headers = [("ë" * 50, None)]
    rec = kafka_record("t", 2**31 - 1, 2**63 - 1, (1, 2**63 - 1), None, None, headers)
    assert len(_compact(rec)) == 447
    assert len(_compact(rec)) <= record_size("t", None, None, headers)


# ------------------------------------------------------------------ kafka_identifier


def test_identifier_accepted() -> None:
    assert kafka_identifier({"partition": "t-0", "offset": 5}) == ("t-0", 5)
    assert kafka_identifier({"partition": "my-topic-12", "offset": 0}) == ("my-topic-12", 0)
    assert kafka_identifier({"offset": 2**63 - 1, "partition": "t-0"}) == ("t-0", 2**63 - 1)


@pytest.mark.parametrize(
    "value",
    [
        {"offset": 5},
        {"partition": "t-0"},
        {},
        {"partition": 0, "offset": 5},
        {"partition": None, "offset": 5},
        {"partition": ["t-0"], "offset": 5},
        {"partition": "", "offset": 5},
        {"partition": "t-0", "offset": True},
        {"partition": "t-0", "offset": False},
        {"partition": "t-0", "offset": "5"},
        {"partition": "t-0", "offset": 5.0},
        {"partition": "t-0", "offset": None},
        "t-0",
        ["t-0", 5],
        ("t-0", 5),
        5,
        None,
    ],
)
def test_identifier_rejected(value: Any) -> None:
    assert kafka_identifier(value) is None


# ------------------------------------------------------------------ kafka_batch_info


def _onfailure_payloads(topic: str) -> list[dict[str, Any]]:
    info = ONFAILURE["KafkaBatchInfo"]["recordsInfo"]["Topic-0"]
    first_ts = _epoch_ms(info["firstRecordTimestamp"])
    last_ts = _epoch_ms(info["lastRecordTimestamp"])
    first, last = int(info["firstRecordOffset"]), int(info["lastRecordOffset"])
    return [
        _payload(topic, 0, first, first_ts),
        _payload(topic, 0, first + 1, first_ts + 1),
        _payload(topic, 0, last, last_ts),
    ]


def test_batch_info_msk_matches_the_aws_example_shape() -> None:
    aws = ONFAILURE["KafkaBatchInfo"]
    info = kafka_batch_info(
        _onfailure_payloads("Topic"),
        payload_size=aws["payloadSize"],
        bootstrap_servers=aws["bootstrapServers"],
        event_source_arn=aws["eventSourceArn"],
    )
    assert (
        list(info)
        == list(aws)
        == [
            "batchSize",
            "eventSourceArn",
            "bootstrapServers",
            "payloadSize",
            "recordsInfo",
        ]
    )
    aws_entry = aws["recordsInfo"]["Topic-0"]
    assert list(info["recordsInfo"]) == ["Topic-0"]
    assert list(info["recordsInfo"]["Topic-0"]) == list(aws_entry)
    assert info["batchSize"] == 3
    expected = dict(aws, batchSize=3)
    assert _compact(info) == _compact(expected)


def test_batch_info_self_managed_has_no_arn() -> None:
    info = kafka_batch_info(
        [_payload("t", 0, 7, 0)],
        payload_size=321,
        bootstrap_servers=BOOTSTRAP,
        event_source_arn=None,
    )
    assert info == {
        "batchSize": 1,
        "bootstrapServers": BOOTSTRAP,
        "payloadSize": 321,
        "recordsInfo": {
            "t-0": {
                "firstRecordOffset": "7",
                "lastRecordOffset": "7",
                "firstRecordTimestamp": "1970-01-01T00:00:00.000Z",
                "lastRecordTimestamp": "1970-01-01T00:00:00.000Z",
            }
        },
    }
    assert list(info) == ["batchSize", "bootstrapServers", "payloadSize", "recordsInfo"]


def test_batch_info_several_partitions() -> None:
    payloads = [
        _payload("t", 1, 10, 1_573_691_884_835),
        _payload("t", 0, 4, 1_573_691_884_000),
        _payload("t", 1, 11, 1_573_691_885_580),
        _payload("t", 0, 5, 1_573_691_884_001),
        _payload("t", 1, 13, 1_573_691_886_009),
    ]
    info = kafka_batch_info(
        payloads, payload_size=1, bootstrap_servers=BOOTSTRAP, event_source_arn=None
    )
    assert info["batchSize"] == 5
    assert info["recordsInfo"] == {
        "t-1": {
            "firstRecordOffset": "10",
            "lastRecordOffset": "13",
            "firstRecordTimestamp": "2019-11-14T00:38:04.835Z",
            "lastRecordTimestamp": "2019-11-14T00:38:06.009Z",
        },
        "t-0": {
            "firstRecordOffset": "4",
            "lastRecordOffset": "5",
            "firstRecordTimestamp": "2019-11-14T00:38:04.000Z",
            "lastRecordTimestamp": "2019-11-14T00:38:04.001Z",
        },
    }
    assert list(info["recordsInfo"]) == ["t-1", "t-0"]


@settings(max_examples=300, deadline=None)
@given(ms=st.integers(0, _epoch_ms("2200-01-01T00:00:00.000Z")))
def test_batch_info_timestamps_are_iso_milliseconds(ms: int) -> None:
    info = kafka_batch_info(
        [_payload("t", 0, 1, ms)], payload_size=1, bootstrap_servers="b:1", event_source_arn=None
    )
    entry = info["recordsInfo"]["t-0"]
    assert entry["firstRecordTimestamp"] == entry["lastRecordTimestamp"] == _iso(ms)


def test_batch_info_timestamp_exact_far_in_the_future() -> None:
    info = kafka_batch_info(
        [_payload("t", 0, 1, 8590946979873)],
        payload_size=1,
        bootstrap_servers="b:1",
        event_source_arn=None,
    )
    assert info["recordsInfo"]["t-0"]["firstRecordTimestamp"] == "2242-03-28T06:09:39.873Z"


def test_batch_info_does_not_raise_for_a_microsecond_timestamp() -> None:
    info = kafka_batch_info(
        [_payload("t", 0, 1, 1_700_000_000_000_000)],
        payload_size=1,
        bootstrap_servers="b:1",
        event_source_arn=None,
    )
    assert info["recordsInfo"]["t-0"]["firstRecordTimestamp"].endswith("Z")


def test_an_event_of_one_known_partition_equals_the_grouped_one() -> None:
    """The runtime's batches never span partitions; naming the partition skips the grouping
    per record and must give the very same event."""
    payloads = [_payload("my-topic", 3, o) for o in (5, 6, 9)]
    grouped = kafka_event(payloads, bootstrap_servers=BOOTSTRAP, event_source_arn=MSK_ARN)
    named = kafka_event(
        payloads, bootstrap_servers=BOOTSTRAP, event_source_arn=MSK_ARN, partition="my-topic-3"
    )
    assert named == grouped and list(named) == list(grouped)


_HEADERS = st.none() | st.lists(
    st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=300),
    headers=_HEADERS,
    ts_type=st.sampled_from([TIMESTAMP_NOT_AVAILABLE, TIMESTAMP_CREATE_TIME, 2]),
    ts=st.integers(min_value=-1, max_value=2**45),
    offset=st.integers(min_value=0, max_value=2**40),
)
def test_the_consumer_builds_the_same_records_as_kafka_record(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]] | None,
    ts_type: int,
    ts: int,
    offset: int,
) -> None:
    """KafkaSource._records builds the common message (a value, no key, no headers) inline:
    every shape must come out as kafka_record and record_size build it, with the record's
    lane, ack, timestamp and ownership token."""
    from confluent_kafka import Message

    from runtime.sources.kafka import KafkaSource

    source = KafkaSource.__new__(KafkaSource)
    source.topic = "orders"
    source._epochs = {("orders", 3): 7, ("orders", 4): 8}
    msg = Message(
        topic="orders",
        partition=3,
        offset=offset,
        key=key,
        value=value,
        headers=headers,
        timestamp=(ts_type, ts),
    )
    stray = Message(topic="orders", partition=5, offset=1, value=b"x", timestamp=(1, 1))
    [record] = source._records([msg, stray])  # partition 5 is not assigned: skipped
    assert record.payload == kafka_record("orders", 3, offset, (ts_type, ts), key, value, headers)
    assert json.dumps(record.payload) == json.dumps(
        kafka_record("orders", 3, offset, (ts_type, ts), key, value, headers)
    )  # the same key order
    assert record.size == record_size("orders", key, value, headers)
    assert (record.item_id, record.ack, record.lane, record.unit, record.token) == (
        ("orders-3", offset), offset, "orders-3", "orders-3", 7
    )  # fmt: skip
    assert record.timestamp_ms == (ts if ts_type != TIMESTAMP_NOT_AVAILABLE else 0)
