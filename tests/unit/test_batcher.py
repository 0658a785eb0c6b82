"""Batcher: count limit, 6 MB payload limit, batching window, flush, order (in-process only)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.pipeline.batcher import Batcher
from runtime.pipeline.records import MAX_PAYLOAD_BYTES, Batch, Record

ENVELOPE = len('{"Records":[]}')  # 14, what the SQS source passes


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(i: int, size: int = 100) -> Record:
    return Record(payload={"i": i}, size=size, item_id=f"id-{i}", ack=f"ack-{i}")


def ids(batch: Batch) -> list[str]:
    return [r.item_id for r in batch.records]


def make(
    max_records: int = 10,
    window: float = 5.0,
    *,
    envelope: int = ENVELOPE,
    max_payload: int = MAX_PAYLOAD_BYTES,
    clock: FakeClock | None = None,
) -> tuple[Batcher, FakeClock]:
    clock = clock or FakeClock()
    b = Batcher(
        max_records, window, envelope_bytes=envelope, max_payload_bytes=max_payload, clock=clock
    )
    return b, clock


# ---------------------------------------------------------------------------- construction


def test_max_payload_is_six_mebibytes() -> None:
    assert MAX_PAYLOAD_BYTES == 6 * 1024 * 1024 == 6291456


def test_default_payload_limit_is_max_payload_bytes() -> None:
    b = Batcher(10, 0, envelope_bytes=ENVELOPE)
    assert b.max_payload_bytes == MAX_PAYLOAD_BYTES


@pytest.mark.parametrize("bad", [0, -1])
def test_max_records_below_one_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="max_records must be >= 1"):
        Batcher(bad, 1.0, envelope_bytes=ENVELOPE)


def test_empty_batcher_state() -> None:
    b, _ = make()
    assert b.open_count == 0
    assert b.deadline is None
    assert b.flush() is None
    assert b.flush_due() is None
    assert b.add([]) == []


# ---------------------------------------------------------------------------- count limit


def test_count_limit_closes_batch_exactly_at_max_records() -> None:
    b, _ = make(max_records=3)
    closed = b.add([rec(i) for i in range(3)])
    assert [ids(x) for x in closed] == [["id-0", "id-1", "id-2"]]
    assert b.open_count == 0
    assert b.deadline is None


def test_count_limit_splits_one_add_into_several_batches() -> None:
    b, _ = make(max_records=3)
    closed = b.add([rec(i) for i in range(8)])
    assert [ids(x) for x in closed] == [
        ["id-0", "id-1", "id-2"],
        ["id-3", "id-4", "id-5"],
    ]
    assert b.open_count == 2
    last = b.flush()
    assert last is not None
    assert ids(last) == ["id-6", "id-7"]


def test_count_limit_across_several_add_calls() -> None:
    b, _ = make(max_records=4)
    assert b.add([rec(0), rec(1)]) == []
    assert b.open_count == 2
    closed = b.add([rec(2), rec(3), rec(4)])
    assert [ids(x) for x in closed] == [["id-0", "id-1", "id-2", "id-3"]]
    assert b.open_count == 1


def test_max_records_one_makes_single_record_batches() -> None:
    b, _ = make(max_records=1)
    closed = b.add([rec(i) for i in range(3)])
    assert [ids(x) for x in closed] == [["id-0"], ["id-1"], ["id-2"]]
    assert b.open_count == 0


# ---------------------------------------------------------------------------- payload limit


def test_payload_bytes_include_envelope() -> None:
    b, _ = make(max_records=3)
    (batch,) = b.add([rec(0, 10), rec(1, 20), rec(2, 30)])
    assert batch.payload_bytes == ENVELOPE + 60


def test_payload_exactly_at_limit_is_allowed() -> None:
    size = (MAX_PAYLOAD_BYTES - ENVELOPE) // 2
    assert ENVELOPE + 2 * size == MAX_PAYLOAD_BYTES
    b, _ = make(max_records=10)
    # (whether add() closes a batch that is exactly full right away is left open; today it
    # waits for the next record or the window)
    out = b.add([rec(0, size), rec(1, size)])
    last = b.flush()
    batches = out + ([last] if last is not None else [])
    assert [ids(x) for x in batches] == [["id-0", "id-1"]]
    assert batches[0].payload_bytes == MAX_PAYLOAD_BYTES


def test_payload_one_byte_over_limit_closes_before_the_record() -> None:
    size = (MAX_PAYLOAD_BYTES - ENVELOPE) // 2
    b, _ = make(max_records=10)
    closed = b.add([rec(0, size), rec(1, size + 1)])
    assert [ids(x) for x in closed] == [["id-0"]]
    assert closed[0].payload_bytes == ENVELOPE + size
    assert b.open_count == 1
    rest = b.flush()
    assert rest is not None
    assert ids(rest) == ["id-1"]
    assert rest.payload_bytes == ENVELOPE + size + 1


def test_envelope_counts_towards_the_limit() -> None:
    # Without the envelope, two records of half the limit would fit exactly; with it they do not.
    half = MAX_PAYLOAD_BYTES // 2
    b, _ = make(max_records=10, envelope=ENVELOPE)
    closed = b.add([rec(0, half), rec(1, half)])
    assert [ids(x) for x in closed] == [["id-0"]]
    # with a zero envelope the same two records make one batch of exactly 6 MB, which is
    # full: it closes at once instead of waiting for its window
    b0, _ = make(max_records=10, envelope=0)
    [batch] = b0.add([rec(0, half), rec(1, half)])
    assert len(batch) == 2
    assert batch.payload_bytes == MAX_PAYLOAD_BYTES
    assert b0.open_count == 0


def test_payload_limit_with_many_records_of_256_kib() -> None:
    size = 256 * 1024 + 300  # an SQS message at its old maximum, plus record metadata
    b, _ = make(max_records=10_000)
    closed = b.add([rec(i, size) for i in range(50)])
    per_batch = (MAX_PAYLOAD_BYTES - ENVELOPE) // size  # 23
    assert per_batch == 23
    assert [len(x) for x in closed] == [23, 23]
    assert all(x.payload_bytes <= MAX_PAYLOAD_BYTES for x in closed)
    assert b.open_count == 4


def test_oversized_record_alone_forms_a_batch_of_one() -> None:
    b, _ = make(max_records=10)
    big = MAX_PAYLOAD_BYTES + 1
    closed = b.add([rec(0, 10), rec(1, big), rec(2, 10)])
    assert [ids(x) for x in closed] == [["id-0"], ["id-1"]]
    assert closed[1].payload_bytes == ENVELOPE + big
    rest = b.flush()
    assert rest is not None
    assert ids(rest) == ["id-2"]


def test_oversized_first_record_closes_at_once() -> None:
    b, _ = make(max_records=10)
    [batch] = b.add([rec(0, MAX_PAYLOAD_BYTES * 2)])
    assert b.flush() is None
    assert ids(batch) == ["id-0"]
    assert batch.payload_bytes == ENVELOPE + MAX_PAYLOAD_BYTES * 2


def test_two_oversized_records_are_two_batches() -> None:
    b, _ = make(max_records=10, window=0)
    closed = b.add([rec(0, MAX_PAYLOAD_BYTES), rec(1, MAX_PAYLOAD_BYTES)])
    assert [ids(x) for x in closed] == [["id-0"], ["id-1"]]


def test_payload_counter_resets_after_flush() -> None:
    b, _ = make(max_records=10, max_payload=1000, envelope=14)
    b.add([rec(0, 900)])
    assert b.flush() is not None
    # 14 + 986 = 1000 fits in a fresh batch, exactly: the batch is full and closes
    [batch] = b.add([rec(1, 986)])
    assert batch.payload_bytes == 1000


def test_payload_counter_resets_after_close_exact() -> None:
    b, _ = make(max_records=2, max_payload=1000, envelope=14)
    (first,) = b.add([rec(0, 400), rec(1, 400)])
    assert first.payload_bytes == 814
    (second,) = b.add([rec(2, 493), rec(3, 493)])  # 14 + 986 = 1000: fits a fresh batch
    assert ids(second) == ["id-2", "id-3"]
    assert second.payload_bytes == 1000


# ---------------------------------------------------------------------------- window


def test_window_starts_at_first_record() -> None:
    b, clock = make(max_records=10, window=5.0)
    clock.now = 100.0
    b.add([rec(0)])
    assert b.deadline == 105.0
    clock.now = 103.0
    b.add([rec(1)])  # a later record does not move the window
    assert b.deadline == 105.0
    batch = b.flush()
    assert batch is not None
    assert batch.opened_at == 100.0


def test_quiet_time_before_first_record_does_not_count() -> None:
    b, clock = make(max_records=10, window=5.0)
    clock.now = 100.0
    assert b.flush_due() is None
    clock.now = 200.0  # long quiet period
    b.add([rec(0)])
    assert b.deadline == 205.0
    assert b.flush_due() is None


def test_flush_due_before_and_after_deadline_with_fake_clock() -> None:
    b, clock = make(max_records=10, window=5.0)
    clock.now = 50.0
    b.add([rec(0), rec(1)])
    clock.now = 54.999
    assert b.flush_due() is None
    assert b.open_count == 2
    clock.now = 55.0  # exactly at the deadline: due
    batch = b.flush_due()
    assert batch is not None
    assert ids(batch) == ["id-0", "id-1"]
    assert batch.opened_at == 50.0
    assert b.open_count == 0
    assert b.deadline is None
    assert b.flush_due() is None


def test_flush_due_with_explicit_now_overrides_clock() -> None:
    b, clock = make(max_records=10, window=5.0)
    clock.now = 10.0
    b.add([rec(0)])
    assert b.flush_due(now=14.9) is None
    clock.now = 1_000.0  # the clock says it is long past; the explicit now wins
    assert b.flush_due(now=14.9) is None
    batch = b.flush_due(now=15.0)
    assert batch is not None
    assert ids(batch) == ["id-0"]


def test_window_restarts_after_count_close() -> None:
    b, clock = make(max_records=2, window=5.0)
    clock.now = 10.0
    closed = b.add([rec(0), rec(1)])
    assert len(closed) == 1
    assert closed[0].opened_at == 10.0
    clock.now = 12.0
    b.add([rec(2)])
    assert b.deadline == 17.0


def test_window_restarts_for_record_that_overflows_mid_add() -> None:
    b, clock = make(max_records=2, window=5.0)
    clock.now = 10.0
    b.add([rec(0)])
    clock.now = 13.0
    closed = b.add([rec(1), rec(2)])
    assert [ids(x) for x in closed] == [["id-0", "id-1"]]
    assert closed[0].opened_at == 10.0
    assert b.deadline == 18.0  # id-2 opened a new window at 13.0


def test_flush_due_on_empty_batcher_after_close() -> None:
    b, clock = make(max_records=1, window=5.0)
    b.add([rec(0)])
    clock.now += 100
    assert b.flush_due() is None


def test_window_zero_each_add_call_closes_its_batch() -> None:
    b, _ = make(max_records=10, window=0)
    (one,) = b.add([rec(0), rec(1), rec(2)])
    assert ids(one) == ["id-0", "id-1", "id-2"]
    assert b.open_count == 0
    assert b.deadline is None
    (two,) = b.add([rec(3)])
    assert ids(two) == ["id-3"]
    assert b.add([]) == []


def test_window_zero_still_respects_count_limit() -> None:
    b, _ = make(max_records=4, window=0)
    closed = b.add([rec(i) for i in range(10)])
    assert [len(x) for x in closed] == [4, 4, 2]
    assert [ids(x)[0] for x in closed] == ["id-0", "id-4", "id-8"]
    assert b.open_count == 0


def test_window_zero_exact_multiple_yields_no_empty_batch() -> None:
    b, _ = make(max_records=5, window=0)
    closed = b.add([rec(i) for i in range(10)])
    assert [len(x) for x in closed] == [5, 5]


def test_window_zero_still_respects_payload_limit() -> None:
    b, _ = make(max_records=100, window=0, max_payload=1000, envelope=14)
    closed = b.add([rec(i, 300) for i in range(7)])
    # 14 + 3*300 = 914 fits, a fourth would be 1214
    assert [len(x) for x in closed] == [3, 3, 1]


# ---------------------------------------------------------------------------- flush


def test_flush_returns_open_batch_and_empties() -> None:
    b, clock = make(max_records=10, window=30.0)
    clock.now = 7.0
    b.add([rec(0), rec(1)])
    batch = b.flush()
    assert batch is not None
    assert ids(batch) == ["id-0", "id-1"]
    assert batch.payload_bytes == ENVELOPE + 200
    assert batch.opened_at == 7.0
    assert b.open_count == 0
    assert b.deadline is None
    assert b.flush() is None


def test_batches_carry_the_record_objects_themselves() -> None:
    records = [rec(0), rec(1)]
    b, _ = make(max_records=2)
    (batch,) = b.add(records)
    assert batch.records[0] is records[0]
    assert batch.records[1] is records[1]


def test_closed_batch_is_not_mutated_by_later_adds() -> None:
    b, _ = make(max_records=2)
    (first,) = b.add([rec(0), rec(1)])
    b.add([rec(2)])
    assert ids(first) == ["id-0", "id-1"]


# ---------------------------------------------------------------------------- property


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, int, float, list[list[int]]]:
    max_records = draw(st.integers(min_value=1, max_value=12))
    envelope = draw(st.integers(min_value=0, max_value=20))
    max_payload = draw(st.integers(min_value=envelope + 1, max_value=envelope + 400))
    window = draw(st.sampled_from([0.0, 1.0]))
    sizes = st.integers(min_value=1, max_value=max_payload + 50)  # some oversized records
    chunks = draw(st.lists(st.lists(sizes, max_size=15), max_size=12))
    return max_records, envelope, max_payload, window, chunks


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_property_batches_reassemble_input_and_respect_limits(
    scenario: tuple[int, int, int, float, list[list[int]]],
) -> None:
    max_records, envelope, max_payload, window, chunks = scenario
    clock = FakeClock()
    b = Batcher(
        max_records, window, envelope_bytes=envelope, max_payload_bytes=max_payload, clock=clock
    )
    inputs: list[Record] = []
    emitted: list[Batch] = []
    n = 0
    for chunk in chunks:
        records = [rec(n + k, size) for k, size in enumerate(chunk)]
        n += len(chunk)
        inputs.extend(records)
        out = b.add(records)
        if window == 0:
            assert b.open_count == 0
            # one add call never mixes with another: its batches hold exactly its records
            assert [r for x in out for r in x.records] == records
        emitted.extend(out)
    last = b.flush()
    if last is not None:
        emitted.append(last)
    assert b.open_count == 0

    flat = [r for x in emitted for r in x.records]
    assert [r.item_id for r in flat] == [r.item_id for r in inputs]
    assert all(a is c for a, c in zip(flat, inputs, strict=True))
    for batch in emitted:
        assert 1 <= len(batch) <= max_records
        assert batch.payload_bytes == envelope + sum(r.size for r in batch.records)
        if len(batch) > 1:
            assert batch.payload_bytes <= max_payload
        else:
            # only a record that alone passes the limit may exceed it
            assert batch.payload_bytes <= max_payload or batch.records[0].size + envelope > (
                max_payload
            )
    if window > 0:
        # the clock never moved, so every batch but the last was closed by a limit: the next
        # record could not have joined it (the batcher is greedy)
        for batch, nxt in itertools.pairwise(emitted):
            first = nxt.records[0]
            assert len(batch) == max_records or batch.payload_bytes + first.size > max_payload


def _reference_batches(
    calls: list[list[Record]], max_records: int, window: float, envelope: int, max_payload: int
) -> list[tuple[int, list[str], int]]:
    """The batching rule record by record (the Batcher takes slices at a time; both must
    cut the same batches, each closed by the same call)."""
    out: list[tuple[int, list[str], int]] = []
    open_: list[Record] = []
    nbytes = envelope

    def close(call: int) -> None:
        nonlocal open_, nbytes
        out.append((call, [str(r.item_id) for r in open_], nbytes))
        open_, nbytes = [], envelope

    for call, records in enumerate(calls):
        for r in records:
            if open_ and (len(open_) >= max_records or nbytes + r.size > max_payload):
                close(call)
            open_.append(r)
            nbytes += r.size
            if len(open_) >= max_records or nbytes >= max_payload:
                close(call)
        if window <= 0 and open_:
            close(call)
    if open_:
        close(len(calls))
    return out


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(1, 400), max_size=30), max_size=8),
    max_records=st.integers(1, 12),
    window=st.sampled_from([0.0, 5.0]),
    max_payload=st.integers(50, 2000),
)
def test_slices_cut_the_same_batches_as_record_by_record(
    sizes: list[list[int]], max_records: int, window: float, max_payload: int
) -> None:
    counter = itertools.count()
    calls = [[rec(next(counter), s) for s in call] for call in sizes]
    b, _ = make(max_records, window, envelope=20, max_payload=max_payload)
    got: list[tuple[int, list[str], int]] = []
    for call, records in enumerate(calls):
        got.extend((call, ids(batch), batch.payload_bytes) for batch in b.add(records))
    last = b.flush()
    if last is not None:
        got.append((len(calls), ids(last), last.payload_bytes))
    assert got == _reference_batches(calls, max_records, window, 20, max_payload)
