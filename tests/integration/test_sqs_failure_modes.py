"""Handlers that time out, hang, kill their process or return garbage: each has a defined outcome.

In every case the batch fails as on Lambda, nothing is deleted, the message comes back after
its visibility timeout and, after maxReceiveCount receives, lands in the queue's own DLQ.
"""

from __future__ import annotations

import json

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import BEHAVE, BEHAVE_ASYNC, single_mapping
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration


def _invocation_lines(rt) -> list[dict]:
    out = []
    for line in rt.logs().splitlines():
        if '"invocation"' in line:
            out.append(json.loads(line))
    return out


def _run_to_dlq(sqs, runtime_factory, record_file, body, handler, **function):
    dlq = Queue.create(sqs, "dlq")
    q = Queue.create(sqs, visibility_timeout=2, dlq=dlq, max_receive_count=2)
    [mid] = q.send([body])
    cfg = single_mapping(q.arn, record_file, handler=handler, timeout=1, BatchSize=1, **function)
    # Short polls: a recycled or crashed worker's long poll would stay open on the server and
    # could take the message as it reappears, spending a receive (see operations.md).
    rt = runtime_factory(cfg, env={"ESM_SQS_WAIT_TIME_SECONDS": "0"}).start()
    moved = wait_until(lambda: dlq.drain(0.2), 40, what="message in the DLQ")
    assert [m["MessageId"] for m in moved] == [mid]
    assert q.total() == 0
    return rt, mid


def test_sync_handler_past_timeout_fails_batch_and_recycles_worker(
    sqs, runtime_factory, record_file
):
    rt, _ = _run_to_dlq(sqs, runtime_factory, record_file, {"hang": True}, BEHAVE)
    lines = [x for x in _invocation_lines(rt) if x.get("error_type")]
    assert lines and all(x["error_type"] == "Sandbox.Timedout" for x in lines)
    assert "Task timed out after 1.00 seconds" in lines[0]["error_message"]
    # The stuck thread cannot be stopped: its worker was replaced, at once (no backoff).
    assert rt.metric("esm_worker_restarts_total", reason="recycle") >= 1
    invs = read_invocations(record_file)
    assert len({i.pid for i in invs}) == 2  # the retry ran in the replacement worker
    assert all(i.ended is None for i in invs)  # hung handlers never returned
    assert rt.stop() == 0


def test_async_handler_past_timeout_is_cancelled_without_recycling(
    sqs, runtime_factory, record_file
):
    rt, _ = _run_to_dlq(sqs, runtime_factory, record_file, {"sleep": 5}, BEHAVE_ASYNC)
    invs = read_invocations(record_file)
    assert len(invs) == 2 and all(i.outcome == "cancelled" for i in invs)
    assert len({i.pid for i in invs}) == 1
    assert rt.metric("esm_worker_restarts_total") == 0
    assert rt.metric("lambda_errors_total") == 2
    lines = [x for x in _invocation_lines(rt) if x.get("error_type")]
    assert [x["error_type"] for x in lines] == ["Sandbox.Timedout"] * 2


def test_async_handler_ignoring_cancellation_recycles_worker(sqs, runtime_factory, record_file):
    rt, _ = _run_to_dlq(sqs, runtime_factory, record_file, {"hang": True}, BEHAVE_ASYNC)
    assert rt.metric("esm_worker_restarts_total", reason="recycle") >= 1


def test_handler_that_kills_its_process(sqs, runtime_factory, record_file):
    rt, _ = _run_to_dlq(sqs, runtime_factory, record_file, {"exit": 3}, BEHAVE)
    invs = read_invocations(record_file)
    assert len(invs) == 2 and len({i.pid for i in invs}) == 2
    assert rt.metric("esm_worker_restarts_total", reason="crash") >= 2
    wait_until(lambda: rt.get("/readyz")[0] == 200, 10, what="runtime ready again")


def test_handler_returning_unserialisable_value(sqs, runtime_factory, record_file):
    rt, _ = _run_to_dlq(sqs, runtime_factory, record_file, {"garbage": True}, BEHAVE)
    lines = [x for x in _invocation_lines(rt) if x.get("error_type")]
    assert [x["error_type"] for x in lines] == ["Runtime.MarshalError"] * 2
    assert "not JSON serializable" in lines[0]["error_message"]
    assert rt.metric("lambda_errors_total") == 2
    assert rt.metric("lambda_deleted_events_total") == 0
