"""Handler faults the runtime must outlive without losing a record, on every source: a handler
that raises, hangs past its Timeout, returns what JSON cannot hold or ends its own process; and
one that leaks memory past the per-worker limit. (tests/integration/test_sqs_failure_modes.py
checks each fault's error shape and metrics; this file checks the fault suite's invariants.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.invariants import check, completed_numbers, read
from tests.chaos.recorder import FAULTS, fault_of
from tests.chaos.sources import HANDLER, RESTART_ENV, SOURCES, config
from tests.chaos.test_faults import alive, report, unexplained_duplicates, wait_all_done
from tests.support.aws import Queue, wait_until
from tests.support.runtime import RuntimeProcess

pytestmark = pytest.mark.integration


class WorkerDeaths:
    """Watches a runtime's workers and notes when each one ended (to 50 ms): a hung
    invocation has no end line of its own, it ends with its worker."""

    def __init__(self, rt: RuntimeProcess) -> None:
        self.rt = rt
        self.deaths: dict[int, float] = {}
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-deaths", daemon=True)

    def __enter__(self) -> WorkerDeaths:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._seen.update(self.rt.worker_pids())
            for pid in self._seen - self.deaths.keys():
                if not alive(pid):
                    self.deaths[pid] = time.time()
            self._stop.wait(0.05)


@pytest.mark.parametrize("name", SOURCES)
def test_raising_hanging_unserialisable_and_exiting_handlers_lose_nothing(
    name: str, source_of: Any, runtime_factory: Any, record_file: Path
) -> None:
    """Every 40th record makes its first invocation fail one of four ways, in turn; the
    retries succeed. Nothing may be lost, reordered or run twice at once in a lane (a hung
    sync handler cannot be stopped, so its worker must be gone before its lane runs again),
    and only a process that ended may leave duplicates behind (work done, not yet
    acknowledged)."""
    source = source_of(name)
    count, every = 200, 40
    source.produce(range(count))
    env = {**source.env, **RESTART_ENV, "CHAOS_SLEEP": "0.05", "CHAOS_FAULT_EVERY": str(every)}
    rt = runtime_factory(config(source, record_file, timeout=2), workers=2, env=env)
    with WorkerDeaths(rt.start(timeout=60)) as watch:
        wait_all_done(record_file, count, 180)
        time.sleep(1)  # late duplicates, if any, arrive now
    invocations = read(record_file)
    verdict = check(invocations, count, ordered=source.ordered, deaths=watch.deaths)
    faulted = [n for n in range(count) if Path(f"{record_file}.fault-{n}").exists()]
    firsts = {n: next(i for i in invocations if n in i.ns) for n in faulted}
    recovery = max(
        min(i.end for i in invocations if n in i.ns and i.end and not i.failed)
        - (firsts[n].end or watch.deaths.get(firsts[n].pid, firsts[n].start))
        for n in faulted
    )  # fmt: skip
    report("handler raises, hangs, returns no JSON, exits", name, {
        **verdict.summary(), "kills": f"{len(faulted)} faults; {len(watch.deaths)} workers ended",
        "max_recovery_s": round(recovery, 2),
    })  # fmt: skip
    assert {fault_of(n, every) for n in faulted} == set(FAULTS), faulted
    assert not verdict.lost, f"lost: {verdict.lost[:20]}"
    assert not verdict.order_violations, verdict.order_violations[:5]
    assert not verdict.overlaps, verdict.overlaps[:5]
    assert not unexplained_duplicates(invocations, watch.deaths)
    # A hang and an exit each end their worker (the supervisor starts another).
    for n in faulted:
        if fault_of(n, every) in ("hang", "exit"):
            assert firsts[n].pid in watch.deaths, (n, fault_of(n, every), watch.deaths)
    assert rt.metric("esm_worker_restarts_total") >= 1
    assert rt.stop() == 0


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
