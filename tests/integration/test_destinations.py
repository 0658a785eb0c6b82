"""On-failure destinations against real SQS, SNS and S3 (the session's ministack).

Each test builds a record with invocation_record(), sends it through the runtime's own
AwsClients, and reads it back with the plain test clients, the way a user's replay tool would.
ministack does not enforce ExpectedBucketOwner, so here it only has to be accepted; the unit
tests check that it is sent.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runtime.config.settings import Settings
from runtime.destinations.record import (
    KINESIS_BATCH_INFO,
    RETRY_ATTEMPTS_EXHAUSTED,
    UNHANDLED,
    invocation_record,
)
from runtime.destinations.sender import destination_for
from runtime.destinations.targets import parse_destination
from runtime.sources.aws import AwsClients
from tests.support.aws import REGION, Queue, client, wait_until

pytestmark = pytest.mark.integration

MAPPING_UUID = "6c1f7d52-3f0e-4a47-9a8b-0d2b9f1e5c11"
SHARD = "shardId-000000000003"
WHEN = datetime.datetime(2019, 11, 14, 0, 38, 6, 21000, tzinfo=datetime.UTC)
EVENT = {
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "k",
                "sequenceNumber": "49601189658422359378836298521827638475320189012309704722",
                "data": "aGVsbG8gw6l0w6k=",
                "approximateArrivalTimestamp": 1573692484.835,
            },
            "eventSource": "aws:kinesis",
            "eventID": f"{SHARD}:49601189658422359378836298521827638475320189012309704722",
            "note": "été",  # non-ASCII survives the S3 body
        }
    ]
}


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def sns(aws_endpoint: str) -> Any:
    return client("sns", aws_endpoint)


@pytest.fixture(scope="module")
def s3(aws_endpoint: str) -> Any:
    return client("s3", aws_endpoint)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"failures-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def _record() -> dict[str, Any]:
    return invocation_record(
        request_id=str(uuid.uuid4()),
        function_arn=f"arn:aws:lambda:{REGION}:000000000000:function:orders",
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=3,
        function_error=UNHANDLED,
        batch_info_key=KINESIS_BATCH_INFO,
        batch_info={
            "shardId": SHARD,
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "endSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:04.835Z",
            "batchSize": 1,
            "streamArn": f"arn:aws:kinesis:{REGION}:000000000000:stream/orders",
        },
        timestamp=WHEN,
    )


def _send(endpoint: str, arn: str, record: dict[str, Any], *, owner: str | None = None) -> None:
    """Send through a fresh AwsClients on its own event loop, as a worker would."""

    async def go() -> None:
        clients = AwsClients(Settings(aws_endpoint_url=endpoint))
        try:
            dest = destination_for(parse_destination(arn), clients, expected_bucket_owner=owner)
            await dest.send(record, event=EVENT, mapping_uuid=MAPPING_UUID, unit=SHARD)
        finally:
            await clients.close()

    asyncio.run(go())


def test_sqs_destination_receives_the_record(aws_endpoint: str, sqs: Any) -> None:
    q = Queue.create(sqs, "onfailure")
    record = _record()
    _send(aws_endpoint, q.arn, record)
    [msg] = wait_until(lambda: q.drain(0.2), 10, what="the on-failure record")
    assert msg["Body"] == json.dumps(record, separators=(",", ":"))
    assert list(json.loads(msg["Body"])) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    ]


def test_sns_destination_delivers_the_record_as_message(
    aws_endpoint: str, sqs: Any, sns: Any
) -> None:
    topic = sns.create_topic(Name=f"onfailure-{uuid.uuid4().hex[:10]}")["TopicArn"]
    q = Queue.create(sqs, "subscriber")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q.arn)
    record = _record()
    _send(aws_endpoint, topic, record)
    [msg] = wait_until(lambda: q.drain(0.2), 10, what="the SNS notification")
    notification = json.loads(msg["Body"])
    assert notification["Type"] == "Notification"
    assert notification["TopicArn"] == topic
    assert json.loads(notification["Message"]) == record
    assert list(json.loads(notification["Message"])) == list(record)


KEY = re.compile(
    rf"aws/lambda/{MAPPING_UUID}/{SHARD}/2019/11/14/2019-11-14T00\.38\.06-"
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


@pytest.mark.parametrize("owner", [None, "000000000000"])
def test_s3_destination_stores_record_and_payload(
    aws_endpoint: str, s3: Any, bucket: str, owner: str | None
) -> None:
    record = _record()
    _send(aws_endpoint, f"arn:aws:s3:::{bucket}", record, owner=owner)
    [obj] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert KEY.fullmatch(obj["Key"]), obj["Key"]
    got = s3.get_object(Bucket=bucket, Key=obj["Key"])
    assert got["ContentType"] == "application/json"
    body = json.loads(got["Body"].read().decode("utf-8"))
    assert isinstance(body["payload"], str)  # the event as an escaped JSON string
    assert body == {
        **record,
        "payload": json.dumps(EVENT, ensure_ascii=False, separators=(",", ":")),
    }
    assert list(body) == [
        "KinesisBatchInfo",
        "payload",
        "requestContext",
        "responseContext",
        "timestamp",
        "version",
    ]


def test_s3_bucket_in_another_region(aws_endpoint: str, s3: Any) -> None:
    name = f"failures-eu-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    _send(aws_endpoint, f"arn:aws:s3:::{name}", _record())
    [obj] = s3.list_objects_v2(Bucket=name)["Contents"]
    assert KEY.fullmatch(obj["Key"])
    s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    ("arn", "code"),
    [
        (
            f"arn:aws:sqs:{REGION}:000000000000:missing-{uuid.uuid4().hex[:8]}",
            "AWS.SimpleQueueService.NonExistentQueue",
        ),
        (f"arn:aws:sns:{REGION}:000000000000:missing-{uuid.uuid4().hex[:8]}", "NotFound"),
        (f"arn:aws:s3:::missing-{uuid.uuid4().hex[:12]}", "NoSuchBucket"),
    ],
    ids=["sqs", "sns", "s3"],
)
def test_send_to_a_missing_destination_raises(aws_endpoint: str, arn: str, code: str) -> None:
    with pytest.raises(ClientError) as err:
        _send(aws_endpoint, arn, _record())
    assert err.value.response["Error"]["Code"] == code
