"""Example handler: process a batch of orders, report the ones that fail.

A plain Lambda handler: it runs unchanged on AWS Lambda with an SQS trigger that has
FunctionResponseTypes [ReportBatchItemFailures]. An order without a positive "amount" is
reported as a batch item failure: SQS delivers it again after the visibility timeout and, after
the queue's maxReceiveCount, moves it to the queue's dead-letter queue.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("orders")


def process(order: dict[str, Any]) -> None:
    if not isinstance(order.get("amount"), int | float) or order["amount"] <= 0:
        raise ValueError(f"order {order.get('id')!r} has no positive amount")
    # Real work goes here: write to a database, call a service...


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        try:
            process(json.loads(record["body"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("order rejected: %s", exc)
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
