"""aws-lambda-powertools batch utilities run unchanged, with Lambda's partial-failure results."""

from __future__ import annotations

import json
import signal

import pytest

from tests.support.aws import Queue, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "handler",
    ["tests.compat.powertools_handlers.handler", "tests.compat.powertools_handlers.async_handler"],
    ids=["BatchProcessor", "AsyncBatchProcessor"],
)
def test_powertools_partial_batch_failures(sqs, runtime_factory, tmp_path, handler):
    record_file = tmp_path / "seen.jsonl"
    mixed = Queue.create(sqs, "mixed", visibility_timeout=30)
    all_bad = Queue.create(sqs, "allbad", visibility_timeout=30)
    mixed_ids = mixed.send([{"n": 0}, {"n": 1, "fail": True}, {"n": 2}])
    bad_ids = all_bad.send([{"fail": True}, {"fail": True}])
    config = {
        "functions": {
            "fn": {
                "Handler": handler,
                "Timeout": 10,
                "Environment": {
                    "Variables": {
                        "RECORD_FILE": str(record_file),
                        "POWERTOOLS_TRACE_DISABLED": "true",
                        "POWERTOOLS_SERVICE_NAME": "compat",
                    }
                },
            }
        },
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "EventSourceArn": q.arn,
                "BatchSize": 10,
                "MaximumBatchingWindowInSeconds": 1,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
            for q in (mixed, all_bad)
        ],
    }
    rt = runtime_factory(config).start()

    def seen() -> set[str]:
        if not record_file.exists():
            return set()
        return {json.loads(x)["messageId"] for x in record_file.read_text().splitlines()}

    wait_until(lambda: seen() >= set(mixed_ids) | set(bad_ids), 20, what="every record handled")
    wait_until(lambda: rt.metric("lambda_deleted_events_total") == 2, 10)
    assert rt.stop(signal.SIGTERM) == 0
    # Only the failed record of the mixed batch returns to its queue ...
    assert mixed.total() == 1
    # ... and when every record fails, Powertools raises: the whole batch fails, as on Lambda.
    assert all_bad.total() == 2
    log = rt.logs()
    assert "BatchProcessingError" in log and "All records failed processing" in log
