"""A Kinesis / DynamoDB Streams handler scripted by its records, recording every invocation.

Kinesis record data (base64 JSON) or the DynamoDB NewImage attribute ``body`` (a JSON string)
steers the batch. Keys (records without them are just processed):
  poison: true           the invocation raises while this record is in the batch
  fail_times: n          the invocation raises the first n times this record is in a batch
  fail_until: epoch s    the invocation raises while this record is in it before that time
  report: true           report this record's sequence number in batchItemFailures
  report_times: n        report it only the first n times it is in a batch
  sleep: seconds         the batch sleeps for the largest value
Records "start" and "end" lines (shard, sequence number, partition key of every record) to
RECORD_FILE.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from typing import Any

from tests.handlers.behave import _record


def _records(event: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(shard, sequence number, partition key, scripted value) per record."""
    out = []
    for r in event["Records"]:
        if "kinesis" in r:
            shard = r["eventID"].split(":")[0]
            seq = r["kinesis"]["sequenceNumber"]
            key = r["kinesis"]["partitionKey"]
            try:
                value = json.loads(base64.b64decode(r["kinesis"]["data"]))
            except ValueError:
                value = None
        else:
            ddb = r["dynamodb"]
            shard = ""
            seq = ddb["SequenceNumber"]
            key = json.dumps(ddb.get("Keys", {}), sort_keys=True)
            body = ddb.get("NewImage", {}).get("body", {}).get("S")
            try:
                value = json.loads(body) if body else None
            except ValueError:
                value = None
        out.append((shard, seq, key, value))
    return out


def _previous_attempts() -> Counter[str]:
    seen: Counter[str] = Counter()
    path = os.environ.get("RECORD_FILE")
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if rec["phase"] == "start":
                    seen.update(rec["sequences"])
    return seen


def handler(event: dict[str, Any], context: Any) -> Any:
    return _handle(event, context, _previous_attempts())


def _handle(event: dict[str, Any], context: Any, attempts: Counter[str]) -> Any:
    records = _records(event)
    _record(
        "start",
        context,
        shards=[s for s, _, _, _ in records],
        sequences=[q for _, q, _, _ in records],
        keys=[k for _, _, k, _ in records],
        values=[v for _, _, _, v in records],
        event=event,
        context={"function_name": context.function_name},
        message_ids=[q for _, q, _, _ in records],
        receive_counts=[],
        bodies=[],
    )
    outcome = "error"
    failures: list[dict[str, Any]] = []
    try:
        delay = max((v.get("sleep", 0) for *_, v in records if isinstance(v, dict)), default=0)
        if delay:
            time.sleep(delay)
        for _, seq, _, v in records:
            if not isinstance(v, dict):
                continue
            if v.get("poison"):
                raise Exception(f"poison record {seq}")
            if time.time() < float(v.get("fail_until", 0)):
                raise Exception(f"record {seq} fails until {v['fail_until']}")
            if attempts[seq] < int(v.get("fail_times", 0)):
                raise Exception(f"record {seq} fails (attempt {attempts[seq] + 1})")
            if v.get("report") or attempts[seq] < int(v.get("report_times", 0)):
                failures.append({"itemIdentifier": seq})
        outcome = "returned"
        return {"batchItemFailures": failures} if failures else None
    finally:
        _record(
            "end",
            context,
            outcome=outcome,
            failed=[f["itemIdentifier"] for f in failures],
            succeeded=[],
        )


def slow_handler(event: dict[str, Any], context: Any) -> Any:
    """20 ms per batch; the record file is not read (no scripted failures)."""
    time.sleep(0.02)
    return _handle(event, context, Counter())


def noop_handler(event: dict[str, Any], context: Any) -> Any:
    return None
