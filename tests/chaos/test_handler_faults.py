"""Handler faults the runtime must outlive without losing a record. (Raising, hanging past
Timeout, unserialisable results and ``os._exit`` have their own tests per source in
tests/integration; this file holds the ones that need the fault suite's recorder.)"""

from __future__ import annotations

import pytest

from tests.chaos.invariants import check, completed_numbers, read
from tests.chaos.sources import HANDLER
from tests.chaos.test_faults import report
from tests.support.aws import Queue, wait_until

pytestmark = pytest.mark.integration


def test_a_leaking_handler_gets_its_worker_recycled_past_the_memory_limit(
    sqs, runtime_factory, record_file
):
    q = Queue.create(sqs, "leak")
    count = 40
    q.send({"n": n, "key": "a"} for n in range(count))
    cfg = {
        "functions": {
            "fn": {
                "Handler": HANDLER,
                "Timeout": 5,
                "Environment": {
                    "Variables": {
                        "RECORD_FILE": str(record_file),
                        # Slow enough that the twice-a-second check sees the growth.
                        "CHAOS_SLEEP": "0.5",
                        "CHAOS_LEAK_MB": "8",
                    }
                },
            }
        },
        "eventSourceMappings": [{"FunctionName": "fn", "EventSourceArn": q.arn, "BatchSize": 1}],
    }
    rt = runtime_factory(cfg, env={"ESM_WORKER_MEMORY_LIMIT_MB": "140"}).start(timeout=60)
    wait_until(
        lambda: len(completed_numbers(read(record_file))) == count,
        120, what="every message handled",
    )  # fmt: skip
    invocations = read(record_file)
    verdict = check(invocations, count, ordered=False)
    workers = {i.pid for i in invocations}
    recycles = rt.metric("esm_worker_restarts_total", reason="recycle")
    report("handler leaks memory past the limit", "sqs", {
        **verdict.summary(), "kills": f"{int(recycles)} recycles",
    })  # fmt: skip
    assert not verdict.lost
    assert verdict.duplicates == 0  # a recycled worker finishes its batches first
    assert recycles >= 1 and len(workers) >= 2, (recycles, workers)
    assert "worker memory above its limit; recycling" in rt.logs()
    assert rt.stop() == 0
