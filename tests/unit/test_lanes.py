"""Lanes: the ordering mechanism every ordered source shares (Kafka, Kinesis, SQS FIFO).

The property tests drive a LaneQueue the way a pipeline does, with random arrivals, random
completion order and random failures (retry of the whole batch, of its failed tail, or of two
halves), and check after every step:
- no lane is ever in two running batches;
- per lane, records run for the first time in arrival order, and a record runs only after
  every earlier record of its lane has succeeded;
- nothing is lost: every record succeeds exactly once in the end;
- nothing runs twice unless it was given back for retry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.pipeline.lanes import LaneQueue, lanes_of
from runtime.pipeline.records import Batch, Record


def rec(n: int, lane: Hashable | None) -> Record:
    return Record(payload={"n": n}, size=10, item_id=n, ack=n, lane=lane)


def batch(*records: Record) -> Batch:
    return Batch(records=list(records), payload_bytes=sum(r.size for r in records))


def ids(b: Batch) -> list[int]:
    return [r.item_id for r in b.records]  # type: ignore[misc]


# ------------------------------------------------------------------ examples


def test_unordered_batches_are_never_held_back() -> None:
    q = LaneQueue()
    for i in range(3):
        q.push(batch(rec(i, None)))
    assert [ids(q.pop_runnable()) for _ in range(3)] == [[0], [1], [2]]  # type: ignore[arg-type]


def test_one_batch_per_lane_in_arrival_order() -> None:
    q = LaneQueue()
    a1, b1, a2 = batch(rec(1, "a")), batch(rec(2, "b")), batch(rec(3, "a"))
    for b in (a1, b1, a2):
        q.push(b)
    assert q.pop_runnable() is a1
    assert q.pop_runnable() is b1
    assert q.pop_runnable() is None  # a2 waits for a1
    q.finish(a1)
    assert q.pop_runnable() is a2


def test_multi_lane_batch_blocks_later_batches_of_each_lane() -> None:
    q = LaneQueue()
    ab = batch(rec(1, "a"), rec(2, "b"))
    b2, c1 = batch(rec(3, "b")), batch(rec(4, "c"))
    q.push(batch(rec(0, "a")))
    first = q.pop_runnable()
    for b in (ab, b2, c1):
        q.push(b)
    # ab waits for lane a; b2 must not overtake ab in lane b; c1 is free.
    assert q.pop_runnable() is c1
    assert q.pop_runnable() is None
    q.finish(first)  # type: ignore[arg-type]
    assert q.pop_runnable() is ab
    q.finish(ab)
    assert q.pop_runnable() is b2


def test_retry_goes_before_later_arrivals() -> None:
    q = LaneQueue()
    a1, a2 = batch(rec(1, "a"), rec(2, "a")), batch(rec(3, "a"))
    q.push(a1)
    q.push(a2)
    assert q.pop_runnable() is a1
    q.retry(a1)
    assert q.pop_runnable() is a1
    tail = batch(rec(2, "a"))
    q.retry(a1, [tail])
    assert q.pop_runnable() is tail
    q.finish(tail)
    assert q.pop_runnable() is a2


def test_bisected_halves_run_in_order_before_later_batches() -> None:
    q = LaneQueue()
    big = batch(*(rec(i, "p") for i in range(4)))
    later = batch(rec(9, "p"))
    q.push(big)
    q.push(later)
    assert q.pop_runnable() is big
    left, right = batch(rec(0, "p"), rec(1, "p")), batch(rec(2, "p"), rec(3, "p"))
    q.retry(big, [left, right])
    assert q.pop_runnable() is left
    assert q.pop_runnable() is None
    q.finish(left)
    assert q.pop_runnable() is right
    q.finish(right)
    assert q.pop_runnable() is later


def test_drain_returns_waiting_batches_in_order() -> None:
    q = LaneQueue()
    bs = [batch(rec(i, i % 2)) for i in range(4)]
    for b in bs:
        q.push(b)
    running = q.pop_runnable()
    assert list(q.drain()) == [b for b in bs if b is not running]
    assert len(q) == 0


# ------------------------------------------------------------------ properties

LANES = st.sampled_from(["a", "b", "c", "d", None])


@st.composite
def arrivals(draw: st.DrawFn) -> list[list[Hashable | None]]:
    """Batches as lists of record lanes (multi-lane like FIFO receives, or single-lane)."""
    single_lane = draw(st.booleans())
    out = []
    for _ in range(draw(st.integers(1, 12))):
        if single_lane:
            lane = draw(LANES)
            out.append([lane] * draw(st.integers(1, 4)))
        else:
            out.append(draw(st.lists(LANES, min_size=1, max_size=4)))
    return out


@settings(max_examples=300, deadline=None)
@given(arrivals(), st.data())
def test_lane_invariants_under_random_failures(
    shape: list[list[Hashable | None]], data: st.DataObject
) -> None:
    q = LaneQueue()
    n = 0
    pending_arrivals: list[Batch] = []
    lane_of: dict[int, Hashable | None] = {}
    for lanes in shape:
        records = []
        for lane in lanes:
            records.append(rec(n, lane))
            lane_of[n] = lane
            n += 1
        pending_arrivals.append(batch(*records))
    arrival_order = {r: i for i, r in enumerate(range(n))}

    running: list[Batch] = []
    succeeded: list[int] = []  # record ids in success order
    runs: dict[int, int] = defaultdict(int)  # record id -> times it ran
    retries: dict[int, int] = defaultdict(int)  # record id -> times given back
    succeeded_set: set[int] = set()

    def check_start(b: Batch) -> None:
        # no lane in two running batches
        busy: set[Hashable] = set()
        for other in running:
            assert lanes_of(other).isdisjoint(busy)
            busy |= lanes_of(other)
        # every earlier record of each lane of b has already succeeded
        for r in b.records:
            runs[r.item_id] += 1  # type: ignore[index]
            if r.lane is None:
                continue
            for earlier in range(r.item_id):  # type: ignore[arg-type]
                if lane_of[earlier] == r.lane and earlier not in {x.item_id for x in b.records}:
                    assert earlier in succeeded_set, (earlier, r.item_id)

    steps = 0
    nothing_runnable = False  # a start found nothing; only an arrival or completion changes that
    while pending_arrivals or running or q:
        steps += 1
        assert steps < 2000
        choices = []
        if pending_arrivals:
            choices.append("arrive")
        if q and not nothing_runnable:
            choices.append("start")
        if running:
            choices.append("complete")
        assert choices, "stuck: batches wait but none can run and none is running"
        op = data.draw(st.sampled_from(choices))
        nothing_runnable = False
        if op == "arrive":
            q.push(pending_arrivals.pop(0))
        elif op == "start":
            b = q.pop_runnable()
            if b is None:
                nothing_runnable = True
            else:
                running.append(b)
                check_start(b)
        else:
            b = running.pop(data.draw(st.integers(0, len(running) - 1)))
            outcome = data.draw(st.sampled_from(["ok", "ok", "retry", "tail", "halves"]))
            if outcome == "ok" or (len(b.records) == 1 and outcome != "retry"):
                q.finish(b)
                for r in b.records:
                    succeeded.append(r.item_id)  # type: ignore[arg-type]
                    succeeded_set.add(r.item_id)  # type: ignore[arg-type]
            elif outcome == "retry":
                for r in b.records:
                    retries[r.item_id] += 1  # type: ignore[index]
                q.retry(b)
            elif outcome == "tail":
                cut = data.draw(st.integers(1, len(b.records) - 1))
                for r in b.records[:cut]:
                    succeeded.append(r.item_id)  # type: ignore[arg-type]
                    succeeded_set.add(r.item_id)  # type: ignore[arg-type]
                tail = batch(*b.records[cut:])
                for r in tail.records:
                    retries[r.item_id] += 1  # type: ignore[index]
                q.retry(b, [tail])
            else:
                cut = len(b.records) // 2
                for r in b.records:
                    retries[r.item_id] += 1  # type: ignore[index]
                q.retry(b, [batch(*b.records[:cut]), batch(*b.records[cut:])])

    # nothing lost, nothing succeeded twice
    assert sorted(succeeded) == list(range(n))
    # per lane, success order is arrival order
    per_lane: dict[Hashable, list[int]] = defaultdict(list)
    for r in succeeded:
        if lane_of[r] is not None:
            per_lane[lane_of[r]].append(r)
    for lane, order in per_lane.items():
        assert order == sorted(order, key=arrival_order.__getitem__), lane
    # nothing ran twice unless it was given back
    for r in range(n):
        assert runs[r] == 1 + retries[r], (r, runs[r], retries[r])
