"""ReportBatchItemFailures on SQS: every success and failure rule of esm-spec §2.1.

One runtime serves one queue per rule, so the whole table runs in a few seconds. Each queue
gets three messages that land in one batch (BatchSize 3 with a 1 s window); the first message
tells the handler what to return. After the first invocation of every queue the runtime is
stopped and the messages still in each queue (visible or not) are exactly the failed ones.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import BEHAVE
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration

RBIF = ["ReportBatchItemFailures"]

# name: (first message's body, FunctionResponseTypes, messages expected to stay in the queue)
CASES: dict[str, tuple[dict[str, Any], list[str], str]] = {
    "null response": ({"return": None}, RBIF, "none"),
    "empty object": ({"return": {}}, RBIF, "none"),
    "null list": ({"return": {"batchItemFailures": None}}, RBIF, "none"),
    "empty list": ({"return": {"batchItemFailures": []}}, RBIF, "none"),
    "empty array": ({"return": []}, RBIF, "none"),
    "other keys only": ({"return": {"status": "ok"}}, RBIF, "none"),
    "unknown identifier": (
        {"return": {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}},
        RBIF,
        "all",
    ),
    "empty identifier": ({"return": {"batchItemFailures": [{"itemIdentifier": ""}]}}, RBIF, "all"),
    "null identifier": (
        {"return": {"batchItemFailures": [{"itemIdentifier": None}]}},
        RBIF,
        "all",
    ),
    "bad key name": ({"return": {"batchItemFailures": [{"foo": "notvalid"}]}}, RBIF, "all"),
    "list not object": ({"return": ["a"]}, RBIF, "all"),
    "string response": ({"return": "ok"}, RBIF, "all"),
    "batchItemFailures not a list": ({"return": {"batchItemFailures": "x"}}, RBIF, "all"),
    "valid partial": ({"n": 0}, RBIF, "second"),
    "partial ignored without the setting": ({"n": 0}, [], "none"),
    "function error": ({"raise": "boom"}, RBIF, "all"),
}


def test_batch_item_failure_rules(sqs, runtime_factory, record_file):
    queues = {name: Queue.create(sqs, "rbif", visibility_timeout=30) for name in CASES}
    sent: dict[str, list[str]] = {}
    for name, (first, _, _) in CASES.items():
        sent[name] = queues[name].send([first, {"report": True}, {"n": 2}])
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
                "EventSourceArn": queues[name].arn,
                "BatchSize": 3,
                "MaximumBatchingWindowInSeconds": 1,
                "FunctionResponseTypes": types,
            }
            for name, (_, types, _) in CASES.items()
        ],
    }
    rt = runtime_factory(config).start()

    def finished_per_queue() -> dict[str, int]:
        done: dict[str, int] = {}
        for inv in read_invocations(record_file):
            if inv.ended is not None:
                arn = inv.event["Records"][0]["eventSourceARN"]
                done[arn] = done.get(arn, 0) + 1
        return done

    wait_until(
        lambda: all(finished_per_queue().get(q.arn) for q in queues.values()),
        30,
        what="one finished invocation per queue",
    )
    # FailedInvokeEventCount counts whole failed batches and reported items alike.
    failed_expected = sum(3 for _, _, s in CASES.values() if s == "all") + 1
    wait_until(lambda: rt.metric("lambda_failed_invoke_events_total") == failed_expected, 5)
    deleted_expected = sum({"none": 3, "all": 0, "second": 2}[s] for _, _, s in CASES.values())
    wait_until(lambda: rt.metric("lambda_deleted_events_total") == deleted_expected, 5)
    assert rt.stop() == 0

    for name, (_, _, stays) in CASES.items():
        invs = [
            i
            for i in read_invocations(record_file)
            if i.event["Records"][0]["eventSourceARN"] == queues[name].arn
        ]
        assert len(invs) == 1, f"{name}: expected one invocation, got {len(invs)}"
        assert sorted(invs[0].message_ids) == sorted(sent[name]), name
        expected = {"none": 0, "all": 3, "second": 1}[stays]
        assert queues[name].total() == expected, f"{name}: {queues[name].counts()}"

    # The valid partial response returned exactly the reported (second) message: make it
    # visible again through the receipt handle the handler saw, and receive it.
    partial = queues["valid partial"]
    [inv] = [
        i
        for i in read_invocations(record_file)
        if i.event["Records"][0]["eventSourceARN"] == partial.arn
    ]
    reported = next(r for r in inv.event["Records"] if r["messageId"] == sent["valid partial"][1])
    # Long polls the stopped runtime had open are still being served by the emulator for up
    # to their 1 s wait: one of them would take the messages made visible below.
    time.sleep(1.5)
    sqs.change_message_visibility(
        QueueUrl=partial.url, ReceiptHandle=reported["receiptHandle"], VisibilityTimeout=0
    )
    back = wait_until(lambda: partial.drain(0.2), 5)
    assert [m["MessageId"] for m in back] == [sent["valid partial"][1]]
