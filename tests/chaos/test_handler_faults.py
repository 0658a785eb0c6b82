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
from tests.chaos.recorder import FAULTS, fault_marker, fault_of
from tests.chaos.sources import HANDLER, RESTART_ENV, SOURCES, config
from tests.chaos.test_faults import alive, report, unexplained_duplicates, wait_all_done
from tests.support.aws import Queue, wait_until
from tests.support.runtime import RuntimeProcess

pytestmark = pytest.mark.integration


class WorkerDeaths:
    """Watches a runtime's workers and notes when each one ended: a hung invocation has no
    end line of its own, it ends with its worker. The time noted is when the end was seen
    (up to one 50 ms poll late), so an overlap check against it errs on the strict side."""

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
            if self.rt.proc is not None:  # started before the runtime: no death goes unseen
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
    with WorkerDeaths(rt) as watch:
        rt.start(timeout=60)
        wait_all_done(record_file, count, 180)
        time.sleep(1)  # late duplicates, if any, arrive now
    invocations = read(record_file)
    verdict = check(invocations, count, ordered=source.ordered, deaths=watch.deaths)
    by_rid = {i.rid: i for i in invocations}
    faulted = {  # number -> the invocation that acted its fault out
        n: by_rid[fault_marker(record_file, n).read_text()]
        for n in range(count)
        if fault_marker(record_file, n).exists()
    }
    assert {fault_of(n, every) for n in faulted} == set(FAULTS), faulted
    # From the failing invocation's start (a hang's Timeout and recycle included) until the
    # record was done by a later one.
    recovery = max(
        min(i.end for i in invocations if n in i.ns and i.end and not i.failed) - first.start
        for n, first in faulted.items()
    )  # fmt: skip
    report("handler raises, hangs, returns no JSON, exits", name, {
        **verdict.summary(), "kills": f"{len(faulted)} faults; {len(watch.deaths)} workers ended",
        "max_recovery_s": round(recovery, 2),
    })  # fmt: skip
    assert not verdict.lost, f"lost: {verdict.lost[:20]}"
    assert not verdict.order_violations, verdict.order_violations[:5]
    assert not verdict.overlaps, verdict.overlaps[:5]
    assert not unexplained_duplicates(invocations, watch.deaths)
    # A hang and an exit each end their worker (the supervisor starts another).
    for n, first in faulted.items():
        if fault_of(n, every) in ("hang", "exit"):
            assert first.pid in watch.deaths, (n, fault_of(n, every), watch.deaths)
    assert all(i.pid in watch.deaths or alive(i.pid) for i in invocations), "a death unseen"
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
