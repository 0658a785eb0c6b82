"""DynamoDB Streams end to end against the emulator: format, images, failures, checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import Queue, client, wait_until
from tests.support.records import starts
from tests.support.streams import STREAM_ENV, create_table_with_stream, stream_mapping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ddb(aws_endpoint: str) -> Any:
    return client("dynamodb", aws_endpoint)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**STREAM_ENV, "ESM_DATA_DIR": str(tmp_path / "data")}


def records(record_file: Path) -> list[dict[str, Any]]:
    return [r for inv in starts(record_file) for r in inv["event"]["Records"]]


def item(key: str, **body: Any) -> dict[str, Any]:
    return {"id": {"S": key}, "body": {"S": json.dumps(body)}}


def test_inserts_modifies_and_removes_arrive_in_lambda_format(
    ddb, runtime_factory, record_file, env
):
    table, arn = create_table_with_stream(ddb)
    ddb.put_item(TableName=table, Item=item("a", v=1))
    ddb.put_item(TableName=table, Item={**item("a", v=2), "bin": {"B": b"\x00\xff"}})
    ddb.delete_item(TableName=table, Key={"id": {"S": "a"}})
    runtime_factory(stream_mapping(arn, record_file, BatchSize=10), env=env).start()
    wait_until(lambda: len(records(record_file)) >= 3, 30)
    insert, modify, remove = records(record_file)
    assert [insert["eventName"], modify["eventName"], remove["eventName"]] == [
        "INSERT",
        "MODIFY",
        "REMOVE",
    ]
    for r in (insert, modify, remove):
        assert list(r)[:7] == [
            "eventID",
            "eventName",
            "eventVersion",
            "eventSource",
            "awsRegion",
            "dynamodb",
            "eventSourceARN",
        ]
        assert r["eventSource"] == "aws:dynamodb" and r["eventSourceARN"] == arn
        d = r["dynamodb"]
        assert d["Keys"] == {"id": {"S": "a"}}
        assert d["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert re.fullmatch(r"\d+", d["SequenceNumber"])
        assert isinstance(d["ApproximateCreationDateTime"], float)
        assert isinstance(d["SizeBytes"], int)  # as the stream gave it
    assert "OldImage" not in insert["dynamodb"] and insert["dynamodb"]["NewImage"] == item("a", v=1)
    assert modify["dynamodb"]["OldImage"] == item("a", v=1)
    assert modify["dynamodb"]["NewImage"]["bin"] == {"B": "AP8="}  # binary as base64
    assert "NewImage" not in remove["dynamodb"]
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in (insert, modify, remove)]
    assert seqs == sorted(seqs)


def test_a_failing_record_goes_to_the_destination_with_ddb_batch_info(
    ddb, sqs, runtime_factory, record_file, env
):
    dest = Queue.create(sqs, "ddb-ofd")
    table, arn = create_table_with_stream(ddb, "NEW_IMAGE")
    ddb.put_item(TableName=table, Item=item("ok-1"))
    ddb.put_item(TableName=table, Item=item("bad", poison=True))
    ddb.put_item(TableName=table, Item=item("ok-2"))
    cfg = stream_mapping(
        arn,
        record_file,
        BatchSize=1,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": dest.arn}},
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 3, 30)
    [msg] = wait_until(lambda: dest.drain(0.2), 10)
    record = json.loads(msg["Body"])
    assert list(record) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "DDBStreamBatchInfo",
    ]
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["responseContext"]["functionError"] == "Unhandled"
    info = record["DDBStreamBatchInfo"]
    bad = next(r for r in records(record_file) if r["dynamodb"]["Keys"]["id"]["S"] == "bad")
    assert (
        info["startSequenceNumber"]
        == info["endSequenceNumber"]
        == bad["dynamodb"]["SequenceNumber"]
    )
    assert info["batchSize"] == 1 and info["streamArn"] == arn
    assert info["shardId"].startswith("shardId-")
    # DynamoDB's arrival times have whole seconds (Kinesis' have milliseconds).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["approximateArrivalOfFirstRecord"])
    keys = [r["dynamodb"]["Keys"]["id"]["S"] for r in records(record_file)]
    assert keys == ["ok-1", "bad", "bad", "ok-2"]


def test_partial_batch_responses_and_a_restart_resume_after_the_checkpoint(
    ddb, runtime_factory, record_file, env
):
    table, arn = create_table_with_stream(ddb, "NEW_IMAGE")
    for i in range(6):
        ddb.put_item(TableName=table, Item=item(f"k{i}", report_times=1 if i == 2 else 0))
    cfg = stream_mapping(
        arn, record_file, BatchSize=6, FunctionResponseTypes=["ReportBatchItemFailures"]
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 6, 30)
    batches = [
        [r["dynamodb"]["Keys"]["id"]["S"] for r in inv["event"]["Records"]]
        for inv in starts(record_file)
    ]
    assert batches == [[f"k{i}" for i in range(6)], ["k2", "k3", "k4", "k5"]]
    assert rt.stop() == 0
    ddb.put_item(TableName=table, Item=item("k6"))
    rt2 = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt2.metric("lambda_committed_events_total") == 1, 30)
    assert [
        r["dynamodb"]["Keys"]["id"]["S"] for r in starts(record_file)[-1]["event"]["Records"]
    ] == ["k6"]
    assert len(starts(record_file)) == 3
