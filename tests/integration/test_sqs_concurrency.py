"""Concurrency of an SQS mapping: start at 5, scale up on backlog, never above the maximum,
back off on function errors but not on partial batch failures, share the work over workers."""

from __future__ import annotations

import time

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import single_mapping
from tests.support.records import max_overlap, read_invocations

pytestmark = pytest.mark.integration

FAST_SCALING = {"ESM_SCALING_INTERVAL_SECONDS": "0.2", "ESM_SCALING_STEP": "5"}


def test_maximum_concurrency_caps_invocations_across_workers(sqs, runtime_factory, record_file):
    q = Queue.create(sqs, visibility_timeout=10)
    q.send({"n": i, "sleep": 0.3} for i in range(36))
    cfg = single_mapping(
        q.arn, record_file, timeout=5, BatchSize=1, ScalingConfig={"MaximumConcurrency": 3}
    )
    rt = runtime_factory(cfg, workers=2, env=FAST_SCALING).start()
    wait_until(lambda: q.total() == 0, 40, what="queue drained")
    invs = read_invocations(record_file)
    assert max_overlap(invs) == 3
    assert len({i.pid for i in invs}) == 2  # both workers took part
    assert rt.stop() == 0


def test_scales_up_from_five_while_messages_are_available(sqs, runtime_factory, record_file):
    q = Queue.create(sqs, visibility_timeout=10)
    q.send({"n": i, "sleep": 0.5} for i in range(300))
    cfg = single_mapping(
        q.arn, record_file, timeout=5, BatchSize=1, ScalingConfig={"MaximumConcurrency": 25}
    )
    rt = runtime_factory(cfg, env=FAST_SCALING).start()
    assert rt.metric("esm_concurrency_limit") == 5
    wait_until(lambda: rt.metric("esm_concurrency_limit") == 25, 10, what="limit at maximum")
    wait_until(lambda: q.total() == 0, 60, what="queue drained")
    invs = read_invocations(record_file)
    first = sorted(invs, key=lambda i: i.started)
    t0 = first[0].started
    early = [i for i in invs if i.started < t0 + 0.15]
    assert max_overlap(early) <= 5
    assert 20 <= max_overlap(invs) <= 25
    # Quiet again: the limit steps back down to the initial 5.
    wait_until(lambda: rt.metric("esm_concurrency_limit") == 5, 15, what="limit back to 5")
    assert rt.stop() == 0


def test_function_errors_back_off_only_without_partial_batch_responses(
    sqs, runtime_factory, record_file
):
    """Lambda backs SQS polling off on function errors, except when ReportBatchItemFailures is
    on ("Lambda doesn't scale down message polling when function invocations fail", esm-spec
    §2.1); partial batch failures never count as errors."""
    queues = {
        "00000000-0000-4000-8000-000000000001": (
            Queue.create(sqs, "errors", visibility_timeout=2),
            [],
        ),
        "00000000-0000-4000-8000-000000000002": (
            Queue.create(sqs, "errors-rbif", visibility_timeout=2),
            ["ReportBatchItemFailures"],
        ),
        "00000000-0000-4000-8000-000000000003": (
            Queue.create(sqs, "partial", visibility_timeout=2),
            ["ReportBatchItemFailures"],
        ),
    }
    errors, errors_rbif, partial = queues
    # Each batch takes 0.1 s, so the backlog lasts long enough for several scaling intervals.
    queues[errors][0].send({"raise": "boom", "sleep": 0.1} for _ in range(400))
    queues[errors_rbif][0].send({"raise": "boom", "sleep": 0.1} for _ in range(400))
    queues[partial][0].send({"report": True, "sleep": 0.1} for _ in range(400))
    config = {
        "functions": {
            "fn": {
                "Handler": "tests.handlers.behave.handler",
                "Timeout": 2,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
            }
        },
        "eventSourceMappings": [
            {
                "FunctionName": "fn",
                "EventSourceArn": q.arn,
                "UUID": uuid,
                "FunctionResponseTypes": types,
                "ScalingConfig": {"MaximumConcurrency": 20},
            }
            for uuid, (q, types) in queues.items()
        ],
    }
    rt = runtime_factory(config, env=FAST_SCALING).start()

    def limit(uuid: str) -> float:
        return rt.metric("esm_concurrency_limit", event_source_mapping_uuid=uuid)

    wait_until(lambda: limit(errors) == 1, 10, what="error mapping backed off to 1")
    wait_until(
        lambda: limit(errors_rbif) == 20, 10, what="erroring mapping with partial responses at max"
    )
    wait_until(lambda: limit(partial) == 20, 10, what="partial-failure mapping at its maximum")
    assert rt.metric("lambda_errors_total", event_source_mapping_uuid=partial) == 0
    assert rt.metric("lambda_errors_total", event_source_mapping_uuid=errors) > 0
    assert rt.metric("lambda_errors_total", event_source_mapping_uuid=errors_rbif) > 0
    rt.stop()


def test_reserved_concurrency_limits_and_counts_throttles(sqs, runtime_factory, record_file):
    q1 = Queue.create(sqs, visibility_timeout=10)
    q2 = Queue.create(sqs, visibility_timeout=10)
    for q in (q1, q2):
        q.send({"sleep": 0.2} for _ in range(10))
    config = {
        "functions": {
            "fn": {
                "Handler": "tests.handlers.behave.handler",
                "Timeout": 5,
                "ReservedConcurrentExecutions": 2,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
            }
        },
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": q.arn, "BatchSize": 1} for q in (q1, q2)
        ],
    }
    rt = runtime_factory(config, workers=1).start()
    wait_until(lambda: q1.total() == 0 and q2.total() == 0, 30, what="queues drained")
    time.sleep(0.3)
    assert max_overlap(read_invocations(record_file)) == 2
    assert rt.metric("lambda_throttles_total") > 0
    assert rt.stop() == 0
