"""Powertools batch handlers for Kinesis and DynamoDB Streams run unchanged, with Lambda's
partial failures (the sequence number as item identifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.aws import client, wait_until
from tests.support.streams import (
    STREAM_ENV,
    create_stream,
    create_table_with_stream,
    put,
    stream_mapping,
)

pytestmark = pytest.mark.integration


def _function(record_file: Path) -> dict[str, object]:
    return {
        "Environment": {
            "Variables": {"RECORD_FILE": str(record_file), "POWERTOOLS_TRACE_DISABLED": "true"}
        }
    }


def test_powertools_kinesis_batch_processor(aws_endpoint, runtime_factory, tmp_path):
    record_file = tmp_path / "kinesis.jsonl"
    kinesis = client("kinesis", aws_endpoint)
    arn = create_stream(kinesis, 1)
    answers = put(kinesis, arn, [("k", {"i": 0}), ("k", {"i": 1, "fail": True}), ("k", {"i": 2})])
    cfg = stream_mapping(
        arn,
        record_file,
        handler="tests.compat.powertools_handlers.kinesis_handler",
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        MaximumRetryAttempts=1,
        function=_function(record_file),
    )
    rt = runtime_factory(cfg, env={**STREAM_ENV, "ESM_DATA_DIR": str(tmp_path / "d")}).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 3, 30)
    seen = [json.loads(x)["value"]["i"] for x in record_file.read_text().splitlines()]
    # Powertools reported record 1's sequence number; the runtime retried from there (records
    # 1 and 2, once: MaximumRetryAttempts 1), then gave the rest up.
    assert seen == [0, 1, 2, 1, 2]
    first = json.loads(record_file.read_text().splitlines()[1])
    assert first["sequence"] == answers[1]["SequenceNumber"]
    assert rt.metric("lambda_dropped_events_total") == 2
    assert rt.stop() == 0


def test_powertools_dynamodb_batch_processor(aws_endpoint, runtime_factory, tmp_path):
    record_file = tmp_path / "ddb.jsonl"
    ddb = client("dynamodb", aws_endpoint)
    table, arn = create_table_with_stream(ddb, "NEW_IMAGE")
    ddb.put_item(TableName=table, Item={"id": {"S": "a"}})
    ddb.put_item(TableName=table, Item={"id": {"S": "b"}, "fail": {"BOOL": True}})
    ddb.put_item(TableName=table, Item={"id": {"S": "c"}})
    cfg = stream_mapping(
        arn,
        record_file,
        handler="tests.compat.powertools_handlers.dynamodb_handler",
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        MaximumRetryAttempts=1,
        function=_function(record_file),
    )
    rt = runtime_factory(cfg, env={**STREAM_ENV, "ESM_DATA_DIR": str(tmp_path / "d")}).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 3, 30)
    seen = [json.loads(x)["id"] for x in record_file.read_text().splitlines()]
    assert seen == ["a", "b", "c", "b", "c"]
    assert all(json.loads(x)["event"] == "INSERT" for x in record_file.read_text().splitlines())
    assert rt.metric("lambda_dropped_events_total") == 2
    assert rt.stop() == 0
