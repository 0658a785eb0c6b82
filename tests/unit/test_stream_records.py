"""Kinesis and DynamoDB Streams records, partial batch responses and on-failure batch infos,
against the AWS recordings (runtime.sources.stream_records; esm-spec §2.2, §2.3, §2.5, §6.2,
§6.3).

tests/conformance/stream_records.json holds the AWS-recorded cases (copied from localstack's
parity snapshots; each names its snapshot key) and the AWS documentation examples. Recorded
values are placeholders (``<sequence-number:1>``): equal placeholders are equal values, key
order is AWS's. Inputs are made the way the runtime gets them: a GetRecords response on the
wire, parsed by botocore (``Data`` and ``B`` values become bytes, timestamps datetimes).

Provenance of the partial batch response scenarios (see the "scenarios" section below for
which facts each test reads from the recording and which it infers).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import botocore.session
import pytest
from botocore.parsers import create_parser
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.destinations.record import (
    DDB_STREAM_BATCH_INFO,
    KINESIS_BATCH_INFO,
    RETRY_ATTEMPTS_EXHAUSTED,
    invocation_record,
    iso_millis,
    iso_seconds,
)
from runtime.invoke.invoker import FunctionError, InvocationResult
from runtime.invoke.response import BatchOutcome, OutcomeKind, parse_batch_response
from runtime.pipeline.execution import event_size, outcome_of, split_by_outcome
from runtime.pipeline.records import Record
from runtime.sources.shard_apis import DynamoDbStreamsApi, KinesisApi
from runtime.sources.shards import ShardSource
from runtime.sources.stream_records import (
    StreamShape,
    dynamodb_payload,
    dynamodb_shape,
    kinesis_payload,
    kinesis_shape,
    stream_identifier,
)

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
FIXTURE: dict[str, Any] = json.loads((CONFORMANCE / "stream_records.json").read_text())
EVENTS: dict[str, Any] = FIXTURE["events"]
SCENARIOS: dict[str, Any] = FIXTURE["scenarios"]
PARTIAL: dict[str, Any] = FIXTURE["partial_batches"]
ONFAILURE: dict[str, Any] = json.loads((CONFORMANCE / "onfailure_records.json").read_text())[
    "records"
]

# Key order of the records AWS delivers (every recorded event in the fixture, checked below).
KINESIS_RECORD_KEYS = [
    "kinesis",
    "eventSource",
    "eventVersion",
    "eventID",
    "eventName",
    "invokeIdentityArn",
    "awsRegion",
    "eventSourceARN",
]
KINESIS_DATA_KEYS = [
    "kinesisSchemaVersion",
    "partitionKey",
    "sequenceNumber",
    "data",
    "approximateArrivalTimestamp",
]
DDB_RECORD_KEYS = [
    "eventID",
    "eventName",
    "eventVersion",
    "eventSource",
    "awsRegion",
    "dynamodb",
    "eventSourceARN",
]
DDB_STREAM_RECORD_KEYS = [  # those present, in this order
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
]
BATCH_INFO_KEYS = [
    "shardId",
    "startSequenceNumber",
    "endSequenceNumber",
    "approximateArrivalOfFirstRecord",
    "approximateArrivalOfLastRecord",
    "batchSize",
    "streamArn",
]

KINESIS_EVENTS = ["kinesis_single", "kinesis_five", "kinesis_s3_payload", "kinesis_doc"]
DDB_EVENTS = ["ddb_insert_binary", "ddb_modify_old_and_new", "ddb_s3_payload"]

ARRIVAL_PLACEHOLDER = "<approximate-arrival-timestamp>"
CREATION_PLACEHOLDER = "<approximate-creation-datetime>"
# What the recorder's <timestamp:...> placeholders print: one instant for every timestamp.
RECORDED_INSTANT = dt.datetime(2022, 7, 13, 13, 48, 1, tzinfo=dt.UTC)

REGION = "us-east-2"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
KINESIS_ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
DDB_ARN = "arn:aws:dynamodb:us-east-2:123456789012:table/orders/stream/2019-11-14T00:04:06.388"
SHARD = "shardId-000000000006"


# --------------------------------------------------------------------------- helpers


@functools.cache
def _get_records_parser(service: str) -> tuple[Any, Any]:
    model = botocore.session.get_session().get_service_model(service)
    return create_parser(model.metadata["protocol"]), model.operation_model(
        "GetRecords"
    ).output_shape


def botocore_records(service: str, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A GetRecords response body holding ``wire``, parsed as the runtime's client parses it."""
    parser, shape = _get_records_parser(service)
    body = json.dumps({"Records": wire}).encode()
    parsed = parser.parse({"status_code": 200, "headers": {}, "body": body}, shape)
    return cast(list[dict[str, Any]], parsed["Records"])


def reversed_keys(value: Any) -> Any:
    """``value`` with every object's keys in reverse order (the output must not follow input
    order); attribute maps of DynamoDB images are left alone, their order is the item's."""
    if isinstance(value, dict):
        images = ("Keys", "NewImage", "OldImage")
        return {k: v if k in images else reversed_keys(v) for k, v in reversed(value.items())}
    return value


def timestamp_of(text: str) -> tuple[dt.datetime, str]:
    """The instant a recorded ``<timestamp:...>`` stands for, and the text AWS printed."""
    m = re.fullmatch(r"<timestamp:(.+)>", text)
    printed = m.group(1) if m else text
    return dt.datetime.fromisoformat(printed), printed


def epoch_ms(when: dt.datetime) -> float:
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(milliseconds=1)


def position(seq: str) -> int:
    """The int position of a sequence number; a placeholder's index stands in for its value
    (the recorded tests wrote their records in index order)."""
    m = re.fullmatch(r"<[a-z-]+:(\d+)>", seq)
    return int(m.group(1)) if m else int(seq)


def stream_record(
    payload: dict[str, Any], seq: str, *, shard: str, timestamp_ms: float, lane: str | None = None
) -> Record:
    """A Record as the shard source makes it (runtime.sources.shards)."""
    return Record(
        payload=payload,
        size=1,
        item_id=seq,
        ack=position(seq),
        lane=shard if lane is None else lane,
        timestamp_ms=timestamp_ms,
        unit=shard,
        token=1,
    )


def shard_source_record(api: KinesisApi | DynamoDbStreamsApi, raw: dict[str, Any]) -> Record:
    """What the shard source makes of a raw record with the api's own helpers."""
    payload = api.payload(raw, SHARD)
    return stream_record(
        payload, api.sequence(raw), shard=SHARD, timestamp_ms=api.arrival_ms(raw, payload)
    )


def kinesis_api(stream_arn: str = KINESIS_ARN, region: str = REGION) -> KinesisApi:
    return KinesisApi(
        cast(Any, None),
        stream_arn=stream_arn,
        stream_name=stream_arn.rsplit("/", 1)[1],
        region=None,
        aws_region=region,
        invoke_identity_arn=ROLE,
    )


def kinesis_wire(record: dict[str, Any], arrival: float) -> dict[str, Any]:
    """The Kinesis GetRecords record Lambda turned into ``record`` (a recorded Lambda record)."""
    k = record["kinesis"]
    return {
        "SequenceNumber": k["sequenceNumber"],
        "ApproximateArrivalTimestamp": arrival,
        "Data": k["data"],
        "PartitionKey": k["partitionKey"],
    }


def ddb_wire(record: dict[str, Any], created: float) -> dict[str, Any]:
    """The DynamoDB Streams GetRecords record Lambda turned into ``record``."""
    wire = {k: v for k, v in record.items() if k != "eventSourceARN"}
    ddb = dict(wire["dynamodb"])
    if "ApproximateCreationDateTime" in ddb:
        ddb["ApproximateCreationDateTime"] = created
    wire["dynamodb"] = ddb
    return wire


def shard_of(record: dict[str, Any]) -> str:
    seq = record["kinesis"]["sequenceNumber"]
    event_id: str = record["eventID"]
    assert event_id.endswith(":" + seq)
    return event_id[: -len(seq) - 1]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# ---------------------------------------------------------------------- fixture itself


def test_fixture_names_its_sources() -> None:
    assert set(KINESIS_EVENTS + DDB_EVENTS + ["ddb_doc"]) == set(EVENTS)
    for entry in EVENTS.values():
        assert entry["source"]["file"]
        assert "test_id" in entry["source"] or "origin" in entry["source"]
    for case in [*SCENARIOS.values(), *PARTIAL.values()]:
        assert case["source"]["file"].endswith(".snapshot.json")
        assert "::" in case["source"]["test_id"]
    # every recorded scenario: 6 success and 6 failure ids for Kinesis, DynamoDB has no
    # empty_string_success
    assert sum(s["service"] == "kinesis" for s in SCENARIOS.values()) == 12
    assert sum(s["service"] == "dynamodb" for s in SCENARIOS.values()) == 11


def _recorded_records() -> list[tuple[str, dict[str, Any]]]:
    out = [
        (name, r) for name in KINESIS_EVENTS + DDB_EVENTS for r in EVENTS[name]["event"]["Records"]
    ]
    out += [(name, r) for name, s in SCENARIOS.items() for r in s["event"]["Records"]]
    return out


def test_recorded_key_orders_are_the_constants() -> None:
    """The key-order constants above are AWS's: every recorded record has exactly them."""
    for name, record in _recorded_records():
        if "kinesis" in record:
            assert list(record) == KINESIS_RECORD_KEYS, name
            assert list(record["kinesis"]) == KINESIS_DATA_KEYS, name
        else:
            assert list(record) == DDB_RECORD_KEYS, name
            keys = list(record["dynamodb"])
            assert keys == [k for k in DDB_STREAM_RECORD_KEYS if k in keys], name


# --------------------------------------------------------------------- Kinesis records


@pytest.mark.parametrize("name", KINESIS_EVENTS)
def test_kinesis_record_is_the_recorded_record_exactly(name: str) -> None:
    for i, recorded in enumerate(EVENTS[name]["event"]["Records"]):
        stamp = recorded["kinesis"]["approximateArrivalTimestamp"]
        arrival = round(1657720081.123 + i, 3) if stamp == ARRIVAL_PLACEHOLDER else stamp
        [raw] = botocore_records("kinesis", [kinesis_wire(recorded, arrival)])
        assert isinstance(raw["Data"], bytes)
        assert isinstance(raw["ApproximateArrivalTimestamp"], dt.datetime)
        for given_raw in (raw, reversed_keys(raw)):
            built = kinesis_payload(
                given_raw,
                shard_id=shard_of(recorded),
                region=recorded["awsRegion"],
                stream_arn=recorded["eventSourceARN"],
                invoke_identity_arn=recorded["invokeIdentityArn"],
            )
            assert list(built) == KINESIS_RECORD_KEYS
            assert list(built["kinesis"]) == KINESIS_DATA_KEYS
            assert built["kinesis"]["approximateArrivalTimestamp"] == arrival
            built["kinesis"]["approximateArrivalTimestamp"] = stamp
            assert json.dumps(built) == json.dumps(recorded)


def test_kinesis_api_builds_the_same_record() -> None:
    """KinesisApi.payload (what the shard source calls) wires its settings in the right places."""
    [recorded, _] = EVENTS["kinesis_doc"]["event"]["Records"]
    [raw] = botocore_records("kinesis", [kinesis_wire(recorded, 1545084650.987)])
    built = kinesis_api().payload(raw, SHARD)
    assert json.dumps(built) == json.dumps(recorded)


@pytest.mark.parametrize(
    ("when", "number"),
    [
        (dt.datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=dt.UTC), 1545084650.987),
        (dt.datetime(2022, 7, 13, 13, 48, 1, tzinfo=dt.UTC), 1657720081.0),
        (dt.datetime(2022, 7, 13, 13, 48, 1, 999000, tzinfo=dt.UTC), 1657720081.999),
        (dt.datetime(2022, 7, 13, 13, 48, 1, 1000, tzinfo=dt.UTC), 1657720081.001),
        # botocore hands timestamps over in the local zone
        (
            dt.datetime(2022, 7, 13, 15, 48, 1, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            1657720081.25,
        ),
    ],
)
def test_kinesis_arrival_timestamp_is_epoch_seconds_with_milliseconds(
    when: dt.datetime, number: float
) -> None:
    raw = {
        "SequenceNumber": "1",
        "ApproximateArrivalTimestamp": when,
        "Data": b"",
        "PartitionKey": "p",
    }
    stamp = kinesis_payload(
        raw, shard_id=SHARD, region=REGION, stream_arn=KINESIS_ARN, invoke_identity_arn=ROLE
    )["kinesis"]["approximateArrivalTimestamp"]
    assert type(stamp) is float and stamp == number
    # a number in the JSON, ten digits before the point (LocalStack checks the same on AWS)
    assert re.fullmatch(r"\d{10}\.\d{1,3}", json.dumps(stamp))


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\xff\xfe\x00binary", "héllo".encode(), b"x" * 1000]
)
def test_kinesis_data_is_base64_of_the_bytes(data: bytes) -> None:
    wire = {
        "SequenceNumber": "1",
        "ApproximateArrivalTimestamp": 1.0,
        "PartitionKey": "p",
        "Data": base64.b64encode(data).decode(),
    }
    [raw] = botocore_records("kinesis", [wire])
    assert raw.get("Data", b"") == data
    built = kinesis_payload(
        raw, shard_id=SHARD, region=REGION, stream_arn=KINESIS_ARN, invoke_identity_arn=ROLE
    )
    assert built["kinesis"]["data"] == base64.b64encode(data).decode()


# ---------------------------------------------------------------- Kinesis record sizes
#
# size() is "bytes this record adds to the JSON event", compared with the event as the runtime
# measures it (json.dumps with compact separators): the record's JSON plus the comma that
# separates it from the next one (the SQS and DynamoDB sources count that comma too).

SEQ = "49590338271490256608559692538361571095921575989136588898"
AWKWARD_KEYS = [
    "",
    "1",
    '"',
    "\\",
    'a"b\\c',
    "\n",
    "\t\r\x08\x0c",
    "\x00" * 256,  # 6 bytes each in JSON
    "\x1f\x7f",
    "</script>",
    "é" * 256,  # 6 bytes each
    "日本語のキー",
    "😀" * 256,  # a surrogate pair: 12 bytes each
    "k" * 256,
    'mixed \x01 é 😀 " \\',
]
MIB = 1024 * 1024
AWKWARD_DATA = [b"", b"x", b"xy", b"xyz", b"\x00\xff" * 7, b"d" * MIB, b"\xfe" * (MIB - 1)]
LATEST_TEN_DIGITS = dt.datetime(2286, 11, 20, 17, 46, 39, 999000, tzinfo=dt.UTC)  # 9999999999.999


def assert_size_bound(api: KinesisApi, raw: dict[str, Any], shard: str = SHARD) -> None:
    payload = api.payload(raw, shard)
    exact = len(compact(payload))
    size = api.size(raw, payload)
    assert size >= exact + 1, (size, exact)
    # and still an estimate, not a blanket allowance
    assert size - exact < 64 + len(KINESIS_ARN), (size, exact)


@pytest.mark.parametrize("key", AWKWARD_KEYS, ids=lambda k: repr(k)[:24])
def test_kinesis_record_size_bounds_awkward_partition_keys(key: str) -> None:
    raw = {
        "SequenceNumber": SEQ,
        "PartitionKey": key,
        "Data": b"hello",
        "ApproximateArrivalTimestamp": LATEST_TEN_DIGITS,
    }
    assert_size_bound(kinesis_api(), raw)


@pytest.mark.parametrize("data", AWKWARD_DATA, ids=lambda d: f"{len(d)}B")
def test_kinesis_record_size_bounds_data_of_any_length(data: bytes) -> None:
    raw = {
        "SequenceNumber": SEQ,
        "PartitionKey": "😀\x00",
        "Data": data,
        "ApproximateArrivalTimestamp": LATEST_TEN_DIGITS,
    }
    assert_size_bound(kinesis_api(), raw)


def test_kinesis_record_size_of_a_record_without_data_or_timestamp() -> None:
    assert_size_bound(kinesis_api(), {"SequenceNumber": "0", "PartitionKey": ""})


@pytest.mark.parametrize(
    "name",
    [
        "s",
        "ab",
        "abc",
        "abcd",
        "abcde",
    ],
)
def test_kinesis_record_size_bounds_the_shortest_stream_names(name: str) -> None:
    arn = f"arn:aws:kinesis:us-east-1:123456789012:stream/{name}"
    raw = {
        "SequenceNumber": SEQ,
        "PartitionKey": "",
        "Data": b"",
        "ApproximateArrivalTimestamp": LATEST_TEN_DIGITS,
    }
    api = kinesis_api(arn, "us-east-1")
    payload = api.payload(raw, "shardId-000000000000")
    assert api.size(raw, payload) >= len(compact(payload)) + 1


_kinesis_raw = st.fixed_dictionaries(
    {
        "SequenceNumber": st.from_regex(r"[0-9]{1,56}", fullmatch=True),
        "PartitionKey": st.text(max_size=256),
        "Data": st.binary(max_size=3000),
        "ApproximateArrivalTimestamp": st.datetimes(
            min_value=dt.datetime(2000, 1, 1),
            max_value=dt.datetime(2286, 11, 20),  # epoch seconds of ten digits
            timezones=st.just(dt.UTC),
        ).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(_kinesis_raw, min_size=1, max_size=12),
    # stream names of 4+ characters: shorter ones are the xfail case above
    name=st.from_regex(r"[a-zA-Z0-9_.-]{4,128}", fullmatch=True),
    region=st.sampled_from(["us-east-1", "ap-southeast-2", "il-central-1"]),
    shard=st.integers(0, 10**12 - 1),
)
def test_kinesis_batch_size_bounds_the_event(
    records: list[dict[str, Any]], name: str, region: str, shard: int
) -> None:
    arn = f"arn:aws:kinesis:{region}:123456789012:stream/{name}"
    api, shape = kinesis_api(arn, region), kinesis_shape(arn)
    shard_id = f"shardId-{shard:012d}"
    payloads = [api.payload(raw, shard_id) for raw in records]
    event = shape.build_event(
        [stream_record(p, "1", shard=shard_id, timestamp_ms=0) for p in payloads]
    )
    estimate = shape.envelope_bytes + sum(
        api.size(raw, p) for raw, p in zip(records, payloads, strict=True)
    )
    assert estimate >= event_size(event)


# -------------------------------------------------------------------- DynamoDB records


@pytest.mark.parametrize("name", DDB_EVENTS)
def test_dynamodb_record_is_the_recorded_record_exactly(name: str) -> None:
    for recorded in EVENTS[name]["event"]["Records"]:
        [raw] = botocore_records("dynamodbstreams", [ddb_wire(recorded, 1657720081.0)])
        assert isinstance(raw["dynamodb"]["ApproximateCreationDateTime"], dt.datetime)
        for given_raw in (raw, reversed_keys(raw)):
            built = dynamodb_payload(given_raw, stream_arn=recorded["eventSourceARN"])
            assert list(built) == DDB_RECORD_KEYS
            created = built["dynamodb"]["ApproximateCreationDateTime"]
            assert type(created) is float and created == 1657720081.0  # LocalStack checks float
            built["dynamodb"]["ApproximateCreationDateTime"] = CREATION_PLACEHOLDER
            assert json.dumps(built) == json.dumps(recorded)


def test_dynamodb_recorded_binary_attribute_arrives_as_bytes_and_leaves_as_base64() -> None:
    [recorded] = EVENTS["ddb_insert_binary"]["event"]["Records"]
    [raw] = botocore_records("dynamodbstreams", [ddb_wire(recorded, 1.0)])
    assert raw["dynamodb"]["NewImage"]["binary_key"] == {"B": b"foobar"}  # what the test put
    built = dynamodb_payload(raw, stream_arn=DDB_ARN)
    assert built["dynamodb"]["NewImage"]["binary_key"] == {"B": "Zm9vYmFy"}
    assert raw["dynamodb"]["NewImage"]["binary_key"] == {"B": b"foobar"}  # input left alone


def test_dynamodb_doc_example_values_in_aws_key_order() -> None:
    """The spec §2.3 example (real values; its key order is not what AWS sends)."""
    for doc in EVENTS["ddb_doc"]["event"]["Records"]:
        [raw] = botocore_records("dynamodbstreams", [ddb_wire(doc, 0.0)])
        built = dynamodb_payload(raw, stream_arn=doc["eventSourceARN"])
        assert built == doc
        assert list(built) == DDB_RECORD_KEYS
        assert list(built["dynamodb"]) == [
            k for k in DDB_STREAM_RECORD_KEYS if k in doc["dynamodb"]
        ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Every attribute type, binary ones at every depth, as the wire (and Lambda's event) has them.
EVERY_TYPE_IMAGE: dict[str, Any] = {
    "pk": {"B": _b64(b"\x00\x01key")},
    "s": {"S": "text"},
    "n": {"N": "-1.5e10"},
    "b": {"B": _b64(b"\xff\xfe\xfd")},
    "empty_b": {"B": ""},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [_b64(b"\x00"), _b64(b"\x01\x02"), _b64(bytes(range(256)))]},
    "null": {"NULL": True},
    "bool": {"BOOL": False},
    "m": {
        "M": {
            "inner_b": {"B": _b64(b"nested")},
            "inner_bs": {"BS": [_b64(b"x")]},
            "deeper": {"M": {"l": {"L": [{"B": _b64(b"\x10")}, {"S": "s"}]}}},
        }
    },
    "l": {
        "L": [
            {"B": _b64(b"in a list")},
            {"M": {"b": {"B": _b64(b"map in a list")}}},
            {"L": [{"BS": [_b64(b"\x7f")]}]},
            {"N": "7"},
        ]
    },
}


def _walk_leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _walk_leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _walk_leaves(v)]
    return [value]


def test_dynamodb_binary_values_come_out_base64_at_every_depth() -> None:
    wire = {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": 1573690399.0,
            "Keys": {"pk": EVERY_TYPE_IMAGE["pk"]},
            "NewImage": EVERY_TYPE_IMAGE,
            "OldImage": {"pk": EVERY_TYPE_IMAGE["pk"], "bs": EVERY_TYPE_IMAGE["bs"]},
            "SequenceNumber": "800000000003126276362",
            "SizeBytes": 300,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    [raw] = botocore_records("dynamodbstreams", [wire])
    assert any(isinstance(leaf, bytes) for leaf in _walk_leaves(raw["dynamodb"]["NewImage"]))
    built = dynamodb_payload(raw, stream_arn=DDB_ARN)
    assert built == {**wire, "eventSourceARN": DDB_ARN}
    assert not any(isinstance(leaf, bytes) for leaf in _walk_leaves(built))
    json.dumps(built)  # serialisable as it is


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2019, 11, 14, 0, 13, 19, tzinfo=dt.UTC),
        dt.datetime(2019, 11, 14, 9, 13, 19, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        dt.datetime(2019, 11, 13, 19, 13, 19, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ],
)
def test_dynamodb_creation_time_is_an_epoch_seconds_number(when: dt.datetime) -> None:
    raw = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": when,
            "Keys": {"Id": {"N": "1"}},
            "SequenceNumber": "111",
            "SizeBytes": 8,
            "StreamViewType": "KEYS_ONLY",
        },
    }
    built = dynamodb_payload(raw, stream_arn=DDB_ARN)
    assert built["dynamodb"]["ApproximateCreationDateTime"] == 1573690399.0
    assert '"ApproximateCreationDateTime":1573690399.0,' in compact(built)


def test_dynamodb_ttl_user_identity_in_the_event_spelling() -> None:
    """TTL deletions: the Streams API says Type/PrincipalId, Lambda's event (and the TTL filter
    AWS documents, {"userIdentity": {"type": ["Service"], ...}}) type/principalId (esm-spec
    §2.3; DynamoDB developer guide, time-to-live-ttl-streams). Not AWS-recorded."""
    wire_identity = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    [doc, _] = EVENTS["ddb_doc"]["event"]["Records"]
    wire = {**ddb_wire(doc, 0.0), "eventName": "REMOVE", "userIdentity": wire_identity}
    [raw] = botocore_records("dynamodbstreams", [wire])
    assert raw["userIdentity"] == wire_identity
    built = dynamodb_payload(raw, stream_arn=DDB_ARN)
    assert list(built["userIdentity"].items()) == [
        ("type", "Service"),
        ("principalId", "dynamodb.amazonaws.com"),
    ]
    # where AWS puts userIdentity among the record's keys is not recorded
    assert [k for k in built if k != "userIdentity"] == DDB_RECORD_KEYS
    assert "userIdentity" not in dynamodb_payload({**raw, "userIdentity": None}, stream_arn=DDB_ARN)
    assert "userIdentity" not in dynamodb_payload(
        botocore_records("dynamodbstreams", [ddb_wire(doc, 0.0)])[0], stream_arn=DDB_ARN
    )


# ---------------------------------------------------------------- item identifiers


def test_the_shard_source_parses_identifiers_with_stream_identifier() -> None:
    assert ShardSource.parse_identifier is stream_identifier


@pytest.mark.parametrize("value", [SEQ, "800000000003126276362", "111", "<sequence-number:1>"])
def test_stream_identifier_accepts_sequence_number_strings(value: str) -> None:
    assert stream_identifier(value) == value


# 123: AWS-recorded as a batch failure (item_identifier_not_present_failure, below)
@pytest.mark.parametrize("value", ["", None, 123, 1.5, True, [], {}, [SEQ], {"seq": SEQ}])
def test_stream_identifier_rejects_anything_else(value: Any) -> None:
    assert stream_identifier(value) is None


# --------------------------------------------------- partial batch response scenarios
#
# Verified (read, not guessed):
# * The handler of each scenario: LocalStack's test source (localstack@bf2fc7a2,
#   test_lambda_integration_kinesis.py / _dynamodbstreams.py, the set_lambda_response
#   parametrize lists) and utils.create_lambda_with_response (localstack@5ad8a402), which
#   str.format()s the parameter into "return {response}". Two consequences the scenario names
#   do not tell: item_identifier_not_present_failure returns {"itemIdentifier": 123} (present,
#   but a number), and empty_string_success returns None: the "" parameter renders as a bare
#   "return". What AWS does with a handler returning the JSON string "" is not recorded.
# * What Lambda did: the recording. A failure scenario was invoked 1 + MaximumRetryAttempts
#   times with the same one record (Kinesis 3, DynamoDB 4) and then sent one
#   RetryAttemptsExhausted record for that batch, functionError "Unhandled" only when the
#   handler raised; a success scenario was invoked once.
# * Kinesis mappings: the recorded CreateEventSourceMapping responses. DynamoDB mappings
#   (BatchSize 1 / 3, MaximumRetryAttempts 2 / 3): read in the test source, as the DynamoDB
#   snapshots do not hold those responses.
# Inferred:
# * Success: the tests stop polling at the first logged invocation and configure no
#   destination, so "invoked once" is what they saw, not proof that no retry followed;
#   the test names and the AWS validation of those snapshots are the rest of the evidence.
# * That the test source read is what ran when the snapshots were recorded (same ids, same
#   recorded dates; the snapshot commit itself is not in the index searched).
# * Multi-record partial failures: the invocation boundaries (the test sorted the logged
#   records), hence every possible window is checked below.


def _batch_info_key(service: str) -> str:
    return KINESIS_BATCH_INFO if service == "kinesis" else DDB_STREAM_BATCH_INFO


def _seq(service: str, record: dict[str, Any]) -> str:
    if service == "kinesis":
        return cast(str, record["kinesis"]["sequenceNumber"])
    return cast(str, record["dynamodb"]["SequenceNumber"])


def what_lambda_did(case: dict[str, Any]) -> OutcomeKind:
    """The outcome of the scenario's batch, read off the recording."""
    invocations = case["invocations"]
    body = case["destination_record"]
    if body is None:
        assert len(invocations) == 1
        return OutcomeKind.SUCCESS
    assert case["mapping"]["OnFailure"] and case["destination_messages"] == 1
    batch = invocations[0]
    assert all(inv == batch for inv in invocations)  # the same batch, retried whole
    context = body["requestContext"]
    assert context["condition"] == RETRY_ATTEMPTS_EXHAUSTED
    assert context["approximateInvokeCount"] == len(invocations)
    assert len(invocations) == 1 + case["mapping"]["MaximumRetryAttempts"]
    info = body[_batch_info_key(case["service"])]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        batch[0],
        batch[-1],
        len(batch),
    )
    return OutcomeKind.FAILURE


def scenario_records(case: dict[str, Any]) -> list[Record]:
    service = case["service"]
    shard = "<shard-id:1>"  # DynamoDB events do not name their shard; the record does
    body = case["destination_record"]
    if body is not None:
        shard = body[_batch_info_key(service)]["shardId"]
    out = []
    for r in case["event"]["Records"]:
        if service == "kinesis":
            shard = shard_of(r)
        out.append(
            stream_record(r, _seq(service, r), shard=shard, timestamp_ms=epoch_ms(RECORDED_INSTANT))
        )
    return out


def scenario_result(case: dict[str, Any]) -> InvocationResult:
    handler = case["handler"]
    if handler["raises"]:
        error = FunctionError("ZeroDivisionError", "division by zero")
        return InvocationResult("req", None, error, 0.01)
    return InvocationResult("req", handler["response"], None, 0.01)


STREAM_SHAPE = types.SimpleNamespace(parse_identifier=ShardSource.parse_identifier)


def scenario_outcome(case: dict[str, Any], records: list[Record]) -> BatchOutcome:
    """outcome_of() (what BatchExecution calls) for the scenario's invocation result."""
    report = "ReportBatchItemFailures" in case["mapping"]["FunctionResponseTypes"]
    mapping = types.SimpleNamespace(report_batch_item_failures=report)
    return outcome_of(scenario_result(case), records, cast(Any, mapping), cast(Any, STREAM_SHAPE))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recorded_scenario_has_the_recorded_outcome(name: str) -> None:
    case = SCENARIOS[name]
    expected = what_lambda_did(case)
    records = scenario_records(case)
    outcome = scenario_outcome(case, records)
    assert outcome.kind is expected, outcome.reason
    if not case["handler"]["raises"]:  # the same answer straight from the parser
        ids = {r.item_id for r in records}
        assert parse_batch_response(case["handler"]["response"], ids, stream_identifier) == outcome
    ok, bad = split_by_outcome(outcome, records)
    if expected is OutcomeKind.SUCCESS:
        assert (ok, bad) == (records, [])
    else:
        assert (ok, bad) == ([], records)
        assert outcome.reason  # logged


@pytest.mark.parametrize("name", sorted(n for n, s in SCENARIOS.items() if s["destination_record"]))
def test_recorded_scenario_onfailure_record_exactly(name: str) -> None:
    """The record sent after the scenario's retries: the batch info our shape builds from the
    failed records, in the envelope, functionError following how the last invocation failed."""
    case = SCENARIOS[name]
    recorded = case["destination_record"]
    key = _batch_info_key(case["service"])
    stream_arn = recorded[key]["streamArn"]
    shape = (kinesis_shape if case["service"] == "kinesis" else dynamodb_shape)(stream_arn)
    assert shape.batch_info_key == key
    records = scenario_records(case)
    _, failed = split_by_outcome(scenario_outcome(case, records), records)
    when, printed = timestamp_of(recorded["timestamp"])
    built = invocation_record(
        request_id=recorded["requestContext"]["requestId"],
        function_arn=recorded["requestContext"]["functionArn"],
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=len(case["invocations"]),
        # BatchExecution's rule: "Unhandled" after a function error, null after a response
        # that failed the batch
        function_error="Unhandled" if case["handler"]["raises"] else None,
        batch_info_key=shape.batch_info_key,
        batch_info=shape.batch_info(failed, event_size(shape.build_event(failed))),
        timestamp=when,
    )
    assert built["timestamp"] == printed
    built["timestamp"] = recorded["timestamp"]
    info = built[key]
    for field in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
        assert info[field] == timestamp_of(recorded[key][field])[1]
        info[field] = recorded[key][field]
    assert json.dumps(built) == json.dumps(recorded)


def _localstack_handler(service: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The partial-failure handlers of the recorded multi-record tests (see the fixture)."""

    def fails(record: dict[str, Any]) -> bool:
        if service == "kinesis":
            return bool(json.loads(base64.b64decode(record["kinesis"]["data"])).get("should_fail"))
        return bool(record["dynamodb"].get("NewImage", {}).get("should_fail", {}).get("BOOL"))

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "batchItemFailures": [
                {"itemIdentifier": _seq(service, r)} for r in event["Records"] if fails(r)
            ]
        }

    return handler


@pytest.mark.parametrize("service", ["kinesis", "dynamodb"])
def test_recorded_partial_failure_retries_from_the_reported_record(service: str) -> None:
    case = PARTIAL[service]
    key = _batch_info_key(service)
    info = case["destination_record"][key]
    # The recording: one record was delivered again and again and finally given up alone;
    # every other record was delivered once (never retried). Not asserted: the failing record
    # was logged 5 times for approximateInvokeCount 4 (MaximumRetryAttempts 3), in both
    # recordings; a duplicated log line (LocalStack's FIXME) or an uncounted first, partial
    # invocation, the recording cannot tell.
    [failing] = [seq for seq, n in case["deliveries"].items() if n > 1]
    assert all(n == 1 for seq, n in case["deliveries"].items() if seq != failing)
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        failing,
        failing,
        1,
    )
    shape = (kinesis_shape if service == "kinesis" else dynamodb_shape)(info["streamArn"])
    ts = epoch_ms(RECORDED_INSTANT)
    records = [
        stream_record(r, _seq(service, r), shard=info["shardId"], timestamp_ms=ts)
        for r in case["records"]
    ]
    assert [position(str(r.item_id)) for r in records] == list(range(1, len(records) + 1))
    handler = _localstack_handler(service)
    size = case["mapping"]["BatchSize"]
    windows = [records[i : i + n] for n in range(1, size + 1) for i in range(len(records) - n + 1)]
    checked = 0
    for batch in windows:
        if failing not in {r.item_id for r in batch}:
            continue
        response = handler(shape.build_event(batch))
        outcome = parse_batch_response(response, {r.item_id for r in batch}, stream_identifier)
        assert outcome.kind is OutcomeKind.PARTIAL
        ok, bad = split_by_outcome(outcome, batch)
        assert [r.item_id for r in bad] == [failing]
        assert ok == [r for r in batch if r.item_id != failing]
        built = shape.batch_info(bad, event_size(shape.build_event(bad)))
        for field in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
            assert built[field] == timestamp_of(info[field])[1]
            built[field] = info[field]
        assert json.dumps(built) == json.dumps(info)
        checked += 1
    assert checked == size


def _seq_records(seqs: list[str]) -> list[Record]:
    return [stream_record({}, s, shard=SHARD, timestamp_ms=0.0) for s in seqs]


@pytest.mark.parametrize(
    ("seqs", "reported", "first_failed"),
    [
        # several failures: Lambda checkpoints before the lowest and retries from it (§2.5)
        (["101", "102", "103", "104", "105"], ["104", "102"], 1),
        (["101", "102", "103", "104", "105"], ["102", "104"], 1),
        (["101", "102", "103", "104", "105"], ["105", "103", "105"], 2),
        (["101", "102", "103", "104", "105"], ["101", "105"], 0),
        (["101", "102", "103", "104", "105"], ["105"], 4),
        # DynamoDB sequence numbers grow in length: lowest is not the smallest string
        (["98", "99", "100", "101"], ["100", "99"], 1),
        ([SEQ[:-1] + "7", SEQ[:-1] + "8", SEQ[:-1] + "9"], [SEQ[:-1] + "9", SEQ[:-1] + "8"], 1),
    ],
)
def test_the_lowest_reported_sequence_number_is_the_checkpoint(
    seqs: list[str], reported: list[str], first_failed: int
) -> None:
    records = _seq_records(seqs)
    assert min(reported, key=int) == seqs[first_failed]
    response = {"batchItemFailures": [{"itemIdentifier": s} for s in reported]}
    outcome = parse_batch_response(response, {r.item_id for r in records}, stream_identifier)
    ok, bad = split_by_outcome(outcome, records)
    assert ok == records[:first_failed]
    assert bad == records[first_failed:]


# ----------------------------------------------------------------------- batch infos


def _recorded_batch_infos() -> dict[str, tuple[str, dict[str, Any], bool]]:
    """Every recorded (and documented) KinesisBatchInfo / DDBStreamBatchInfo: (key, block,
    whether its key order is AWS's; S3 objects have their keys sorted)."""
    out: dict[str, tuple[str, dict[str, Any], bool]] = {}
    for name, entry in ONFAILURE.items():
        for key in (KINESIS_BATCH_INFO, DDB_STREAM_BATCH_INFO):
            if key in entry["record"]:
                ordered = entry["kind"] != "s3"
                out[f"onfailure_records:{name}"] = (key, entry["record"][key], ordered)
    for name, case in SCENARIOS.items():
        if case["destination_record"]:
            key = _batch_info_key(case["service"])
            out[f"scenario:{name}"] = (key, case["destination_record"][key], True)
    for name, case in PARTIAL.items():
        key = _batch_info_key(name)
        out[f"partial:{name}"] = (key, case["destination_record"][key], True)
    return out


BATCH_INFOS = _recorded_batch_infos()


def test_batch_infos_cover_both_streams_and_the_documentation() -> None:
    keys = [key for key, _, _ in BATCH_INFOS.values()]
    assert keys.count(KINESIS_BATCH_INFO) >= 10 and keys.count(DDB_STREAM_BATCH_INFO) >= 10
    assert {"onfailure_records:doc_kinesis", "onfailure_records:doc_ddb"} <= set(BATCH_INFOS)


@pytest.mark.parametrize("name", sorted(BATCH_INFOS))
def test_batch_info_is_the_recorded_block_exactly(name: str) -> None:
    """StreamShape.batch_info from records standing where the recorded batch stood."""
    key, recorded, ordered = BATCH_INFOS[name]
    assert list(recorded) == (BATCH_INFO_KEYS if ordered else sorted(BATCH_INFO_KEYS))
    first_at, first_printed = timestamp_of(recorded["approximateArrivalOfFirstRecord"])
    last_at, last_printed = timestamp_of(recorded["approximateArrivalOfLastRecord"])
    n = recorded["batchSize"]
    seqs = [recorded["startSequenceNumber"]] + ["0"] * (n - 2) + [recorded["endSequenceNumber"]]
    stamps = [epoch_ms(first_at)] + [epoch_ms(first_at)] * (n - 2) + [epoch_ms(last_at)]
    records = [
        stream_record({}, s, shard=recorded["shardId"], timestamp_ms=t)
        for s, t in zip(seqs[-n:], stamps[-n:], strict=True)
    ]
    if n == 1:  # one record: first and last are the same
        assert recorded["startSequenceNumber"] == recorded["endSequenceNumber"]
        assert first_printed == last_printed
    shape: StreamShape = (kinesis_shape if key == KINESIS_BATCH_INFO else dynamodb_shape)(
        recorded["streamArn"]
    )
    assert shape.batch_info_key == key
    built = shape.batch_info(records, 1000)
    assert built["approximateArrivalOfFirstRecord"] == first_printed
    assert built["approximateArrivalOfLastRecord"] == last_printed
    built["approximateArrivalOfFirstRecord"] = recorded["approximateArrivalOfFirstRecord"]
    built["approximateArrivalOfLastRecord"] = recorded["approximateArrivalOfLastRecord"]
    assert list(built) == BATCH_INFO_KEYS
    assert json.dumps(built, sort_keys=not ordered) == json.dumps(recorded)


_ms_instants = st.integers(
    min_value=int(epoch_ms(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))),
    max_value=int(epoch_ms(dt.datetime(2200, 1, 1, tzinfo=dt.UTC))),
).map(lambda ms: dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms))


@settings(max_examples=300, deadline=None)
@given(first=_ms_instants, last=_ms_instants)
def test_kinesis_batch_info_arrivals_are_the_arrival_milliseconds(
    first: dt.datetime, last: dt.datetime
) -> None:
    api = kinesis_api()
    raws = [
        {"SequenceNumber": s, "PartitionKey": "p", "Data": b"", "ApproximateArrivalTimestamp": t}
        for s, t in (("1", first), ("2", last))
    ]
    records = [shard_source_record(api, raw) for raw in raws]
    info = kinesis_shape(KINESIS_ARN).batch_info(records, 0)
    assert info["approximateArrivalOfFirstRecord"] == iso_millis(first)
    assert info["approximateArrivalOfLastRecord"] == iso_millis(last)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["approximateArrivalOfLastRecord"]
    )


@settings(max_examples=300, deadline=None)
@given(first=_ms_instants, last=_ms_instants)
def test_dynamodb_batch_info_arrivals_are_whole_seconds(
    first: dt.datetime, last: dt.datetime
) -> None:
    api = DynamoDbStreamsApi(cast(Any, None), stream_arn=DDB_ARN, region=None)
    # DynamoDB Streams creation times are whole seconds; cut any fraction all the same
    raws = [
        {
            "eventID": s,
            "eventName": "INSERT",
            "dynamodb": {"ApproximateCreationDateTime": t, "Keys": {}, "SequenceNumber": s},
        }
        for s, t in (("1", first), ("2", last))
    ]
    records = [shard_source_record(api, raw) for raw in raws]
    info = dynamodb_shape(DDB_ARN).batch_info(records, 0)
    assert info["approximateArrivalOfFirstRecord"] == iso_seconds(first)
    assert info["approximateArrivalOfLastRecord"] == iso_seconds(last)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["approximateArrivalOfLastRecord"])


def test_batch_info_names_the_first_and_last_record_of_the_batch() -> None:
    seqs = [SEQ, SEQ[:-1] + "9", "49590338271490256608559692540925702759324208523137515618"]
    stamps = [1573691884835.0, 1573691885000.0, 1573691885580.0]
    records = [
        stream_record({}, s, shard="shardId-000000000001", timestamp_ms=t)
        for s, t in zip(seqs, stamps, strict=True)
    ]
    info = kinesis_shape(KINESIS_ARN).batch_info(records, 1234)
    assert info == {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": seqs[0],
        "endSequenceNumber": seqs[2],
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 3,
        "streamArn": KINESIS_ARN,
    }
    assert list(info) == BATCH_INFO_KEYS
    ddb = dynamodb_shape(DDB_ARN).batch_info(records[1:], 1234)
    assert ddb["approximateArrivalOfFirstRecord"] == "2019-11-14T00:38:05Z"
    assert ddb["approximateArrivalOfLastRecord"] == "2019-11-14T00:38:05Z"
    assert (ddb["startSequenceNumber"], ddb["batchSize"], ddb["streamArn"]) == (seqs[1], 2, DDB_ARN)


def test_stream_event_is_the_records_in_order() -> None:
    records = EVENTS["kinesis_five"]["event"]["Records"]
    built = kinesis_shape(KINESIS_ARN).build_event(
        [
            stream_record(r, r["kinesis"]["sequenceNumber"], shard=SHARD, timestamp_ms=0.0)
            for r in records
        ]
    )
    assert json.dumps(built) == json.dumps({"Records": records})
    assert kinesis_shape(KINESIS_ARN).envelope_bytes == len(compact({"Records": []}))
