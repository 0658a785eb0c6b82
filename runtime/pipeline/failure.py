"""The failure policy of sources that retry in place (Kafka, Kinesis, DynamoDB Streams).

What happens to a batch whose invocation failed (esm-spec §1.2, §2.5, §5.2):
- ``BisectBatchOnFunctionError``: on a function error, split the batch in two and retry each
  half in order; splitting does not consume the retry quota. With a partial response
  (ReportBatchItemFailures) only the records from the first failure on are retried.
- ``MaximumRetryAttempts`` (-1 = until the records expire): once exhausted, the batch is given
  up with condition ``RetryAttemptsExhausted``.
- ``MaximumRecordAgeInSeconds`` (-1 = never): records older than this are not invoked again;
  they are given up with condition ``RecordAgeExceeded``.
- A record too big for any invocation alone is given up with ``MaximumPayloadSizeExceeded``.
- Kafka: infinite retries with an on-failure destination are capped at 10 (Lambda's rule).
Retries wait with exponential backoff; the lane stays held meanwhile, so nothing later in it
runs first. Pure decisions: the caller does the waiting, invoking and acknowledging.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from runtime.pipeline.records import Record

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
MAXIMUM_PAYLOAD_SIZE_EXCEEDED = "MaximumPayloadSizeExceeded"

KAFKA_RETRY_CAP_WITH_DESTINATION = 10


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    maximum_retry_attempts: int = -1  # -1: infinite
    maximum_record_age_seconds: int = -1  # -1: infinite
    bisect_on_function_error: bool = False
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    def backoff(self, retries_done: int) -> float:
        """Wait before the retry that follows ``retries_done`` earlier retries."""
        # The exponent is capped: 2**1024 does not fit a float, and 2**32 is already beyond
        # any sensible ceiling.
        return float(
            min(self.backoff_max_seconds, self.backoff_seconds * 2 ** min(retries_done, 32))
        )

    def exhausted(self, retries_done: int) -> bool:
        return 0 <= self.maximum_retry_attempts <= retries_done


@dataclass(slots=True)
class Attempt:
    """Records to (re)invoke together, and their history."""

    records: list[Record]
    invocations: int = 0  # approximateInvokeCount so far
    retries: int = 0  # retries consumed (bisection does not consume)
    function_error: bool = False  # the last failure was a function error (not a partial one)


def split_expired(
    records: list[Record], policy: RetryPolicy, now_ms: float | None = None
) -> tuple[list[Record], list[Record]]:
    """(expired, live): the leading records older than MaximumRecordAgeInSeconds.

    Only a leading run expires: a record is given up only when everything before it in the
    batch is, so acknowledgements stay in order even when source timestamps are not (Kafka
    CreateTime is set by producers). A record with an unknown time (0) never expires.
    """
    if policy.maximum_record_age_seconds < 0:
        return [], records
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    limit = policy.maximum_record_age_seconds * 1000
    n = 0
    for r in records:
        if not r.timestamp_ms or now_ms - r.timestamp_ms <= limit:
            break
        n += 1
    return records[:n], records[n:]


@dataclass(frozen=True, slots=True)
class Retry:
    parts: list[Attempt]  # in order, first runs first
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    records: list[Record]
    condition: str


def after_failure(
    attempt: Attempt, failed: list[Record], *, function_error: bool, policy: RetryPolicy
) -> Retry | GiveUp:
    """What to do with ``failed`` (the attempt's records from the first failure on)."""
    if function_error and policy.bisect_on_function_error and len(failed) > 1:
        half = len(failed) // 2
        return Retry(
            parts=[
                Attempt(failed[:half], attempt.invocations, attempt.retries, function_error),
                Attempt(failed[half:], attempt.invocations, attempt.retries, function_error),
            ],
            delay=0.0,
        )
    if policy.exhausted(attempt.retries):
        return GiveUp(failed, RETRY_ATTEMPTS_EXHAUSTED)
    return Retry(
        parts=[Attempt(failed, attempt.invocations, attempt.retries + 1, function_error)],
        delay=policy.backoff(attempt.retries),
    )
