"""The retry-in-place failure policy (runtime.pipeline.failure): pure decisions, no I/O."""

from __future__ import annotations

import pytest

from runtime.pipeline.failure import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    Attempt,
    GiveUp,
    Retry,
    RetryPolicy,
    after_failure,
    split_expired,
)
from runtime.pipeline.records import Record


def _records(n: int, ts: float = 0.0) -> list[Record]:
    return [
        Record(
            payload={"offset": i}, size=10, item_id=("t-0", i), ack=i, lane="t-0", timestamp_ms=ts
        )
        for i in range(n)
    ]


def _offsets(records: list[Record]) -> list[int]:
    return [r.payload["offset"] for r in records]


# ------------------------------------------------------------------ backoff / exhausted


def test_backoff_doubles_from_the_base() -> None:
    p = RetryPolicy(backoff_seconds=0.5, backoff_max_seconds=30.0)
    assert [p.backoff(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert p.backoff(7) == 30.0
    assert p.backoff(60) == 30.0
    assert isinstance(p.backoff(0), float)


def test_backoff_cap_and_zero_base() -> None:
    assert RetryPolicy(backoff_seconds=3.0, backoff_max_seconds=5.0).backoff(0) == 3.0
    assert RetryPolicy(backoff_seconds=3.0, backoff_max_seconds=5.0).backoff(1) == 5.0
    assert RetryPolicy(backoff_seconds=0.0).backoff(0) == 0.0
    assert RetryPolicy(backoff_seconds=0.0).backoff(500) == 0.0
    assert RetryPolicy(backoff_seconds=10.0, backoff_max_seconds=1.0).backoff(0) == 1.0


@pytest.mark.parametrize("base", [0.5, 0.0])
def test_backoff_stays_capped_for_any_retry_count(base: float) -> None:
    p = RetryPolicy(backoff_seconds=base, backoff_max_seconds=30.0)
    assert p.backoff(1024) == min(30.0, base * 1e300)


def test_exhausted() -> None:
    infinite = RetryPolicy(maximum_retry_attempts=-1)
    assert [infinite.exhausted(n) for n in (0, 1, 10_000, 10**9)] == [False] * 4
    zero = RetryPolicy(maximum_retry_attempts=0)
    assert [zero.exhausted(n) for n in (0, 1, 5)] == [True, True, True]
    three = RetryPolicy(maximum_retry_attempts=3)
    assert [three.exhausted(n) for n in range(6)] == [False, False, False, True, True, True]


def test_defaults() -> None:
    p = RetryPolicy()
    assert (p.maximum_retry_attempts, p.maximum_record_age_seconds) == (-1, -1)
    assert p.bisect_on_function_error is False
    assert (p.backoff_seconds, p.backoff_max_seconds) == (0.5, 30.0)


# ------------------------------------------------------------------ split_expired

NOW = 10_000_000.0


def _aged(ages_ms: list[float]) -> list[Record]:
    recs = _records(len(ages_ms))
    for r, age in zip(recs, ages_ms, strict=True):
        r.timestamp_ms = NOW - age
    return recs


def test_split_expired_around_the_limit() -> None:
    policy = RetryPolicy(maximum_record_age_seconds=60)
    recs = _aged([60_001, 90_000, 60_000, 120_000, 0, -5_000])
    expired, live = split_expired(recs, policy, now_ms=NOW)
    # Only the leading run expires (60_000 is exactly at the limit: not expired), so
    # acknowledgements stay in order; the later old record (120_000) is invoked.
    assert _offsets(expired) == [0, 1]
    assert _offsets(live) == [2, 3, 4, 5]
    assert expired[0] is recs[0] and live[0] is recs[2]


def test_unknown_timestamp_never_expires() -> None:
    policy = RetryPolicy(maximum_record_age_seconds=60)
    recs = _records(3, ts=0.0)
    expired, live = split_expired(recs, policy, now_ms=NOW)
    assert expired == []
    assert live == recs


def test_infinite_age_never_expires() -> None:
    recs = _aged([10**12, 1])
    expired, live = split_expired(recs, RetryPolicy(maximum_record_age_seconds=-1), now_ms=NOW)
    assert expired == []
    assert live is recs


def test_all_expired_and_default_clock() -> None:
    policy = RetryPolicy(maximum_record_age_seconds=60)
    recs = _records(2, ts=1.0)  # 1 ms after the epoch: decades old by the real clock
    expired, live = split_expired(recs, policy)
    assert _offsets(expired) == [0, 1]
    assert live == []


def test_split_expired_keeps_equal_records_apart() -> None:
    # Records are dataclasses (compared by value); splitting must go by identity.
    policy = RetryPolicy(maximum_record_age_seconds=60)
    old = Record(payload={}, size=1, item_id="x", ack=None, timestamp_ms=NOW - 70_000)
    twin = Record(payload={}, size=1, item_id="x", ack=None, timestamp_ms=NOW - 70_000)
    fresh = Record(payload={}, size=1, item_id="x", ack=None, timestamp_ms=NOW)
    expired, live = split_expired([old, twin, fresh], policy, now_ms=NOW)
    assert [id(r) for r in expired] == [id(old), id(twin)]
    assert [id(r) for r in live] == [id(fresh)]


# ------------------------------------------------------------------ after_failure


def test_bisection_on_function_error() -> None:
    policy = RetryPolicy(maximum_retry_attempts=2, bisect_on_function_error=True)
    recs = _records(5)
    attempt = Attempt(recs, invocations=3, retries=1)
    decision = after_failure(attempt, recs, function_error=True, policy=policy)
    assert isinstance(decision, Retry)
    assert decision.delay == 0.0
    assert [_offsets(p.records) for p in decision.parts] == [[0, 1], [2, 3, 4]]
    assert [(p.invocations, p.retries, p.function_error) for p in decision.parts] == [
        (3, 1, True),
        (3, 1, True),
    ]


def test_bisection_does_not_consume_retries_even_when_exhausted() -> None:
    policy = RetryPolicy(maximum_retry_attempts=0, bisect_on_function_error=True)
    recs = _records(4)
    decision = after_failure(Attempt(recs, 1, 0), recs, function_error=True, policy=policy)
    assert isinstance(decision, Retry)
    assert [_offsets(p.records) for p in decision.parts] == [[0, 1], [2, 3]]
    assert [p.retries for p in decision.parts] == [0, 0]


def test_single_record_is_retried_not_bisected() -> None:
    policy = RetryPolicy(maximum_retry_attempts=3, bisect_on_function_error=True, backoff_seconds=2)
    recs = _records(1)
    decision = after_failure(Attempt(recs, 4, 1), recs, function_error=True, policy=policy)
    assert isinstance(decision, Retry)
    assert len(decision.parts) == 1
    part = decision.parts[0]
    assert (_offsets(part.records), part.invocations, part.retries) == ([0], 4, 2)
    assert part.function_error is True
    assert decision.delay == 4.0  # backoff(1)


def test_no_bisection_without_the_setting() -> None:
    policy = RetryPolicy(maximum_retry_attempts=3, backoff_seconds=1)
    recs = _records(4)
    decision = after_failure(Attempt(recs, 1, 0), recs, function_error=True, policy=policy)
    assert isinstance(decision, Retry)
    assert [_offsets(p.records) for p in decision.parts] == [[0, 1, 2, 3]]
    assert decision.parts[0].retries == 1
    assert decision.delay == 1.0


def test_partial_failure_retries_the_tail_and_consumes_a_retry() -> None:
    policy = RetryPolicy(maximum_retry_attempts=3, bisect_on_function_error=True, backoff_seconds=1)
    recs = _records(6)
    tail = recs[2:]
    decision = after_failure(Attempt(recs, 2, 1), tail, function_error=False, policy=policy)
    assert isinstance(decision, Retry)
    assert len(decision.parts) == 1
    part = decision.parts[0]
    assert _offsets(part.records) == [2, 3, 4, 5]
    assert (part.invocations, part.retries, part.function_error) == (2, 2, False)
    assert decision.delay == 2.0  # backoff(1)


@pytest.mark.parametrize("function_error", [True, False])
def test_give_up_when_exhausted(function_error: bool) -> None:
    policy = RetryPolicy(maximum_retry_attempts=2)
    recs = _records(3)
    decision = after_failure(
        Attempt(recs, 3, 2), recs[1:], function_error=function_error, policy=policy
    )
    assert isinstance(decision, GiveUp)
    assert decision.condition == RETRY_ATTEMPTS_EXHAUSTED == "RetryAttemptsExhausted"
    assert _offsets(decision.records) == [1, 2]


def test_zero_retries_gives_up_at_once() -> None:
    recs = _records(1)
    decision = after_failure(
        Attempt(recs, 1, 0), recs, function_error=True, policy=RetryPolicy(maximum_retry_attempts=0)
    )
    assert isinstance(decision, GiveUp)
    assert RECORD_AGE_EXCEEDED == "RecordAgeExceeded"


def test_infinite_retries_never_give_up() -> None:
    recs = _records(2)
    decision = after_failure(
        Attempt(recs, 500, 1000), recs, function_error=False, policy=RetryPolicy(backoff_seconds=0)
    )
    assert isinstance(decision, Retry)
    assert decision.parts[0].retries == 1001
