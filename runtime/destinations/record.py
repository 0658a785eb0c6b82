"""Lambda's on-failure invocation record, built field for field and in AWS's key order.

Users parse these records to find and replay what was dropped, often with code written against
real Lambda, so the envelope is not "similar": key names, key order, nesting and the timestamp
format are AWS's (spec §6.1; tests/conformance/onfailure_records.json holds the AWS-recorded
examples the unit tests compare against).

``responseContext`` has three AWS-recorded shapes, and which one applies follows from the
condition, not from whether the function raised:

* ``RetryAttemptsExhausted``: an object. ``functionError`` is ``"Unhandled"`` when the last
  invocation raised, and JSON null when the function returned normally but reported the batch
  failed through ``batchItemFailures`` (recorded for Kinesis and DynamoDB partial batch
  responses).
* ``RecordAgeExceeded``: the key is absent altogether, even when invocations happened before
  the records expired (recorded for Kinesis).
* ``MaximumPayloadSizeExceeded``: JSON null, as the function was never invoked (Kafka doc).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

RETRY_ATTEMPTS_EXHAUSTED: Final = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED: Final = "RecordAgeExceeded"
MAXIMUM_PAYLOAD_SIZE_EXCEEDED: Final = "MaximumPayloadSizeExceeded"
CONDITIONS: Final = frozenset(
    {RETRY_ATTEMPTS_EXHAUSTED, RECORD_AGE_EXCEEDED, MAXIMUM_PAYLOAD_SIZE_EXCEEDED}
)

# The key of each source's batch-info block.
KINESIS_BATCH_INFO: Final = "KinesisBatchInfo"
DDB_STREAM_BATCH_INFO: Final = "DDBStreamBatchInfo"
KAFKA_BATCH_INFO: Final = "KafkaBatchInfo"

# What Lambda writes for an invocation that raised (or timed out); partial batch failures
# carry None instead.
UNHANDLED: Final = "Unhandled"

RECORD_VERSION: Final = "1.0"
_EXECUTED_VERSION: Final = "$LATEST"


def _utc(dt: datetime.datetime) -> datetime.datetime:
    # A naive datetime would be read as local time by astimezone(), silently shifting every
    # timestamp by the host's offset; refuse it instead.
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got naive {dt.isoformat()}")
    return dt.astimezone(datetime.UTC)


def iso_millis(dt: datetime.datetime) -> str:
    """``2019-11-14T00:38:06.021Z``: UTC, milliseconds (sub-millisecond digits cut off), "Z".

    The format of the record's ``timestamp``, Kinesis ``approximateArrivalOf*Record`` and Kafka
    ``first/lastRecordTimestamp``. Python's own isoformat() would print ``+00:00`` and drop
    the fraction when it is zero; AWS always prints three digits and ``Z``.
    """
    return _utc(dt).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds(dt: datetime.datetime) -> str:
    """``2019-11-14T00:13:19Z``: UTC, whole seconds; DynamoDB's ``approximateArrival*`` format.

    DynamoDB stream records carry ``ApproximateCreationDateTime`` in whole seconds, and AWS's
    ``DDBStreamBatchInfo`` prints them without a fraction (recorded; unlike Kinesis).
    """
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    approximate_invoke_count: int,
    function_error: str | None,
    batch_info_key: str,
    batch_info: Mapping[str, Any],
    timestamp: datetime.datetime,
) -> dict[str, Any]:
    """The record Lambda sends to an on-failure destination (SQS body / SNS message).

    ``function_error`` is the last invocation's ``functionError`` (:data:`UNHANDLED` when it
    raised, None when it returned a partial batch failure); it is ignored for the two
    conditions whose record has no response (see the module docstring). ``batch_info`` is
    copied in its own key order under ``batch_info_key``. The S3 form adds ``payload``, which
    :mod:`runtime.destinations.sender` does.
    """
    if condition not in CONDITIONS:
        raise ValueError(
            f"unknown on-failure condition {condition!r}; expected one of {sorted(CONDITIONS)}"
        )
    if approximate_invoke_count < 0:
        raise ValueError(f"approximate_invoke_count must be >= 0, got {approximate_invoke_count}")
    record: dict[str, Any] = {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": approximate_invoke_count,
        }
    }
    if condition == MAXIMUM_PAYLOAD_SIZE_EXCEEDED:
        record["responseContext"] = None
    elif condition == RETRY_ATTEMPTS_EXHAUSTED:
        record["responseContext"] = {
            "statusCode": 200,
            "executedVersion": _EXECUTED_VERSION,
            "functionError": function_error,
        }
    # RECORD_AGE_EXCEEDED: AWS leaves responseContext out.
    record["version"] = RECORD_VERSION
    record["timestamp"] = iso_millis(timestamp)
    record[batch_info_key] = dict(batch_info)
    return record
