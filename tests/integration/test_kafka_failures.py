"""Kafka failure policy end to end: bisection, retries, on-failure destinations, oversized records.

A Tansu broker for the records and ministack for the destinations (SQS, SNS → SQS, S3).
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.aws import Queue, client, wait_until
from tests.support.kafka import KAFKA_ENV, committed, create_topic, produce
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration


def kafka_mapping_entry(bootstrap: str, topic: str, **fields: object) -> dict[str, object]:
    return {
        "FunctionName": "fn",
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
        "Topics": [topic],
        "StartingPosition": "TRIM_HORIZON",
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"g-{topic}"},
        **fields,
    }


def config(record_file, mappings: list[dict[str, object]]) -> dict[str, object]:
    return {
        "functions": {
            "fn": {
                "Handler": "tests.handlers.kafka.handler",
                "Timeout": 5,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
            }
        },
        "eventSourceMappings": mappings,
    }


def check_failure_record(record: dict, topic: str, offset: int, bootstrap: str) -> None:
    assert list(record) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KafkaBatchInfo",
    ]
    ctx = record["requestContext"]
    assert ctx["condition"] == "RetryAttemptsExhausted"
    assert ctx["functionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert ctx["approximateInvokeCount"] >= 2
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["version"] == "1.0"
    info = record["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["bootstrapServers"] == bootstrap
    assert "eventSourceArn" not in info  # self-managed Kafka has no ARN
    assert info["payloadSize"] > 0
    [(key, ri)] = info["recordsInfo"].items()
    assert key == f"{topic}-0"
    assert ri["firstRecordOffset"] == ri["lastRecordOffset"] == str(offset)


def test_poison_record_isolated_by_bisection_and_sent_to_each_destination(
    kafka_bootstrap, aws_endpoint, sqs, runtime_factory, record_file
):
    sns = client("sns", aws_endpoint)
    s3 = client("s3", aws_endpoint)
    to_sqs = Queue.create(sqs, "ofd")
    via_sns = Queue.create(sqs, "ofd-sns")
    topic_arn = sns.create_topic(Name=f"ofd-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=via_sns.arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    bucket = f"ofd-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    destinations = {
        "sqs": to_sqs.arn,
        "sns": topic_arn,
        "s3": f"arn:aws:s3:::{bucket}",
    }
    topics = {kind: create_topic(kafka_bootstrap, 1, prefix=kind) for kind in destinations}
    for t in topics.values():
        produce(kafka_bootstrap, t, [{"i": i, "poison": i == 5} for i in range(8)], partition=0)
    mappings = [
        kafka_mapping_entry(
            kafka_bootstrap,
            topics[kind],
            BatchSize=8,
            MaximumBatchingWindowInSeconds=1,
            BisectBatchOnFunctionError=True,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": arn}},
        )
        for kind, arn in destinations.items()
    ]
    rt = runtime_factory(config(record_file, mappings), env=KAFKA_ENV).start()
    wait_until(
        lambda: rt.metric("lambda_on_failure_destination_delivered_events_total") == 3,
        60,
        what="a failure record at each destination",
    )
    [sqs_msg] = wait_until(lambda: to_sqs.drain(0.2), 10)
    check_failure_record(json.loads(sqs_msg["Body"]), topics["sqs"], 5, kafka_bootstrap)
    [sns_msg] = wait_until(lambda: via_sns.drain(0.2), 10)
    check_failure_record(json.loads(sns_msg["Body"]), topics["sns"], 5, kafka_bootstrap)
    [obj] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert obj["Key"].startswith("aws/lambda/")
    assert f"/{topics['s3']}-0/" in obj["Key"]
    doc = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    payload = json.loads(doc.pop("payload"))  # an escaped JSON string, as Lambda writes it
    check_failure_record(
        {
            k: doc[k]
            for k in ("requestContext", "responseContext", "version", "timestamp", "KafkaBatchInfo")
        },
        topics["s3"],
        5,
        kafka_bootstrap,
    )
    assert payload["eventSource"] == "SelfManagedKafka"
    [(key, records)] = payload["records"].items()
    assert key == f"{topics['s3']}-0" and [r["offset"] for r in records] == [5]

    # Bisection isolated the poison: every other record was processed, and the partition
    # moved on past the given-up record.
    for t in topics.values():
        wait_until(lambda t=t: committed(kafka_bootstrap, f"g-{t}", t, 1) == {0: 8}, 10)
    invs = read_invocations(record_file)
    ok = {
        (r["topic"], r["offset"])
        for i in invs
        if i.outcome == "returned"
        for rs in i.event["records"].values()
        for r in rs
    }
    for t in topics.values():
        assert {o for tt, o in ok if tt == t} == {0, 1, 2, 3, 4, 6, 7}
    single_poison = [
        i for i in invs if [r["offset"] for rs in i.event["records"].values() for r in rs] == [5]
    ]
    assert len(single_poison) == 2 * 3  # first try and one retry, per topic
    assert rt.metric("lambda_dropped_events_total") == 0
    assert rt.stop() == 0


def test_oversized_record_and_no_destination(kafka_bootstrap, sqs, runtime_factory, record_file):
    dest = Queue.create(sqs, "ofd-big")
    big_topic = create_topic(kafka_bootstrap, 1, prefix="big")
    produce(kafka_bootstrap, big_topic, [{"i": 0}], partition=0)
    produce(
        kafka_bootstrap,
        big_topic,
        [b"x" * (5 * 1024 * 1024)],  # base64 makes it ~6.7 MB: no invocation can carry it
        partition=0,
        config={"message.max.bytes": 20_000_000},
    )
    produce(kafka_bootstrap, big_topic, [{"i": 2}], partition=0)
    drop_topic = create_topic(kafka_bootstrap, 1, prefix="drop")
    produce(kafka_bootstrap, drop_topic, [{"i": 0}, {"poison": True}, {"i": 2}], partition=0)
    mappings = [
        kafka_mapping_entry(
            kafka_bootstrap,
            big_topic,
            BatchSize=10,
            MaximumBatchingWindowInSeconds=1,
            DestinationConfig={"OnFailure": {"Destination": dest.arn}},
        ),
        kafka_mapping_entry(
            kafka_bootstrap,
            drop_topic,
            BatchSize=1,
            MaximumRetryAttempts=0,
        ),
    ]
    rt = runtime_factory(config(record_file, mappings), env=KAFKA_ENV).start()
    [msg] = wait_until(lambda: dest.drain(0.2), 40, what="the oversized record's failure record")
    record = json.loads(msg["Body"])
    assert record["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["responseContext"] is None
    info = record["KafkaBatchInfo"]
    assert info["recordsInfo"][f"{big_topic}-0"]["firstRecordOffset"] == "1"
    assert info["payloadSize"] > 6 * 1024 * 1024
    # Without a destination the given-up record is dropped, counted and logged.
    wait_until(lambda: rt.metric("lambda_dropped_events_total") == 1, 20)
    wait_until(
        lambda: (
            committed(kafka_bootstrap, f"g-{drop_topic}", drop_topic, 1) == {0: 3}
            and committed(kafka_bootstrap, f"g-{big_topic}", big_topic, 1) == {0: 3}
        ),
        15,
    )
    invs = read_invocations(record_file)
    big_invoked = [
        r["offset"]
        for i in invs
        for rs in i.event["records"].values()
        for r in rs
        if r["topic"] == big_topic
    ]
    assert sorted(big_invoked) == [0, 2]  # the oversized record never reached the handler
    logs = rt.logs()
    assert "records dropped" in logs and f"{drop_topic}-0" in logs
    assert rt.stop() == 0
