"""Reports the first record of any source's batch as failed (for ``invoke`` tests); raises
when a record's data says "raise"."""

from __future__ import annotations

import base64
from typing import Any


def _first(event: dict[str, Any]) -> tuple[Any, list[str]]:
    if "Records" in event:
        records = event["Records"]
        first = records[0]
        if "messageId" in first:
            return first["messageId"], [r["body"] for r in records]
        if "kinesis" in first:
            data = [base64.b64decode(r["kinesis"]["data"]).decode() for r in records]
            return first["kinesis"]["sequenceNumber"], data
        return first["dynamodb"]["SequenceNumber"], [str(r["dynamodb"]) for r in records]
    records = [r for part in event["records"].values() for r in part]
    first = records[0]
    data = [base64.b64decode(r.get("value", "")).decode() for r in records]
    return {"partition": f"{first['topic']}-{first['partition']}", "offset": first["offset"]}, data


def handler(event: dict[str, Any], context: Any) -> Any:
    ident, data = _first(event)
    if any("raise" in d for d in data):
        raise ValueError("asked to raise")
    return {"batchItemFailures": [{"itemIdentifier": ident}]}
