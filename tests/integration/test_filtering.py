"""FilterCriteria end to end on real servers: SQS (ministack) and Kafka (Tansu)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import BEHAVE
from tests.support.kafka import KAFKA_ENV, committed, create_topic, kafka_mapping, produce
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration

CASES = Path(__file__).resolve().parents[1] / "conformance" / "filtering_cases.jsonl"


def sqs_cases() -> list[dict]:
    rows = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    return [
        r
        for r in rows
        if r["id"].startswith("lambda-esm:sqs:") and r["expected"] in ("MATCH", "NO_MATCH")
    ]


def test_aws_recorded_sqs_filter_cases_through_the_runtime(sqs, runtime_factory, record_file):
    """Every AWS-recorded SQS filter case: a matching message is invoked, a non-matching one
    is deleted without an invocation (Lambda's behaviour), and counted as filtered out."""
    cases = sqs_cases()
    assert len(cases) >= 30
    queues = {c["id"]: Queue.create(sqs, "flt", visibility_timeout=30) for c in cases}
    sent: dict[str, str] = {}
    for c in cases:
        body = c["event"]["body"]
        [sent[c["id"]]] = queues[c["id"]].send(
            [body if isinstance(body, str) else json.dumps(body)]
        )
    config = {
        "functions": {
            "fn": {
                "Handler": BEHAVE,
                "Timeout": 5,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
            }
        },
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "EventSourceArn": queues[c["id"]].arn,
                "FilterCriteria": {"Filters": [{"Pattern": c["pattern"]}]},
            }
            for c in cases
        ],
    }
    rt = runtime_factory(config).start()
    wait_until(lambda: all(q.total() == 0 for q in queues.values()), 40, what="queues emptied")
    invoked = {m for i in read_invocations(record_file) for m in i.message_ids}
    wrong = [c["id"] for c in cases if (sent[c["id"]] in invoked) != (c["expected"] == "MATCH")]
    assert wrong == []
    no_match = sum(1 for c in cases if c["expected"] == "NO_MATCH")
    assert rt.metric("lambda_filtered_out_events_total") == no_match
    assert rt.metric("lambda_polled_events_total") == len(cases)
    assert rt.metric("lambda_invoked_events_total") == len(cases) - no_match
    # Filtered-out deletes are not DeletedEventCount (that counts processed messages).
    assert rt.metric("lambda_deleted_events_total") == len(cases) - no_match
    assert rt.stop() == 0


def test_filtered_out_sqs_messages_can_be_kept_in_the_queue(sqs, runtime_factory, record_file):
    q = Queue.create(sqs, visibility_timeout=3)
    [keep_me] = q.send([{"kind": "other"}])
    [mine] = q.send([{"kind": "mine"}])
    config = {
        "functions": {
            "fn": {
                "Handler": BEHAVE,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
            }
        },
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "EventSourceArn": q.arn,
                "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"kind": ["mine"]}}'}]},
                "FilteredOutMessages": "Keep",
            }
        ],
    }
    rt = runtime_factory(config).start()
    wait_until(lambda: rt.metric("lambda_deleted_events_total") == 1, 20)
    wait_until(lambda: rt.metric("lambda_filtered_out_events_total") >= 1, 10)
    assert rt.stop() == 0
    assert {m for i in read_invocations(record_file) for m in i.message_ids} == {mine}
    # The other message was never deleted: it is still in the queue (visible again within
    # the 3 s visibility timeout even if a poll cancelled by the shutdown had received it).
    [back] = wait_until(lambda: q.drain(0.3), 8, what="the kept message visible again")
    assert back["MessageId"] == keep_me
    assert int(back["Attributes"]["ApproximateReceiveCount"]) >= 2


def test_kafka_filtered_records_are_skipped_and_committed(
    kafka_bootstrap, runtime_factory, record_file
):
    topic = create_topic(kafka_bootstrap, 2)
    values = [{"i": i, "type": "order" if i % 3 == 0 else "noise"} for i in range(60)]
    values += [b"not json at all", b"\xff\xfe binary"]  # format mismatch: metadata only
    produce(kafka_bootstrap, topic, values, partitions=2)
    group = f"g-{topic}"
    cfg = kafka_mapping(
        kafka_bootstrap,
        topic,
        record_file,
        BatchSize=50,
        MaximumBatchingWindowInSeconds=1,
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": group},
        FilterCriteria={"Filters": [{"Pattern": '{"value": {"type": ["order"]}}'}]},
    )
    rt = runtime_factory(cfg, env=KAFKA_ENV).start()
    wait_until(lambda: committed(kafka_bootstrap, group, topic, 2) == {0: 31, 1: 31}, 30)
    seen = [
        r for i in read_invocations(record_file) for rs in i.event["records"].values() for r in rs
    ]
    orders = sum(1 for v in values if isinstance(v, dict) and v["type"] == "order")
    # JSON "order" records, plus the two non-JSON values: on Kafka a format mismatch falls
    # back to metadata-only filtering, which this pattern (value only) does not restrict.
    assert len(seen) == orders + 2
    assert rt.metric("lambda_filtered_out_events_total") == len(values) - orders - 2
    assert rt.metric("lambda_committed_events_total") == len(values)
    assert rt.stop() == 0
