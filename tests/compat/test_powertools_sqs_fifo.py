"""Powertools' SqsFifoPartialProcessor runs unchanged with Lambda's FIFO semantics."""

from __future__ import annotations

import json

import pytest

from tests.support.aws import Queue, wait_until

pytestmark = pytest.mark.integration


def test_sqs_fifo_partial_processor(sqs, runtime_factory, tmp_path):
    record_file = tmp_path / "done.jsonl"
    q = Queue.create(sqs, "fifo", visibility_timeout=2, fifo=True)
    a1, a2, b1, a3 = q.send_fifo(
        [("a", {"n": 1}), ("a", {"n": 2, "fail_once": True}), ("b", {"n": 1}), ("a", {"n": 3})]
    )
    config = {
        "functions": {
            "fn": {
                "Handler": "tests.compat.powertools_handlers.fifo_handler",
                "Timeout": 2,
                "Environment": {
                    "Variables": {
                        "RECORD_FILE": str(record_file),
                        "POWERTOOLS_TRACE_DISABLED": "true",
                    }
                },
            }
        },
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "EventSourceArn": q.arn,
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
        ],
    }
    rt = runtime_factory(config).start()
    wait_until(lambda: q.total() == 0, 30, what="FIFO queue drained")
    done = [json.loads(x)["messageId"] for x in record_file.read_text().splitlines()]
    # a1 first; after a2's failure the processor short-circuits the rest of the batch (b1, a3
    # included), they all come back, and succeed in order on the next delivery.
    assert done[0] == a1
    assert sorted(done) == sorted([a1, a2, b1, a3]) and len(done) == 4
    order_a = [m for m in done if m in (a1, a2, a3)]
    assert order_a == [a1, a2, a3]
    assert rt.metric("lambda_failed_invoke_events_total") == 3  # a2, b1, a3 reported
    assert rt.stop() == 0
