"""What users see: the exact event and context, logs with request ids, metrics and health."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.conformance import SQS_RECORD_KEYS, SQS_STANDARD_ATTRIBUTES
from tests.support.aws import Queue, wait_until
from tests.support.config import single_mapping
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration

RECORD_KEYS = SQS_RECORD_KEYS
STANDARD_ATTRIBUTES = SQS_STANDARD_ATTRIBUTES


def test_event_record_and_context_match_lambda(sqs, runtime_factory, record_file):
    q = Queue.create(sqs)
    body = '{"destination": "x", "fail_attempts": 0}'
    [with_attrs] = q.send(
        [body],
        MessageAttributes={
            "Title": {"DataType": "String", "StringValue": "The Whistler"},
            "WeeksOn": {"DataType": "Number", "StringValue": "6"},
            "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
    )
    [plain] = q.send(["plain text body"])
    cfg = single_mapping(q.arn, record_file, BatchSize=2, MaximumBatchingWindowInSeconds=1)
    rt = runtime_factory(cfg).start()
    wait_until(lambda: q.total() == 0, 15)
    invs = read_invocations(record_file)
    records = {r["messageId"]: r for i in invs for r in i.event["Records"]}
    assert list(invs[0].event) == ["Records"]

    rec = records[with_attrs]
    assert list(rec) == RECORD_KEYS
    assert list(rec["attributes"]) == STANDARD_ATTRIBUTES
    assert rec["attributes"]["ApproximateReceiveCount"] == "1"
    assert rec["body"] == body
    assert rec["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{32}", rec["md5OfMessageAttributes"])
    assert rec["messageAttributes"] == {
        "Title": {
            "stringValue": "The Whistler",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "WeeksOn": {
            "stringValue": "6",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Number",
        },
        "Blob": {
            "binaryValue": "AAH/",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert rec["eventSource"] == "aws:sqs"
    assert rec["eventSourceARN"] == q.arn
    assert rec["awsRegion"] == "us-east-1"

    rec2 = records[plain]
    assert list(rec2) == RECORD_KEYS
    assert rec2["messageAttributes"] == {} and rec2["md5OfMessageAttributes"] is None
    assert rec2["body"] == "plain text body"

    ctx = invs[0].context
    assert ctx["function_name"] == "fn"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert ctx["memory_limit_in_mb"] == "128"
    assert ctx["log_group_name"] == "/aws/lambda/fn"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"])
    assert 4000 < ctx["remaining_ms"] <= 5000  # Timeout 5 s
    assert re.fullmatch(r"[0-9a-f-]{36}", ctx["aws_request_id"])
    assert rt.stop() == 0


def test_logs_carry_request_id_and_mapping_uuid(sqs, runtime_factory, record_file):
    q = Queue.create(sqs)
    q.send([{"log": "hello-from-handler"}])
    rt = runtime_factory(single_mapping(q.arn, record_file)).start()
    wait_until(lambda: q.total() == 0, 15)
    [inv] = read_invocations(record_file)
    assert rt.stop() == 0
    lines = [json.loads(x) for x in rt.logs().splitlines() if x.startswith("{")]
    [invocation] = [x for x in lines if x["event"] == "invocation"]
    [handler_line] = [x for x in lines if x["event"] == "hello-from-handler"]
    for line in (invocation, handler_line):
        assert line["aws_request_id"] == inv.request_id
        assert re.fullmatch(r"[0-9a-f-]{36}", line["event_source_mapping_uuid"])
        assert line["function_name"] == "fn"
    assert invocation["outcome"] == "success" and invocation["records"] == 1
    assert handler_line["logger"] == "handler" and handler_line["level"] == "info"


def test_metrics_and_health_endpoints(sqs, runtime_factory, record_file):
    q = Queue.create(sqs)
    q.send([{"n": 1}, {"raise": "x"}])
    cfg = single_mapping(q.arn, record_file, BatchSize=1)
    rt = runtime_factory(cfg, workers=2).start()
    assert rt.get("/healthz") == (200, "ok\n")
    assert rt.get("/readyz") == (200, "2/2 workers ready\n")
    wait_until(lambda: rt.metric("lambda_invocations_total") >= 2, 15)
    names = {name for name, _ in rt.metrics()}
    for required in (
        "lambda_invocations_total",
        "lambda_errors_total",
        "lambda_throttles_total",
        "lambda_duration_seconds_bucket",
        "lambda_concurrent_executions",
        "lambda_polled_events_total",
        "lambda_filtered_out_events_total",
        "lambda_invoked_events_total",
        "lambda_failed_invoke_events_total",
        "lambda_deleted_events_total",
        "esm_batch_records_bucket",
        "esm_inflight_batches",
        "esm_concurrency_limit",
        "esm_workers_alive",
    ):
        assert required in names, required
    labelled = [
        dict(lbl) for name, lbl in rt.metrics() if name == "lambda_invocations_total" and dict(lbl)
    ]
    assert labelled and all(
        set(lbl) == {"function_name", "event_source_mapping_uuid"} for lbl in labelled
    )
    assert rt.metric("lambda_errors_total") == 1
    assert rt.metric("lambda_filtered_out_events_total") == 0
    assert rt.metric("esm_workers_alive") == 2
    assert rt.stop() == 0
