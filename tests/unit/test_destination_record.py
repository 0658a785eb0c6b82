"""On-failure records, destination parsing and the senders' calls (runtime.destinations, spec §6).

The conformance part rebuilds records that AWS wrote (tests/conformance/onfailure_records.json:
AWS doc examples and AWS-recorded SQS/SNS/S3 records) and compares the JSON text, so key order,
nulls and absent keys count. Recorded values are placeholders; the timestamp placeholder keeps
AWS's format (``<timestamp:2022-07-13T13:48:01.000Z>``), which is checked on its own.

The sender part uses a fake AwsClients whose clients record each call's keyword arguments.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runtime.destinations.record import (
    DDB_STREAM_BATCH_INFO,
    KAFKA_BATCH_INFO,
    KINESIS_BATCH_INFO,
    MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    UNHANDLED,
    invocation_record,
    iso_millis,
    iso_seconds,
)
from runtime.destinations.sender import (
    S3Destination,
    SnsDestination,
    SqsDestination,
    destination_for,
    s3_document,
    s3_object_key,
)
from runtime.destinations.targets import Target, parse_destination

UTC = datetime.UTC
FIXTURE = Path(__file__).resolve().parent.parent / "conformance" / "onfailure_records.json"
RECORDS: dict[str, Any] = json.loads(FIXTURE.read_text())["records"]
BATCH_INFO_KEYS = (KINESIS_BATCH_INFO, DDB_STREAM_BATCH_INFO, KAFKA_BATCH_INFO)
ENVELOPE_KEYS = ["requestContext", "responseContext", "version", "timestamp"]
WHEN = datetime.datetime(2019, 11, 14, 0, 38, 6, 21000, tzinfo=UTC)
MAPPING_UUID = "a1b2c3d4-0000-4000-8000-0123456789ab"


def _timestamp_of(text: str) -> tuple[datetime.datetime, str]:
    """The datetime a recorded timestamp stands for, and the text AWS printed for it."""
    m = re.fullmatch(r"<timestamp:(.+)>", text)
    printed = m.group(1) if m else text
    return datetime.datetime.fromisoformat(printed), printed


def _rebuild(recorded: dict[str, Any]) -> dict[str, Any]:
    """invocation_record() fed with the values of a recorded record."""
    rc = recorded["requestContext"]
    [key] = [k for k in recorded if k in BATCH_INFO_KEYS]
    response = recorded.get("responseContext")
    when, _ = _timestamp_of(recorded["timestamp"])
    return invocation_record(
        request_id=rc["requestId"],
        function_arn=rc["functionArn"],
        condition=rc["condition"],
        approximate_invoke_count=rc["approximateInvokeCount"],
        # RecordAgeExceeded records have no response; the last error must not leak in.
        function_error=response["functionError"] if response else UNHANDLED,
        batch_info_key=key,
        batch_info=recorded[key],
        timestamp=when,
    )


def _with_recorded_timestamp(built: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    _, printed = _timestamp_of(recorded["timestamp"])
    assert built["timestamp"] == printed  # the format, digit for digit
    return {k: (recorded["timestamp"] if k == "timestamp" else v) for k, v in built.items()}


SQS_SNS = sorted(k for k, v in RECORDS.items() if v["kind"] == "sqs_sns")
S3 = sorted(k for k, v in RECORDS.items() if v["kind"] == "s3")


def test_fixture_names_its_sources() -> None:
    assert len(SQS_SNS) >= 9 and len(S3) == 2
    for entry in RECORDS.values():
        assert entry["source"]["file"]
        assert "test_id" in entry["source"] or "origin" in entry["source"]


@pytest.mark.parametrize("name", SQS_SNS)
def test_record_is_aws_record_exactly(name: str) -> None:
    recorded = RECORDS[name]["record"]
    built = _with_recorded_timestamp(_rebuild(recorded), recorded)
    assert json.dumps(built) == json.dumps(recorded)


@pytest.mark.parametrize("name", S3)
def test_s3_document_is_aws_object_exactly(name: str) -> None:
    recorded = RECORDS[name]["record"]
    doc = s3_document(_rebuild(recorded), recorded["payload"])
    # The payload is an escaped JSON string (esm-spec §6.6); the recording shows it decoded
    # because the recorder decodes every string that looks like JSON.
    assert isinstance(doc["payload"], str)
    doc["payload"] = json.loads(doc["payload"])
    assert json.dumps(_with_recorded_timestamp(doc, recorded)) == json.dumps(recorded)


def test_s3_document_sorts_envelope_but_not_payload() -> None:
    record = _rebuild(RECORDS["doc_kinesis"]["record"])
    event = {"Records": [{"kinesis": {"z": 1, "a": 2}, "eventSource": "aws:kinesis"}]}
    doc = s3_document(record, event)
    assert list(doc) == [
        "KinesisBatchInfo",
        "payload",
        "requestContext",
        "responseContext",
        "timestamp",
        "version",
    ]
    assert list(doc["KinesisBatchInfo"]) == sorted(record["KinesisBatchInfo"])
    assert list(doc["requestContext"]) == sorted(record["requestContext"])
    assert doc["payload"] == json.dumps(event, separators=(",", ":"))  # a string, event order
    assert list(record) == [*ENVELOPE_KEYS, "KinesisBatchInfo"]  # the record is left alone


def _record(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "request_id": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
        "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:myfunction",
        "condition": RETRY_ATTEMPTS_EXHAUSTED,
        "approximate_invoke_count": 1,
        "function_error": UNHANDLED,
        "batch_info_key": KAFKA_BATCH_INFO,
        "batch_info": {"batchSize": 1, "recordsInfo": {}},
        "timestamp": WHEN,
    }
    return invocation_record(**{**kwargs, **overrides})


def test_key_order_of_every_level() -> None:
    rec = _record()
    assert list(rec) == [*ENVELOPE_KEYS, KAFKA_BATCH_INFO]
    assert list(rec["requestContext"]) == [
        "requestId",
        "functionArn",
        "condition",
        "approximateInvokeCount",
    ]
    assert rec["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert list(rec["responseContext"]) == ["statusCode", "executedVersion", "functionError"]
    assert rec["version"] == "1.0"
    assert rec["timestamp"] == "2019-11-14T00:38:06.021Z"


def test_payload_too_large_has_null_response_context() -> None:
    rec = _record(condition=MAXIMUM_PAYLOAD_SIZE_EXCEEDED, function_error=None)
    assert list(rec) == [*ENVELOPE_KEYS, KAFKA_BATCH_INFO]
    assert rec["responseContext"] is None
    assert '"responseContext":null,"version":"1.0"' in json.dumps(rec, separators=(",", ":"))


def test_partial_batch_failure_keeps_response_context_with_null_error() -> None:
    rec = _record(function_error=None)
    assert rec["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": None,
    }


def test_record_age_exceeded_has_no_response_context() -> None:
    rec = _record(condition=RECORD_AGE_EXCEEDED, approximate_invoke_count=8)
    assert list(rec) == ["requestContext", "version", "timestamp", KAFKA_BATCH_INFO]


@pytest.mark.parametrize("condition", ["MaximumRecordAgeExceeded", "RetriesExhausted", ""])
def test_unknown_condition_is_refused(condition: str) -> None:
    with pytest.raises(ValueError) as err:
        _record(condition=condition)
    assert str(err.value) == (
        f"unknown on-failure condition {condition!r}; expected one of "
        "['MaximumPayloadSizeExceeded', 'RecordAgeExceeded', 'RetryAttemptsExhausted']"
    )


def test_negative_invoke_count_is_refused() -> None:
    with pytest.raises(ValueError, match="approximate_invoke_count must be >= 0, got -1"):
        _record(approximate_invoke_count=-1)


def test_batch_info_is_copied() -> None:
    info: dict[str, Any] = {"batchSize": 1}
    rec = _record(batch_info=info)
    info["batchSize"] = 2
    assert rec[KAFKA_BATCH_INFO] == {"batchSize": 1}


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (WHEN, "2019-11-14T00:38:06.021Z"),
        (WHEN.replace(microsecond=21999), "2019-11-14T00:38:06.021Z"),  # cut, not rounded
        (WHEN.replace(microsecond=0), "2019-11-14T00:38:06.000Z"),
        (
            datetime.datetime(
                2019, 11, 14, 1, 38, 6, 21000, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
            ),
            "2019-11-14T00:38:06.021Z",
        ),
        (
            datetime.datetime(2019, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "2019-12-31T23:59:59.999Z",
        ),
    ],
)
def test_iso_millis(dt: datetime.datetime, text: str) -> None:
    assert iso_millis(dt) == text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)


def test_iso_seconds_is_ddb_arrival_format() -> None:
    dt = datetime.datetime(2019, 11, 14, 0, 13, 19, 500000, tzinfo=UTC)
    assert iso_seconds(dt) == "2019-11-14T00:13:19Z"
    recorded = RECORDS["ddb_sqs_unhandled"]["record"]["DDBStreamBatchInfo"]
    _, printed = _timestamp_of(recorded["approximateArrivalOfFirstRecord"])
    assert iso_seconds(datetime.datetime.fromisoformat(printed)) == printed


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timestamp must be timezone-aware"):
        iso_millis(datetime.datetime(2019, 11, 14))
    with pytest.raises(ValueError, match="timestamp must be timezone-aware"):
        _record(timestamp=datetime.datetime(2019, 11, 14))


# --- parse_destination ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "target"),
    [
        (
            "arn:aws:sqs:us-east-2:123456789012:failed-batches",
            Target("sqs", "arn:aws:sqs:us-east-2:123456789012:failed-batches", "us-east-2",
                   "123456789012", "failed-batches"),
        ),
        (
            "arn:aws:sns:eu-west-1:123456789012:Alerts_1",
            Target("sns", "arn:aws:sns:eu-west-1:123456789012:Alerts_1", "eu-west-1",
                   "123456789012", "Alerts_1"),
        ),
        (
            "arn:aws:s3:::my-failure-bucket.example",
            Target("s3", "arn:aws:s3:::my-failure-bucket.example", None, None,
                   "my-failure-bucket.example"),
        ),
        (
            "arn:aws-cn:sqs:cn-north-1:123456789012:q",
            Target("sqs", "arn:aws-cn:sqs:cn-north-1:123456789012:q", "cn-north-1",
                   "123456789012", "q"),
        ),
        (
            "arn:aws-us-gov:sns:us-gov-west-1:123456789012:t",
            Target("sns", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", "us-gov-west-1",
                   "123456789012", "t"),
        ),
        (
            "arn:aws:sqs:us-east-1:123456789012:" + "q" * 80,
            Target("sqs", "arn:aws:sqs:us-east-1:123456789012:" + "q" * 80, "us-east-1",
                   "123456789012", "q" * 80),
        ),
    ],
)  # fmt: skip
def test_parse_destination_accepts(arn: str, target: Target) -> None:
    assert parse_destination(arn) == target


NOT_A_DESTINATION = "an on-failure destination must be an SQS queue, SNS topic or S3 bucket ARN"
FIFO = "FIFO SQS queues and SNS topics are not supported as on-failure destinations"
KAFKA = "kafka:// destinations need Lambda's provisioned mode, which this runtime does not have"


@pytest.mark.parametrize(
    ("arn", "reason"),
    [
        ("kafka://failed-records", KAFKA),
        ("arn:aws:sqs:us-east-1:123456789012:orders.fifo", FIFO),
        ("arn:aws:sns:us-east-1:123456789012:alerts.fifo", FIFO),
        ("", NOT_A_DESTINATION),
        ("failed-batches", NOT_A_DESTINATION),
        ("https://sqs.us-east-1.amazonaws.com/123456789012/q", NOT_A_DESTINATION),
        ("arn:aws:lambda:us-east-1:123456789012:function:f", NOT_A_DESTINATION),
        ("arn:aws:events:us-east-1:123456789012:event-bus/default", NOT_A_DESTINATION),
        ("arn:aws:sqs:us-east-1::q", NOT_A_DESTINATION),  # no account
        ("arn:aws:sqs::123456789012:q", NOT_A_DESTINATION),  # no region
        ("arn:aws:sqs:us-east-1:123456789012:" + "q" * 81, NOT_A_DESTINATION),
        ("arn:aws:sqs:us-east-1:123456789012:bad.name", NOT_A_DESTINATION),
        ("arn:aws:sns:us-east-1:123456789012:t:0b4d5c0e-1e1a", NOT_A_DESTINATION),
        ("arn:aws:s3:::bucket/key", NOT_A_DESTINATION),
        ("arn:aws:s3:us-east-1:123456789012:my-bucket", NOT_A_DESTINATION),
        ("arn:aws:s3:us-east-1:123456789012:accesspoint/ap", NOT_A_DESTINATION),
        ("arn:aws:s3:::My_Bucket", NOT_A_DESTINATION),
        ("arn:aws:s3:::ab", NOT_A_DESTINATION),
    ],
)  # fmt: skip
def test_parse_destination_rejects(arn: str, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_destination(arn)
    assert str(err.value) == f"{reason} (got {arn!r})"


# --- S3 object key --------------------------------------------------------------------------

KEY = re.compile(
    r"aws/lambda/(?P<uuid>[^/]+)/(?P<unit>[^/]+)/(?P<ymd>\d{4}/\d\d/\d\d)/"
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d)-(?P<random>[0-9a-f-]{36})"
)


def test_s3_key_format() -> None:
    key = s3_object_key(mapping_uuid=MAPPING_UUID, unit="shardId-000000000001", when=WHEN)
    m = KEY.fullmatch(key)
    assert m, key
    assert m["uuid"] == MAPPING_UUID
    assert m["unit"] == "shardId-000000000001"
    assert m["ymd"] == "2019/11/14"
    assert m["time"] == "2019-11-14T00.38.06"
    assert uuid.UUID(m["random"]).version == 4
    again = s3_object_key(mapping_uuid=MAPPING_UUID, unit="shardId-000000000001", when=WHEN)
    assert again != key and again[:-36] == key[:-36]


def test_s3_key_uses_utc_and_kafka_topic_partition() -> None:
    local = datetime.datetime(
        2019, 11, 14, 0, 30, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    key = s3_object_key(mapping_uuid=MAPPING_UUID, unit="orders-3", when=local)
    assert key.startswith(f"aws/lambda/{MAPPING_UUID}/orders-3/2019/11/13/2019-11-13T22.30.00-")


def test_s3_key_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        s3_object_key(mapping_uuid=MAPPING_UUID, unit="u", when=datetime.datetime(2019, 1, 1))


# --- senders, with fake clients -------------------------------------------------------------


class FakeClient:
    """Records (operation, kwargs); answers or raises what a test put in `answers`."""

    def __init__(self, service: str, region: str | None, default_region: str) -> None:
        self.service = service
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, list[Any]] = {}
        self.meta = type("Meta", (), {"region_name": region or default_region})()

    def __getattr__(self, op: str) -> Any:
        async def call(**kwargs: Any) -> Any:
            self.calls.append((op, kwargs))
            queued = self.answers.get(op)
            answer = queued.pop(0) if queued else {}
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == op]


class FakeClients:
    """Stands in for AwsClients: one FakeClient per (service, region), made on first use."""

    def __init__(self, default_region: str = "us-east-1") -> None:
        self.default_region = default_region
        self.made: dict[tuple[str, str | None], FakeClient] = {}

    async def client(self, service: str, region: str | None) -> FakeClient:
        key = (service, region)
        if key not in self.made:
            self.made[key] = FakeClient(service, region, self.default_region)
        return self.made[key]

    def get(self, service: str, region: str | None) -> FakeClient:
        return self.made.setdefault((service, region), FakeClient(service, region, "us-east-1"))


def client_error(code: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, op)


EVENT = {"Records": [{"kinesis": {"data": "aGVsbG8="}, "eventSource": "aws:kinesis"}]}


def _send(dest: Any, record: dict[str, Any], times: int = 1) -> None:
    async def go() -> None:
        for _ in range(times):
            await dest.send(record, event=EVENT, mapping_uuid=MAPPING_UUID, unit="shardId-0")

    asyncio.run(go())


def test_destination_for_picks_the_sender() -> None:
    clients: Any = FakeClients()
    for arn, cls in [
        ("arn:aws:sqs:us-east-1:123456789012:q", SqsDestination),
        ("arn:aws:sns:us-east-1:123456789012:t", SnsDestination),
        ("arn:aws:s3:::bucket-x", S3Destination),
    ]:
        dest = destination_for(parse_destination(arn), clients, expected_bucket_owner=None)
        assert type(dest) is cls and dest.target.arn == arn


def test_sqs_resolves_queue_url_once_and_sends_compact_json() -> None:
    clients = FakeClients()
    sqs = clients.get("sqs", "eu-west-1")
    sqs.answers["get_queue_url"] = [{"QueueUrl": "https://sqs.example/123456789012/dlq"}]
    target = parse_destination("arn:aws:sqs:eu-west-1:123456789012:dlq")
    dest = destination_for(target, clients, expected_bucket_owner="123456789012")
    record = _record()
    _send(dest, record, times=2)
    assert sqs.ops("get_queue_url") == [
        {"QueueName": "dlq", "QueueOwnerAWSAccountId": "123456789012"}
    ]
    sent = sqs.ops("send_message")
    assert len(sent) == 2
    assert sent[0] == {
        "QueueUrl": "https://sqs.example/123456789012/dlq",
        "MessageBody": json.dumps(record, separators=(",", ":")),
    }
    assert list(clients.made) == [("sqs", "eu-west-1")]


def test_sqs_failure_raises_and_forgets_a_vanished_queue_url() -> None:
    clients = FakeClients()
    sqs = clients.get("sqs", "us-east-1")
    sqs.answers["get_queue_url"] = [{"QueueUrl": "u1"}, {"QueueUrl": "u2"}]
    sqs.answers["send_message"] = [
        client_error("AWS.SimpleQueueService.NonExistentQueue", "SendMessage")
    ]
    dest = SqsDestination(parse_destination("arn:aws:sqs:us-east-1:123456789012:q"), clients)
    with pytest.raises(ClientError):
        _send(dest, _record())
    _send(dest, _record())
    assert [kw["QueueUrl"] for kw in sqs.ops("send_message")] == ["u1", "u2"]


def test_sns_publishes_record_as_message() -> None:
    clients = FakeClients()
    target = parse_destination("arn:aws:sns:ap-southeast-2:123456789012:alerts")
    dest = destination_for(target, clients, expected_bucket_owner=None)
    record = _record()
    _send(dest, record)
    assert clients.get("sns", "ap-southeast-2").ops("publish") == [
        {
            "TopicArn": "arn:aws:sns:ap-southeast-2:123456789012:alerts",
            "Message": json.dumps(record, separators=(",", ":")),
        }
    ]


BUCKET_ARN = "arn:aws:s3:::failure-bucket"


@pytest.mark.parametrize("owner", ["123456789012", None])
def test_s3_put_object_arguments(owner: str | None) -> None:
    clients = FakeClients()
    dest = destination_for(parse_destination(BUCKET_ARN), clients, expected_bucket_owner=owner)
    record = _record(batch_info_key=KINESIS_BATCH_INFO)
    _send(dest, record)
    s3 = clients.get("s3", None)
    [location] = s3.ops("get_bucket_location")
    [put] = s3.ops("put_object")
    owned = {"ExpectedBucketOwner": owner} if owner else {}
    assert location == {"Bucket": "failure-bucket", **owned}
    assert set(put) == {"Bucket", "Key", "Body", "ContentType", *owned}
    assert put["Bucket"] == "failure-bucket"
    assert put.get("ExpectedBucketOwner") == owner
    assert put["ContentType"] == "application/json"
    m = KEY.fullmatch(put["Key"])
    assert m and m["unit"] == "shardId-0" and m["time"] == "2019-11-14T00.38.06"
    assert (
        put["Body"]
        == json.dumps(
            s3_document(record, EVENT), ensure_ascii=False, separators=(",", ":")
        ).encode()
    )
    assert json.loads(json.loads(put["Body"])["payload"]) == EVENT


@pytest.mark.parametrize(
    ("location", "region"),
    [
        ({"LocationConstraint": "eu-west-1"}, "eu-west-1"),
        ({"LocationConstraint": "EU"}, "eu-west-1"),
    ],
)
def test_s3_uses_the_bucket_region_found_once(location: dict[str, Any], region: str) -> None:
    clients = FakeClients()
    clients.get("s3", None).answers["get_bucket_location"] = [location]
    dest = S3Destination(parse_destination(BUCKET_ARN), clients, expected_bucket_owner=None)
    _send(dest, _record(), times=2)
    assert len(clients.get("s3", None).ops("get_bucket_location")) == 1
    assert clients.get("s3", None).ops("put_object") == []
    assert len(clients.get("s3", region).ops("put_object")) == 2


def test_s3_bucket_in_the_default_region_uses_the_default_client() -> None:
    clients = FakeClients(default_region="us-east-1")
    clients.get("s3", None).answers["get_bucket_location"] = [{"LocationConstraint": None}]
    dest = S3Destination(parse_destination(BUCKET_ARN), clients, expected_bucket_owner=None)
    _send(dest, _record())
    assert list(clients.made) == [("s3", None)]
    assert len(clients.get("s3", None).ops("put_object")) == 1


def test_s3_without_location_permission_falls_back_to_default_region_for_good() -> None:
    clients = FakeClients()
    clients.get("s3", None).answers["get_bucket_location"] = [
        client_error("AccessDenied", "GetBucketLocation")
    ]
    dest = S3Destination(parse_destination(BUCKET_ARN), clients, expected_bucket_owner=None)
    _send(dest, _record(), times=2)
    s3 = clients.get("s3", None)
    assert len(s3.ops("get_bucket_location")) == 1
    assert len(s3.ops("put_object")) == 2


def test_s3_location_lookup_without_answer_is_asked_again() -> None:
    clients = FakeClients()
    clients.get("s3", None).answers["get_bucket_location"] = [
        OSError("connection reset"),
        {"LocationConstraint": "us-west-2"},
    ]
    dest = S3Destination(parse_destination(BUCKET_ARN), clients, expected_bucket_owner=None)
    _send(dest, _record(), times=3)
    assert len(clients.get("s3", None).ops("get_bucket_location")) == 2
    assert len(clients.get("s3", None).ops("put_object")) == 1
    assert len(clients.get("s3", "us-west-2").ops("put_object")) == 2


def test_s3_put_failure_raises() -> None:
    clients = FakeClients()
    clients.get("s3", None).answers["put_object"] = [client_error("NoSuchBucket", "PutObject")]
    dest = S3Destination(parse_destination(BUCKET_ARN), clients, expected_bucket_owner=None)
    with pytest.raises(ClientError):
        _send(dest, _record())
