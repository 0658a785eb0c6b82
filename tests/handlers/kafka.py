"""A Kafka handler scripted by its record values, recording every invocation for the tests.

Each record value is JSON (records that are not JSON are just processed). Keys:
  poison: true           the invocation raises while this record is in the batch
  fail_times: n          the invocation raises the first n times this record is in a batch
  fail_until: epoch s    the invocation raises while this record is in it before that time
  report: true           report this record in batchItemFailures ({"partition", "offset"})
  report_times: n        report it only the first n times it is in a batch
  sleep: seconds         the batch sleeps for the largest value
  nested_times: n        return a response too deeply nested to marshal, the first n times
Records "start" and "end" lines (with partition/offset of every record) to RECORD_FILE.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from typing import Any

from tests.handlers.behave import _record


def _values(event: dict[str, Any]) -> list[tuple[str, int, Any]]:
    out = []
    for part_key, records in event["records"].items():
        for r in records:
            try:
                value = json.loads(base64.b64decode(r["value"])) if "value" in r else None
            except ValueError:
                value = None
            out.append((part_key, r["offset"], value))
    return out


def _previous_attempts() -> Counter[tuple[str, int]]:
    seen: Counter[tuple[str, int]] = Counter()
    path = os.environ.get("RECORD_FILE")
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if rec["phase"] == "start":
                    for p, o in rec["coordinates"]:
                        seen[(p, o)] += 1
    return seen


def handler(event: dict[str, Any], context: Any) -> Any:
    return _handle(event, context, _previous_attempts())


def _handle(event: dict[str, Any], context: Any, attempts: Counter[tuple[str, int]]) -> Any:
    values = _values(event)
    _record(
        "start",
        context,
        coordinates=[[p, o] for p, o, _ in values],
        values=[v for _, _, v in values],
        event=event,
        context={"function_name": context.function_name},
        message_ids=[f"{p}:{o}" for p, o, _ in values],
        receive_counts=[],
        bodies=[],
    )
    outcome = "error"
    failures: list[dict[str, Any]] = []
    try:
        delay = max((v.get("sleep", 0) for _, _, v in values if isinstance(v, dict)), default=0)
        if delay:
            time.sleep(delay)
        for p, o, v in values:
            if not isinstance(v, dict):
                continue
            if v.get("poison"):
                raise Exception(f"poison record {p}:{o}")
            if time.time() < float(v.get("fail_until", 0)):
                raise Exception(f"record {p}:{o} fails until {v['fail_until']}")
            if attempts[(p, o)] < int(v.get("fail_times", 0)):
                raise Exception(f"record {p}:{o} fails (attempt {attempts[(p, o)] + 1})")
            if v.get("report") or attempts[(p, o)] < int(v.get("report_times", 0)):
                failures.append({"itemIdentifier": {"partition": p, "offset": o}})
        outcome = "returned"
        if any(
            isinstance(v, dict) and attempts[(p, o)] < int(v.get("nested_times", 0))
            for p, o, v in values
        ):
            return _deeply_nested()
        return {"batchItemFailures": failures} if failures else None
    finally:
        reported = [
            f"{f['itemIdentifier']['partition']}:{f['itemIdentifier']['offset']}" for f in failures
        ]
        _record("end", context, outcome=outcome, failed=reported, succeeded=[])


def _deeply_nested(depth: int = 100_000) -> Any:
    """A response JSON cannot encode without passing the recursion limit."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def slow_handler(event: dict[str, Any], context: Any) -> Any:
    """20 ms per batch, slower than the consumer fetches; the record file is not read (no
    scripted failures), so long runs stay cheap."""
    time.sleep(0.02)
    return _handle(event, context, Counter())
