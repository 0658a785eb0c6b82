"""A tumbling-window handler: sums the ``n`` of Kinesis records per partition key in the
window's state, recording every invocation (window, state in, flags) to RECORD_FILE.

Record data keys: ``n`` (number to add), ``no_state``: the response leaves out ``state`` the
first time a record is seen (the invocation must then fail and be retried), ``big_state``:
the response's state grows past 1 MB (the window must end early).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from tests.handlers.behave import _record


def _seen_before(seq: str) -> bool:
    path = os.environ.get("RECORD_FILE")
    if not path or not os.path.exists(path):
        return False
    with open(path) as f:
        return any(seq in json.loads(line).get("sequences", []) for line in f)


def handler(event: dict[str, Any], context: Any) -> Any:
    values = [
        (r["kinesis"]["sequenceNumber"], r["kinesis"]["partitionKey"],
         json.loads(base64.b64decode(r["kinesis"]["data"])))
        for r in event["Records"]
    ]  # fmt: skip
    first_time = {seq: not _seen_before(seq) for seq, _, _ in values}
    _record(
        "start",
        context,
        sequences=[s for s, _, _ in values],
        keys=[k for _, k, _ in values],
        values=[v for _, _, v in values],
        window=event.get("window"),
        state=event.get("state"),
        final=event.get("isFinalInvokeForWindow"),
        early=event.get("isWindowTerminatedEarly"),
        shard=event.get("shardId"),
        arn=event.get("eventSourceARN"),
        event={"Records": []},
        context={"function_name": context.function_name},
        message_ids=[],
        receive_counts=[],
        bodies=[],
    )
    state = dict(event.get("state") or {})
    for seq, key, value in values:
        if value.get("no_state") and first_time[seq]:
            _record("end", context, outcome="returned")
            return {"batchItemFailures": []}
        state[key] = state.get(key, 0) + int(value.get("n", 0))
        if value.get("big_state") and first_time[seq]:
            state["pad"] = "x" * (1024 * 1024 + 10)
    if not values:
        state.pop("pad", None)
    _record("end", context, outcome="returned")
    return {"state": state, "batchItemFailures": []}
