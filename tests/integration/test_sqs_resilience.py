"""Processes dying and draining: kill -9 loses nothing, SIGTERM loses and repeats nothing.

Also the runtime's extension of message visibility while it holds messages, which Lambda does
not do: the control run with extension switched off shows the duplicates it prevents.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from tests.support.aws import Queue, wait_until
from tests.support.config import single_mapping
from tests.support.records import read_invocations

pytestmark = pytest.mark.integration


def test_kill9_worker_mid_batch_loses_nothing(sqs, runtime_factory, record_file):
    q = Queue.create(sqs, visibility_timeout=3)
    ids = q.send({"n": i, "sleep": 1.0} for i in range(40))
    cfg = single_mapping(
        q.arn, record_file, timeout=3, BatchSize=4, ScalingConfig={"MaximumConcurrency": 4}
    )
    rt = runtime_factory(cfg, workers=2).start()
    pids = rt.wait_workers(2)
    # Wait until the victim is in the middle of a batch, then kill it without warning.
    victim = wait_until(
        lambda: next(
            (i.pid for i in read_invocations(record_file) if i.ended is None and i.pid in pids),
            None,
        ),
        20,
        interval=0.02,
    )
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()

    wait_until(lambda: q.total() == 0, 60, what="every message deleted")
    invs = read_invocations(record_file)
    completed = {m for i in invs if i.ended is not None for m in i.message_ids}
    assert completed == set(ids), f"never completed: {set(ids) - completed}"
    interrupted = [i for i in invs if i.ended is None]
    assert interrupted and all(i.pid == victim for i in interrupted)
    # Only what the victim held is seen twice: the batches it was running when it died.
    counts = Counter(m for i in invs for m in i.message_ids)
    repeated = {m for m, c in counts.items() if c > 1}
    held = {m for i in interrupted for m in i.message_ids}
    assert repeated <= held | {m for i in invs if i.pid == victim for m in i.message_ids}
    # The victim was replaced and the replacement took part.
    wait_until(lambda: rt.metric("esm_worker_restarts_total") >= 1, 10)
    assert any(i.pid not in pids for i in invs if i.started > killed_at)
    assert rt.stop() == 0


def test_sigterm_drains_without_loss_or_repeat(sqs, runtime_factory, record_file):
    q = Queue.create(sqs, visibility_timeout=5)
    ids = q.send({"n": i, "sleep": 0.4} for i in range(60))
    cfg = single_mapping(
        q.arn, record_file, timeout=5, BatchSize=3, ScalingConfig={"MaximumConcurrency": 3}
    )
    first = runtime_factory(cfg, workers=2).start()
    wait_until(
        lambda: sum(1 for i in read_invocations(record_file) if i.ended is None) >= 2,
        20,
        interval=0.02,
        what="batches in flight",
    )
    assert first.stop(signal.SIGTERM) == 0
    after_first = read_invocations(record_file)
    assert after_first and all(i.ended is not None for i in after_first), "drain cut a batch"
    done_first = {m for i in after_first for m in i.message_ids}
    assert len(done_first) < len(ids), "test too slow to catch the runtime mid-queue"

    second = runtime_factory(cfg, workers=2).start()
    wait_until(lambda: q.total() == 0, 60, what="queue drained by the second runtime")
    assert second.stop() == 0
    counts = Counter(m for i in read_invocations(record_file) for m in i.message_ids)
    assert set(counts) == set(ids)
    assert [m for m, c in counts.items() if c > 1] == []


@pytest.mark.parametrize("extend", [True, False], ids=["extended", "lambda-like"])
def test_visibility_extended_while_messages_are_held(sqs, runtime_factory, record_file, extend):
    # Messages wait 1 s in the batching window, then the handler takes 1.8 s: 2.8 s held,
    # longer than the queue's 2 s visibility timeout.
    q = Queue.create(sqs, visibility_timeout=2)
    ids = q.send({"n": i, "sleep": 1.8} for i in range(6))
    cfg = single_mapping(
        q.arn,
        record_file,
        timeout=2,
        BatchSize=20,
        MaximumBatchingWindowInSeconds=1,
        ScalingConfig={"MaximumConcurrency": 4},
    )
    env = {"ESM_SQS_EXTEND_VISIBILITY": "true" if extend else "false"}
    rt = runtime_factory(cfg, env=env).start()

    def counts() -> Counter[str]:
        return Counter(m for i in read_invocations(record_file) for m in i.message_ids)

    if extend:
        wait_until(lambda: q.total() == 0, 30, what="queue drained")
        time.sleep(0.5)
        assert set(counts()) == set(ids)
        assert [m for m, c in counts().items() if c > 1] == []
        assert rt.metric("esm_visibility_extensions_total") >= len(ids)
    else:
        # Lambda's behaviour: the messages come back while their batch still runs, are
        # delivered again, and the first batch's deletes then fail (stale receipt handles).
        wait_until(lambda: any(c > 1 for c in counts().values()), 20, what="a duplicate delivery")
        assert rt.metric("esm_visibility_extensions_total") == 0
    assert rt.stop() == 0
