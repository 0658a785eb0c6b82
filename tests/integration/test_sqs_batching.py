"""Batches: BatchSize, the batching window and Lambda's 6 MB payload cap, on a real queue."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import single_mapping
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration

SIX_MB = 6 * 1024 * 1024


def test_window_collects_up_to_batch_size(sqs, runtime_factory, record_file):
    q = Queue.create(sqs)
    cfg = single_mapping(q.arn, record_file, BatchSize=50, MaximumBatchingWindowInSeconds=2)
    rt = runtime_factory(cfg).start()

    first = q.send({"n": i} for i in range(30))
    sent_at = time.time()
    wait_until(lambda: read_invocations(record_file), 10, what="first batch")
    [batch] = read_invocations(record_file)
    # Fewer than BatchSize: one batch, invoked when the 2 s window (from its first record) ended.
    assert sorted(batch.message_ids) == sorted(first)
    assert 1.6 <= batch.started - sent_at <= 4.0

    more = q.send({"n": i} for i in range(120))
    wait_until(lambda: sum(len(i.message_ids) for i in read_invocations(record_file)) >= 150, 15)
    later = read_invocations(record_file)[1:]
    assert {m for i in later for m in i.message_ids} == set(more)
    assert max(len(i.message_ids) for i in later) == 50
    assert all(len(i.message_ids) <= 50 for i in later)
    assert rt.stop() == 0


def test_batches_stay_under_six_megabytes(sqs, runtime_factory, record_file):
    q = Queue.create(sqs)
    body = "x" * 200_000  # 40 of these are ~8 MB, more than one payload can carry
    ids = q.send((json.dumps({"n": i, "pad": body}) for i in range(40)), per_call=4)
    cfg = single_mapping(q.arn, record_file, BatchSize=100, MaximumBatchingWindowInSeconds=3)
    rt = runtime_factory(cfg).start()
    wait_until(lambda: q.total() == 0, 30, what="queue drained")
    invs = read_invocations(record_file)
    assert {m for i in invs for m in i.message_ids} == set(ids)
    sizes = [len(json.dumps(i.event, separators=(",", ":"))) for i in invs]
    assert all(s <= SIX_MB for s in sizes), sizes
    # The size limit, not BatchSize, cut these batches: at least one was filled close to it.
    assert max(sizes) > SIX_MB - 250_000, sizes
    assert max(len(i.message_ids) for i in invs) < 40
    assert rt.stop() == 0


@pytest.mark.parametrize(
    "workers, limits",
    [
        (2, {"mapping": {"ScalingConfig": {"MaximumConcurrency": 2}}}),
        (1, {"function": {"ReservedConcurrentExecutions": 1}}),
    ],
    ids=["maximum-concurrency-over-two-workers", "reserved-concurrency-of-one"],
)
def test_batches_fill_to_batch_size_at_a_concurrency_share_of_one(
    sqs, runtime_factory, record_file, workers, limits
):
    """Defect: with one concurrent batch per worker, the open batch used up the share, so
    nothing more was fetched: every batch held one receive (10 messages) and waited out its
    whole window."""
    q = Queue.create(sqs)
    q.send({"n": i} for i in range(300))
    cfg = single_mapping(
        q.arn,
        record_file,
        BatchSize=50,
        MaximumBatchingWindowInSeconds=5,
        function=limits.get("function"),
        **limits.get("mapping", {}),
    )
    rt = runtime_factory(cfg, workers=workers)
    started = time.monotonic()
    rt.start()
    wait_until(lambda: q.total() == 0, 60, what="queue drained")
    elapsed = time.monotonic() - started
    sizes = sorted((len(i.message_ids) for i in read_invocations(record_file)), reverse=True)
    assert sum(sizes) == 300
    # Full batches while the backlog lasts; only the tail of each worker's share may be short.
    assert sizes[: 6 - 2 * workers] == [50] * (6 - 2 * workers), sizes
    assert elapsed < 20, f"batches waited for their windows ({elapsed:.1f} s)"
    assert rt.stop() == 0
