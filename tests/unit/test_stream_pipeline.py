"""The ordered-unit core in-process: a scripted ordered source and invoker, a real pipeline.

What the core promises every ordered source (Kafka now, Kinesis and DynamoDB next): work
under a dead token never counts; checkpoints cover only the completed prefix and count only
once confirmed; a unit handed off starts nothing new, lets its running invocation finish and
checkpoints it before the hand-off returns; flow control pauses one unit alone; errors of one
unit leave the others alone. The same rules run against a real broker in
tests/integration/test_kafka_ownership.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import tests.handlers.blocking as tests_blocking
from runtime.invoke.invoker import FunctionError, InvocationResult
from runtime.metrics import MappingMetrics
from runtime.ordered.checkpoints import Checkpoint, CheckpointResult
from runtime.ordered.flow import FlowLimits
from runtime.ordered.pipeline import StreamPipeline
from runtime.pipeline.failure import RetryPolicy
from runtime.pipeline.records import Record
from runtime.sources.base import Assignment
from runtime.sources.kafka_records import (
    kafka_batch_info,
    kafka_event,
    kafka_identifier,
    kafka_record,
    partition_key,
)
from tests.unit.test_batch_execution import make_mapping

TOPIC = "t"


class Gauge:
    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value


class FakeSource:
    """An ordered source as the core sees it; checkpoints are confirmed unless ``down``."""

    envelope_bytes = 100
    parse_identifier = staticmethod(kafka_identifier)

    def __init__(self) -> None:
        self.paused: list[Hashable] = []
        self.resumed: list[Hashable] = []
        self.written: list[tuple[Hashable, int]] = []
        self.down = False
        self.gauges: dict[Hashable, Gauge] = {}
        self.closed = False

    async def check(self) -> None: ...

    async def start(self, sink: Any) -> None: ...

    def pause(self, units: list[Hashable]) -> None:
        self.paused.extend(units)

    def resume(self, units: list[Hashable]) -> None:
        self.resumed.extend(units)

    def stop_fetching(self) -> None: ...

    async def write_checkpoints(self, checkpoints: list[Checkpoint]) -> list[CheckpointResult]:
        if self.down:
            return [CheckpointResult(cp, "broker unreachable") for cp in checkpoints]
        self.written.extend((cp.unit, cp.position) for cp in checkpoints)
        return [CheckpointResult(cp) for cp in checkpoints]

    async def read_lag(self, confirmed: dict[Hashable, int | None]) -> dict[Hashable, float]:
        return {u: 100.0 - (c + 1 if c is not None else 0) for u, c in confirmed.items()}

    def lag_gauge(self, unit: Hashable) -> Gauge:
        return self.gauges.setdefault(unit, Gauge())

    def caught_up(self, unit: Hashable) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return kafka_event(
            [r.payload for r in records], bootstrap_servers="b:9092", event_source_arn=None
        )

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        return "KafkaBatchInfo", kafka_batch_info(
            [r.payload for r in records],
            payload_size=payload_size,
            bootstrap_servers="b:9092",
            event_source_arn=None,
        )


Script = Callable[[list[tuple[str, int]]], Awaitable[Any]]


class Invoker:
    """Runs ``script(ids)`` per invocation; records calls, with the running count."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.calls: list[list[tuple[str, int]]] = []
        self.running = 0
        self.most_running = 0
        self.stuck_handlers = 0

    async def invoke(
        self,
        event: dict[str, Any],
        metrics: MappingMetrics,
        start_if: Callable[[], bool] | None = None,
    ) -> InvocationResult | None:
        if start_if is not None and not start_if():
            return None
        ids = [(k, r["offset"]) for k, recs in event["records"].items() for r in recs]
        self.calls.append(ids)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            outcome = await self.script(ids) if self.script else None
        finally:
            self.running -= 1
        if isinstance(outcome, Exception):
            return InvocationResult("r", None, FunctionError(type(outcome).__name__, "x"), 0.0)
        return InvocationResult("r", outcome, None, 0.0)


ROOMY = FlowLimits(1000, 10**9)
QUICK_RETRIES = RetryPolicy(backoff_seconds=0.05, backoff_max_seconds=0.05)


class Harness:
    def __init__(
        self,
        script: Script | None = None,
        *,
        flow: FlowLimits = ROOMY,
        retry: RetryPolicy = QUICK_RETRIES,
        batch_size: int = 100,
        window: float = 0.0,
        tumbling: int = 0,
    ) -> None:
        self.mapping = make_mapping(False)
        if tumbling:
            object.__setattr__(self.mapping.raw, "tumbling_window_in_seconds", tumbling)
        object.__setattr__(self.mapping, "batch_size", batch_size)
        object.__setattr__(self.mapping, "batching_window_seconds", window)
        self.source = FakeSource()
        self.invoker = Invoker(script)
        self.metrics = MappingMetrics.bind("fn", self.mapping.uuid)
        self.aborted: list[str] = []
        self.failures: list[str] = []
        self.pipeline = StreamPipeline(
            self.mapping,
            self.source,
            self.invoker,  # type: ignore[arg-type]
            self.metrics,
            concurrency=10,
            retry=retry,
            flow=flow,
            checkpoint_interval=3600,
            abort=self.aborted.append,
            on_source_failed=self.failures.append,
            on_runtime_error=self.failures.append,
            stuck_handlers=lambda: self.invoker.stuck_handlers,
        )

    def assign(self, part: int, token: int, confirmed: int | None = None) -> None:
        self.pipeline.assigned([Assignment(partition_key(TOPIC, part), token, confirmed)])

    def deliver(self, part: int, offsets: range, token: int, size: int = 10) -> list[Record]:
        lane = partition_key(TOPIC, part)
        recs = [
            Record(
                kafka_record(TOPIC, part, o, (1, int(time.time() * 1000)), None, b"v", None),
                size,
                (lane, o),
                o,
                lane,
                0.0,
                lane,
                token,
            )
            for o in offsets
        ]
        self.pipeline.accept(recs)
        return recs

    @property
    def committed(self) -> float:
        return self.metrics.committed._value.get()  # type: ignore[attr-defined]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_work_under_a_dead_token_never_counts() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def wait_for_gate(_: Any) -> None:
            await gate.wait()

        h = Harness(wait_for_gate)
        h.assign(0, token=1)
        h.deliver(0, range(3), token=1)
        await settle()
        assert h.invoker.running == 1
        # Lost (someone else may own it): nothing is waited for, nothing written.
        assert await h.pipeline.revoke({"t-0"}, lost=True) == []
        # Assigned again under a new token; the same offsets are fetched again.
        h.assign(0, token=2)
        h.deliver(0, range(3), token=2)
        gate.set()  # the old invocation and the new one finish
        await settle()
        assert len(h.invoker.calls) == 2
        state = h.pipeline.units.get("t-0")
        assert state is not None and state.token == 2
        assert state.tracker.passed == 3  # the new token's three records, not six
        await h.pipeline.checkpoint_round()
        assert h.source.written == [("t-0", 2)]
        assert h.committed == 3

    asyncio.run(scenario())


def test_a_unit_assigned_again_without_a_revoke_drops_the_old_tokens_batch() -> None:
    """Found by review: the open batch of the old token took the new token's records in,
    then the whole batch was dropped as not owned, and the new records never completed."""

    async def scenario() -> None:
        h = Harness(window=0.2)
        h.assign(0, token=1)
        h.deliver(0, range(3), token=1)  # waits in the open batch for its window
        h.assign(0, token=2)  # e.g. a lease taken back: no revoke in between
        h.deliver(0, range(3), token=2)
        await asyncio.sleep(0.4)
        assert h.invoker.calls == [[("t-0", 0), ("t-0", 1), ("t-0", 2)]]
        state = h.pipeline.units.get("t-0")
        assert state is not None and state.token == 2 and state.tracker.passed == 3

    asyncio.run(scenario())


def test_records_of_units_not_owned_are_dropped() -> None:
    async def scenario() -> None:
        h = Harness()
        h.assign(1, token=1)
        h.deliver(0, range(2), token=1)  # never assigned
        h.deliver(1, range(2), token=7)  # a stale token
        h.deliver(1, range(2, 4), token=1)
        await settle()
        assert h.invoker.calls == [[("t-1", 2), ("t-1", 3)]]

    asyncio.run(scenario())


def test_checkpoints_cover_the_completed_prefix_and_count_once_confirmed() -> None:
    async def scenario() -> None:
        h = Harness(batch_size=1)
        h.assign(0, token=1, confirmed=4)
        recs = h.deliver(0, range(5, 10), token=1)
        await settle()
        h.source.down = True
        await h.pipeline.checkpoint_round()
        assert h.committed == 0  # written, not confirmed: nothing counts
        assert h.source.lag_gauge("t-0").value == 100 - 5  # lag from the confirmed position
        assert h.metrics.checkpoint_failures._value.get() == 1  # type: ignore[attr-defined]
        h.source.down = False
        await h.pipeline.checkpoint_round()  # the failed checkpoint is due again
        assert h.source.written == [("t-0", 9)]
        assert h.committed == 5
        assert h.source.lag_gauge("t-0").value == 100 - 10
        await h.pipeline.checkpoint_round()
        assert h.source.written == [("t-0", 9)]  # nothing new: nothing written
        assert len(recs) == 5

    asyncio.run(scenario())


def test_the_checkpoint_waits_for_the_first_incomplete_record() -> None:
    async def scenario() -> None:
        h = Harness()
        h.assign(0, token=1)
        recs = h.deliver(0, range(5), token=1)
        h.pipeline.units.get("t-0").tracker.complete([])  # type: ignore[union-attr]
        await settle()
        # Out-of-order completions (ParallelizationFactor lanes) move it only over a prefix.
        h2 = Harness()
        h2.assign(0, token=1)
        state = h2.pipeline.units.get("t-0")
        assert state is not None
        state.tracker.track([0, 1, 2, 3])
        h2.pipeline.complete([recs[1], recs[3]])
        await h2.pipeline.checkpoint_round()
        assert h2.source.written == []
        h2.pipeline.complete([recs[0]])
        await h2.pipeline.checkpoint_round()
        assert h2.source.written == [("t-0", 1)]

    asyncio.run(scenario())


def test_a_unit_holding_too_many_records_or_bytes_is_paused_alone() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def wait_for_gate(_: Any) -> None:
            await gate.wait()

        h = Harness(wait_for_gate, flow=FlowLimits(max_records=10, max_bytes=1000), batch_size=2)
        h.assign(0, token=1)
        h.assign(1, token=1)
        h.assign(2, token=1)
        h.deliver(0, range(12), token=1)  # 12 records: past the record bound
        h.deliver(1, range(3), token=1)
        h.deliver(2, range(2), token=1, size=600)  # 1200 bytes: past the byte bound
        assert h.source.paused == ["t-0", "t-2"]
        gate.set()
        await settle()
        await asyncio.sleep(0.05)
        # Drained below half of both bounds: resumed.
        assert sorted(map(str, h.source.resumed)) == ["t-0", "t-2"]

    asyncio.run(scenario())


def test_a_hand_off_waits_for_the_running_invocation_and_checkpoints_it() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def slow(_: Any) -> None:
            await gate.wait()

        h = Harness(slow, batch_size=2)
        h.assign(0, token=1)
        h.deliver(0, range(6), token=1)
        await settle()
        assert h.invoker.calls == [[("t-0", 0), ("t-0", 1)]]
        revoke = asyncio.create_task(h.pipeline.revoke({"t-0"}))
        await settle()
        assert not revoke.done()  # waiting for the running invocation
        gate.set()
        final = await revoke
        # The running batch completed and is in the final checkpoint; the waiting batches
        # were dropped (the next owner reads them) and never invoked.
        assert [(cp.unit, cp.position) for cp in final] == [("t-0", 1)]
        assert h.invoker.calls == [[("t-0", 0), ("t-0", 1)]]
        assert h.pipeline.units.get("t-0") is None
        h.pipeline.confirm([CheckpointResult(cp) for cp in final])
        assert h.committed == 2

    asyncio.run(scenario())


def test_a_retrying_batch_stops_at_the_hand_off_without_waiting_out_its_backoff() -> None:
    async def scenario() -> None:
        async def fail(_: Any) -> Exception:
            return RuntimeError("boom")

        h = Harness(fail, retry=RetryPolicy(backoff_seconds=30.0, backoff_max_seconds=30.0))
        h.assign(0, token=1)
        h.deliver(0, range(3), token=1)
        await settle()
        assert len(h.invoker.calls) == 1  # now backing off for 30 s
        started = time.monotonic()
        final = await h.pipeline.revoke({"t-0"})
        assert time.monotonic() - started < 1.0
        assert final == []  # nothing completed
        await asyncio.sleep(0.05)
        assert len(h.invoker.calls) == 1  # and no retry after the hand-off

    asyncio.run(scenario())


def test_errors_on_one_unit_do_not_slow_the_others() -> None:
    async def scenario() -> None:
        async def script(ids: list[tuple[str, int]]) -> Exception | None:
            await asyncio.sleep(0.05)
            return RuntimeError("poison") if ids[0][0] == "t-0" else None

        h = Harness(script, batch_size=1)
        for p in range(4):
            h.assign(p, token=1)
        h.deliver(0, range(1), token=1)
        for p in (1, 2, 3):
            h.deliver(p, range(5), token=1)
        await asyncio.sleep(0.5)
        healthy = [c for c in h.invoker.calls if c[0][0] != "t-0"]
        assert len(healthy) == 15
        assert h.invoker.most_running == 4  # every unit ran side by side, errors or not
        await h.pipeline.revoke({"t-0", "t-1", "t-2", "t-3"})

    asyncio.run(scenario())


def test_a_stuck_handler_ends_the_worker_before_its_unit_is_handed_over() -> None:
    async def scenario() -> None:
        h = Harness(batch_size=1)
        h.assign(0, token=1)
        h.deliver(0, range(2), token=1)
        await settle()
        h.invoker.stuck_handlers = 1  # a handler thread still runs and cannot be stopped
        final = await h.pipeline.revoke({"t-0"})
        # What completed is checkpointed first; the worker ends once that is confirmed,
        # before the source lets the unit go.
        assert [(cp.unit, cp.position) for cp in final] == [("t-0", 1)]
        assert h.aborted == []
        h.pipeline.confirm([CheckpointResult(cp) for cp in final])
        assert h.aborted and "still running" in h.aborted[0]

        h2 = Harness(batch_size=1)
        h2.assign(0, token=1)
        h2.invoker.stuck_handlers = 1
        assert await h2.pipeline.revoke({"t-0"}) == []
        assert h2.aborted  # nothing to checkpoint: at once

        h3 = Harness(batch_size=1)
        h3.assign(0, token=1)
        h3.invoker.stuck_handlers = 1
        # Lost (a lease fenced off by its owner before it may expire; a Kafka session gone):
        # nothing is written, and a handler that cannot be stopped ends the worker at once.
        await h3.pipeline.revoke({"t-0"}, lost=True)
        assert h3.aborted and "still running" in h3.aborted[0]

    asyncio.run(scenario())


def test_a_cancelled_hand_off_wait_counts_a_running_handler_as_stuck() -> None:
    """Found by review: a batch cancelled at the end of the hand-off wait left its handler
    running, uncounted, so the unit was handed over while it ran."""
    from concurrent.futures import ThreadPoolExecutor

    from runtime.invoke.environments import EnvironmentPool
    from runtime.invoke.invoker import Invoker as RealInvoker

    async def scenario() -> None:
        release = threading.Event()
        h = Harness(batch_size=1)
        object.__setattr__(h.mapping.function, "timeout_seconds", 30)
        executor = ThreadPoolExecutor(2)
        real = RealInvoker(
            h.mapping.function,
            EnvironmentPool("tests.handlers.blocking.handler"),
            executor,
            concurrency_limit=None,
            on_stuck=lambda _: None,
        )
        h.invoker = real  # type: ignore[assignment]
        h.pipeline._dispatcher._execution._invoker = real
        tests_blocking.RELEASE = release
        h.assign(0, token=1)
        h.deliver(0, range(1), token=1)
        await asyncio.sleep(0.1)
        h.pipeline._handoff_wait = 0.2  # the wait runs out while the handler still runs
        await h.pipeline.revoke({"t-0"})
        assert real.stuck_handlers == 1
        assert h.aborted  # nothing completed: the worker ends at once
        release.set()
        await asyncio.sleep(0.1)
        assert real.stuck_handlers == 0
        executor.shutdown()

    asyncio.run(scenario())


def test_a_runtime_failure_inside_an_invocation_is_a_function_error_and_retried() -> None:
    async def scenario() -> None:
        h = Harness(batch_size=1)
        calls = {"n": 0}
        real = h.source.build_event

        def flaky(records: list[Record]) -> dict[str, Any]:
            calls["n"] += 1
            if calls["n"] <= 2:  # the first attempt (its size check, then its invocation)
                raise RecursionError("maximum recursion depth exceeded")
            return real(records)

        h.source.build_event = flaky  # type: ignore[method-assign]
        h.assign(0, token=1)
        h.deliver(0, range(2), token=1)
        await asyncio.sleep(0.3)
        assert h.metrics.errors._value.get() == 1  # type: ignore[attr-defined]
        assert h.pipeline.units.get("t-0").tracker.passed == 2  # type: ignore[union-attr]
        await h.pipeline.revoke({"t-0"})

    asyncio.run(scenario())


def test_a_runtime_failure_around_a_batch_stops_its_unit_and_restarts_the_worker() -> None:
    async def scenario() -> None:
        h = Harness(batch_size=1)

        async def bug(batch: Any) -> None:
            raise RuntimeError("a bug in the runtime")

        h.pipeline._dispatcher._execution.run = bug  # type: ignore[method-assign]
        h.assign(0, token=1)
        h.deliver(0, range(3), token=1)
        await settle()
        assert h.failures and "t-0" in h.failures[0]
        # Nothing later in the unit may start (it would break the unit's order); the worker
        # restarts and the unit resumes from its checkpoint.
        assert h.pipeline.units.owned("t-0", 1) is None
        assert h.metrics.batch_crashes._value.get() == 1  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_hand_off_waits_for_a_tumbling_window_s_final_invocation() -> None:
    """Found by review: the final invocation, made by the window's clock rather than by a
    batch, was not waited for, so the unit was handed over while it ran."""
    release = asyncio.Event()

    async def script(ids: list[tuple[str, int]]) -> Any:
        if not ids:  # the window's final invocation: runs until released
            await release.wait()
        return {"state": {"seen": len(ids)}}

    async def scenario() -> None:
        h = Harness(script, tumbling=2)
        h.assign(0, token=1)
        recs = h.deliver(0, range(3), token=1)
        old = (time.time() - 30) * 1000  # a window that ended long ago: closed by the clock
        for r in recs:
            r.timestamp_ms = old
        for _ in range(200):
            if [] in h.invoker.calls:
                break
            await asyncio.sleep(0.01)
        assert h.invoker.calls[0] != [] and [] in h.invoker.calls and h.invoker.running == 1
        assert h.pipeline.units.get("t-0") is not None
        final = await h.pipeline.revoke({"t-0"}, wait_seconds=0.3)
        # The revoke did not return while the final invocation ran (it was cancelled at the
        # end of the wait), and nothing of the window was checkpointed.
        assert h.invoker.running == 0
        assert final == []

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_lost_unit_s_running_batch_is_cancelled_at_once() -> None:
    """Lost (a lease fenced off before it may expire, a Kafka session gone): nothing of the
    unit may keep running, so its batch is cancelled without waiting."""
    release = asyncio.Event()

    async def script(ids: list[tuple[str, int]]) -> Any:
        await release.wait()
        return None

    async def scenario() -> None:
        h = Harness(script)
        h.assign(0, token=1)
        h.deliver(0, range(3), token=1)
        for _ in range(200):
            if h.invoker.running:
                break
            await asyncio.sleep(0.01)
        assert h.invoker.running == 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await h.pipeline.revoke({"t-0"}, lost=True) == []
        assert loop.time() - started < 1.5
        assert h.invoker.running == 0
        assert h.aborted == []  # nothing stuck: the worker goes on

    asyncio.run(asyncio.wait_for(scenario(), 10))
