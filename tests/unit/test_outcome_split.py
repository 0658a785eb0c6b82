"""Which records of a batch succeeded: the per-lane rule for ordered sources."""

from __future__ import annotations

from collections.abc import Hashable

from runtime.invoke.response import SUCCESS, BatchOutcome, OutcomeKind
from runtime.pipeline.execution import split_by_outcome
from runtime.pipeline.records import Record


def rec(item: str, lane: Hashable | None) -> Record:
    return Record(payload={}, size=1, item_id=item, ack=item, lane=lane)


def partial(*failed: str) -> BatchOutcome:
    return BatchOutcome(OutcomeKind.PARTIAL, failed_ids=frozenset(failed))


def names(records: list[Record]) -> list[str]:
    return [str(r.item_id) for r in records]


def test_success_and_failure_are_all_or_nothing() -> None:
    records = [rec("a1", "a"), rec("b1", "b")]
    assert split_by_outcome(SUCCESS, records) == (records, [])
    assert split_by_outcome(BatchOutcome(OutcomeKind.FAILURE), records) == ([], records)


def test_unordered_records_fail_only_when_reported() -> None:
    records = [rec("m1", None), rec("m2", None), rec("m3", None)]
    ok, bad = split_by_outcome(partial("m2"), records)
    assert names(ok) == ["m1", "m3"] and names(bad) == ["m2"]


def test_in_a_lane_everything_after_the_first_failure_fails() -> None:
    # FIFO batch with two groups interleaved: a1 a2 b1 a3 b2 b3; the handler reports a2 only.
    records = [rec("a1", "a"), rec("a2", "a"), rec("b1", "b"), rec("a3", "a"), rec("b2", "b")]
    ok, bad = split_by_outcome(partial("a2"), records)
    assert names(ok) == ["a1", "b1", "b2"]
    assert names(bad) == ["a2", "a3"]


def test_failures_in_several_lanes() -> None:
    records = [rec("a1", "a"), rec("b1", "b"), rec("a2", "a"), rec("b2", "b"), rec("c1", "c")]
    ok, bad = split_by_outcome(partial("b1", "a2"), records)
    assert names(ok) == ["a1", "c1"]
    assert names(bad) == ["b1", "a2", "b2"]
