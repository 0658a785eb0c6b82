"""What a batch's result means: success, failure, or failure of some items.

The rules are esm-spec §2.1/§2.4/§2.5, the same for every source except for the shape of an
item identifier, which each source supplies as a parser (SQS: the messageId string; streams:
the sequence number string; Kafka: ``{"partition": "topic-N", "offset": n}``).

With ReportBatchItemFailures:
- success: a null response, an empty JSON array (AWS-recorded as ``empty_list_success`` for
  Kinesis and DynamoDB Streams), an object without ``batchItemFailures`` or with it null or
  empty;
- complete failure: a response that is not a JSON object (nor null, nor ``[]``),
  ``batchItemFailures`` that is not a list, an item without ``itemIdentifier`` (a bad key
  name), a null or empty identifier, or an identifier that names no record of the batch;
- otherwise: exactly the named items failed.
Without it, whatever the function returns is a success.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Any

IdentifierParser = Callable[[Any], Hashable | None]


class OutcomeKind(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    kind: OutcomeKind
    failed_ids: frozenset[Hashable] = frozenset()
    reason: str | None = None  # why the batch failed as a whole (logged)


SUCCESS = BatchOutcome(OutcomeKind.SUCCESS)


def string_identifier(value: Any) -> Hashable | None:
    """SQS messageId / stream sequence number: a non-empty string."""
    return value if isinstance(value, str) and value else None


def parse_batch_response(
    response: Any,
    batch_ids: set[Hashable] | frozenset[Hashable],
    parse_identifier: IdentifierParser,
) -> BatchOutcome:
    """Interpret a handler's (JSON-decoded) response under ReportBatchItemFailures."""
    if response is None or response == []:
        return SUCCESS
    if not isinstance(response, dict):
        return BatchOutcome(
            OutcomeKind.FAILURE,
            reason=f"response is a JSON {_json_type(response)}, not an object",
        )
    items = response.get("batchItemFailures")
    if items is None:
        return SUCCESS
    if not isinstance(items, list):
        return BatchOutcome(
            OutcomeKind.FAILURE,
            reason=f"batchItemFailures is a JSON {_json_type(items)}, not a list",
        )
    if not items:
        return SUCCESS
    failed: set[Hashable] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            return BatchOutcome(
                OutcomeKind.FAILURE,
                reason=f"batchItemFailures[{i}] has no itemIdentifier",
            )
        ident = parse_identifier(item["itemIdentifier"])
        if ident is None:
            return BatchOutcome(
                OutcomeKind.FAILURE,
                reason=f"batchItemFailures[{i}].itemIdentifier is null, empty or malformed: "
                f"{item['itemIdentifier']!r:.100}",
            )
        if ident not in batch_ids:
            return BatchOutcome(
                OutcomeKind.FAILURE,
                reason=f"batchItemFailures[{i}].itemIdentifier {ident!r:.100} is not in the batch",
            )
        failed.add(ident)
    return BatchOutcome(OutcomeKind.PARTIAL, failed_ids=frozenset(failed))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
