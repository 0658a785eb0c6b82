"""Example handler: track shipments read from a Kinesis stream, report the ones that fail.

A plain Lambda handler: it runs unchanged on AWS Lambda with a Kinesis trigger that has
FunctionResponseTypes [ReportBatchItemFailures]. Records arrive in order per shard (and per
partition key with a ParallelizationFactor above 1). A shipment without a "weight" is reported
by its sequence number: the runtime retries from that record on (MaximumRetryAttempts), then
sends the batch's description to the on-failure destination and moves on.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

log = logging.getLogger("shipments")


def track(shipment: dict[str, Any]) -> None:
    if not isinstance(shipment.get("weight"), int | float):
        raise ValueError(f"shipment {shipment.get('id')!r} has no weight")
    # Real work goes here: update a tracking table, notify a customer...


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    for record in event["Records"]:
        try:
            track(json.loads(base64.b64decode(record["kinesis"]["data"])))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("shipment rejected: %s", exc)
            # In order: report the first failure; everything after it is retried too.
            return {"batchItemFailures": [{"itemIdentifier": record["kinesis"]["sequenceNumber"]}]}
    return {"batchItemFailures": []}
