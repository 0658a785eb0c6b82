"""SQS standard queues end to end: success deletes, errors return messages, DLQ redrive."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import BEHAVE_ASYNC, single_mapping
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("handler", ["tests.handlers.behave.handler", BEHAVE_ASYNC])
def test_success_deletes_every_message(sqs, runtime_factory, record_file, handler):
    q = Queue.create(sqs)
    ids = q.send({"n": i} for i in range(35))
    rt = runtime_factory(single_mapping(q.arn, record_file, handler=handler)).start()
    wait_until(lambda: q.total() == 0, 30, what="queue to empty")
    invocations = wait_until(
        lambda: (
            (inv := read_invocations(record_file))
            and sum(len(i.message_ids) for i in inv) >= 35
            and inv
        ),
        10,
    )
    seen = Counter(mid for inv in invocations for mid in inv.message_ids)
    assert set(seen) == set(ids)
    assert all(len(i.message_ids) <= 10 for i in invocations)  # default BatchSize for SQS
    uuid = rt.metrics() and next(
        dict(lbl)["event_source_mapping_uuid"]
        for (name, lbl) in rt.metrics()
        if name == "lambda_deleted_events_total"
    )
    wait_until(lambda: rt.metric("lambda_deleted_events_total") == 35, 10)
    assert rt.metric("lambda_polled_events_total", event_source_mapping_uuid=uuid) == 35
    assert rt.metric("lambda_invoked_events_total") == 35
    assert rt.metric("lambda_failed_invoke_events_total") == 0
    assert rt.metric("lambda_invocations_total", function_name="fn") == len(invocations)
    assert rt.metric("lambda_errors_total") == 0
    assert rt.stop() == 0


def test_function_error_leaves_messages_for_redelivery_then_dlq(sqs, runtime_factory, record_file):
    dlq = Queue.create(sqs, "dlq")
    q = Queue.create(sqs, visibility_timeout=2, dlq=dlq, max_receive_count=2)
    [bad] = q.send([{"raise": "boom"}])
    [good] = q.send([{"ok": True}])
    rt = runtime_factory(single_mapping(q.arn, record_file, timeout=2, BatchSize=1)).start()
    moved = wait_until(lambda: dlq.drain(0.2), 30, what="message in the DLQ")
    assert [m["MessageId"] for m in moved] == [bad]
    invocations = read_invocations(record_file)
    attempts = [i for i in invocations if bad in i.message_ids]
    # Two receives (maxReceiveCount=2), the second after the visibility timeout, then the DLQ.
    assert [i.receive_counts[i.message_ids.index(bad)] for i in attempts] == [1, 2]
    assert attempts[1].started - attempts[0].started >= 1.5
    assert any(good in i.message_ids and i.outcome == "returned" for i in invocations)
    assert rt.metric("lambda_errors_total") >= 2
    assert rt.metric("lambda_failed_invoke_events_total") >= 2


def test_run_refuses_unusable_queues_listing_every_problem(sqs, runtime_factory, record_file):
    short = Queue.create(sqs, visibility_timeout=5)
    missing_arn = short.arn.rsplit(":", 1)[0] + ":no-such-queue-7f3a"
    config = {
        "functions": {"fn": {"Handler": "tests.handlers.behave.handler", "Timeout": 10}},
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": short.arn},
            {"FunctionName": "fn", "EventSourceArn": missing_arn},
        ],
    }
    rt = runtime_factory(config).start(wait_ready=False)
    assert rt.proc is not None
    assert rt.proc.wait(60) == 2
    logs = rt.logs()
    assert "2 event source problem(s)" in logs
    assert (
        "eventSourceMappings[0]: Queue visibility timeout: 5 seconds is less than Function "
        "timeout: 10 seconds" in logs
    )
    assert f"eventSourceMappings[1]: queue {missing_arn} does not exist" in logs
    assert rt.worker_pids() == []  # nothing was started
