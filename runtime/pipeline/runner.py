"""One mapping's share of work in one worker: pollers → batcher → invocations → acknowledgement.

Flow control counts *units*: a fetch in progress, the open batch, a batch waiting for a slot and
a batch in flight each count one. Pollers fetch only while units stay within the concurrency
limit, so the runtime never holds more messages than it can invoke soon (each one is burning
its visibility timeout, or holding a partition back). A finished batch wakes exactly one
waiting poller.

The concurrency limit comes from :class:`~runtime.pipeline.scaling.ConcurrencyScaler`, fed with
"a fetch came back full" (backlog) and "the function failed" (back off); partial batch failures
do not slow the mapping down, as on Lambda.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable

import structlog

from runtime.config.resolved import Mapping
from runtime.invoke.invoker import InvocationResult, Invoker
from runtime.invoke.response import SUCCESS, BatchOutcome, OutcomeKind, parse_batch_response
from runtime.metrics import MappingMetrics
from runtime.pipeline.batcher import Batcher
from runtime.pipeline.lanes import LaneQueue
from runtime.pipeline.records import Batch, Record
from runtime.pipeline.scaling import ConcurrencyScaler
from runtime.sources.base import Source

log = structlog.get_logger("runtime.pipeline")


def outcome_of(
    result: InvocationResult, records: list[Record], mapping: Mapping, source: Source
) -> BatchOutcome:
    """What an invocation result means for its batch (esm-spec §2)."""
    if result.error is not None:
        return BatchOutcome(OutcomeKind.FAILURE, reason=result.error.error_type)
    if not mapping.report_batch_item_failures:
        return SUCCESS
    return parse_batch_response(
        result.response, {r.item_id for r in records}, source.parse_identifier
    )


def split_by_outcome(
    outcome: BatchOutcome, records: list[Record]
) -> tuple[list[Record], list[Record]]:
    """(succeeded, failed) records of a batch.

    In a lane (FIFO message group, partition, shard) order is the point: once a record
    failed, every later record of its lane fails with it and comes back, even if the handler
    did not report it (Lambda's FIFO rule, and the streams' "checkpoint at the first failure").
    """
    if outcome.kind is OutcomeKind.SUCCESS:
        return records, []
    if outcome.kind is OutcomeKind.FAILURE:
        return [], records
    failed_ids = outcome.failed_ids
    stopped: set[Hashable] = set()  # lanes that have had a failure
    ok: list[Record] = []
    bad: list[Record] = []
    for r in records:
        if r.item_id in failed_ids or (r.lane is not None and r.lane in stopped):
            bad.append(r)
            if r.lane is not None:
                stopped.add(r.lane)
        else:
            ok.append(r)
    return ok, bad


class MappingPipeline:
    def __init__(
        self,
        mapping: Mapping,
        source: Source,
        invoker: Invoker,
        scaler: ConcurrencyScaler,
        metrics: MappingMetrics,
        *,
        max_pollers: int,
    ) -> None:
        self.mapping = mapping
        self._source = source
        self._invoker = invoker
        self._scaler = scaler
        self._metrics = metrics
        self._max_pollers = max_pollers
        self._batcher = Batcher(
            max_records=mapping.batch_size,
            window_seconds=mapping.batching_window_seconds,
            envelope_bytes=source.envelope_bytes,
        )
        self._lanes = LaneQueue()
        self._inflight: set[asyncio.Task[None]] = set()
        self._fetching = 0
        self._pollers: dict[int, asyncio.Task[None]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._window_timer: asyncio.TimerHandle | None = None
        self._control: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._source.start()
        self._metrics.touch()
        self._metrics.concurrency_limit.set(self._scaler.limit)
        self._control = asyncio.create_task(
            self._control_loop(), name=f"control-{self.mapping.uuid}"
        )
        self._resize_pollers()
        self._log.info(
            "mapping started",
            source=self.mapping.source.identity,
            batch_size=self.mapping.batch_size,
            window_seconds=self.mapping.batching_window_seconds,
            concurrency=self._scaler.limit,
            maximum_concurrency=self._scaler.policy.maximum,
        )

    async def drain(self, within_seconds: float) -> None:
        """Stop fetching, invoke what was fetched, wait for in-flight batches (bounded)."""
        self._stopping = True
        deadline = time.monotonic() + within_seconds
        if self._control is not None:
            self._control.cancel()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        pollers = list(self._pollers.values())
        for task in pollers:
            task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
        last = self._batcher.flush()
        if last is not None:
            self._lanes.push(last)
        while self._inflight or self._lanes:
            self._dispatch()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(
                set(self._inflight), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        if self._lanes:
            unsent = [r for b in self._lanes.drain() for r in b.records]
            self._log.warning("drain timeout: returning uninvoked records", records=len(unsent))
            await self._source.release(unsent)
        if self._inflight:
            self._log.warning(
                "drain timeout: batches still running are abandoned; their records will be "
                "delivered again",
                batches=len(self._inflight),
            )
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._source.close()
        self._metrics.concurrency_limit.set(0)

    # ----------------------------------------------------------------- flow control

    def _units(self) -> int:
        return (
            len(self._inflight)
            + len(self._lanes)
            + self._fetching
            + (1 if self._batcher.open_count else 0)
        )

    def _can_fetch(self) -> bool:
        return not self._stopping and self._units() < self._scaler.limit

    async def _wait_for_capacity(self) -> None:
        """Park until a batch finishes or the limit changes (then the caller re-checks)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def _kick(self, n: int = 1) -> None:
        """Wake up to ``n`` pollers waiting for capacity."""
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1

    def _resize_pollers(self) -> None:
        for i in range(self._poller_target()):
            task = self._pollers.get(i)
            if task is None or task.done():
                self._pollers[i] = asyncio.create_task(self._poll_loop(i), name=f"poll-{i}")
        self._kick(len(self._waiters))

    def _poller_target(self) -> int:
        return 0 if self._stopping else min(self._scaler.limit, self._max_pollers)

    async def _poll_loop(self, index: int) -> None:
        try:
            while True:
                if index >= self._poller_target():
                    # A wake-up meant for a poller must not die with this one.
                    self._kick()
                    return
                if not self._can_fetch():
                    await self._wait_for_capacity()
                    continue
                asked = min(self._source.max_fetch, self.mapping.batch_size)
                self._fetching += 1
                try:
                    records = await self._source.fetch(asked)
                finally:
                    self._fetching -= 1
                self._scaler.on_fetch(len(records), asked)
                if records:
                    self._metrics.polled.inc(len(records))
                    self._accept(records)
        finally:
            if self._pollers.get(index) is asyncio.current_task():
                del self._pollers[index]

    async def _control_loop(self) -> None:
        interval = self._scaler.policy.interval_seconds
        while True:
            await asyncio.sleep(interval)
            before = self._scaler.limit
            after = self._scaler.tick()
            if after != before:
                self._metrics.concurrency_limit.set(after)
                self._log.debug("concurrency limit", before=before, after=after)
                self._resize_pollers()
                self._dispatch()

    # ----------------------------------------------------------------- batches

    def _accept(self, records: list[Record]) -> None:
        for batch in self._batcher.add(records):
            self._lanes.push(batch)
        self._arm_window()
        self._dispatch()

    def _arm_window(self) -> None:
        deadline = self._batcher.deadline
        if deadline is None or self._window_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._window_timer = loop.call_at(deadline, self._on_window)

    def _on_window(self) -> None:
        self._window_timer = None
        batch = self._batcher.flush_due()
        if batch is not None:
            self._lanes.push(batch)
            self._dispatch()
        self._arm_window()

    def _dispatch(self) -> None:
        limit = self._scaler.limit if not self._stopping else max(1, self._scaler.limit)
        while len(self._inflight) < limit:
            batch = self._lanes.pop_runnable()
            if batch is None:
                return
            task = asyncio.create_task(self._run_batch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("batch processing crashed", error=repr(task.exception()))
        self._dispatch()
        self._kick()

    async def _run_batch(self, batch: Batch) -> None:
        m = self._metrics
        records = batch.records
        structlog.contextvars.bind_contextvars(
            event_source_mapping_uuid=self.mapping.uuid, function_name=self.mapping.function.name
        )
        m.inflight.inc()
        try:
            event = self._source.build_event(records)
            m.batch_size.observe(len(records))
            m.batch_bytes.observe(batch.payload_bytes)
            m.invoked.inc(len(records))
            result = await self._invoker.invoke(event, m)
            outcome = outcome_of(result, records, self.mapping, self._source)
            succeeded, failed = split_by_outcome(outcome, records)
            if failed:
                m.failed_invoke.inc(len(failed))
            if result.error is not None:
                self._scaler.on_function_error()
            acked = await self._source.complete(succeeded, failed)
            m.deleted.inc(acked)
            self._log_invocation(result, outcome, len(records), len(failed))
        finally:
            self._lanes.finish(batch)
            m.inflight.dec()

    def _log_invocation(
        self, result: InvocationResult, outcome: BatchOutcome, records: int, failed: int
    ) -> None:
        fields = {
            "records": records,
            "duration_ms": round(result.duration * 1000, 2),
            "outcome": outcome.kind.value,
        }
        if outcome.kind is OutcomeKind.SUCCESS:
            self._log.info("invocation", **fields)
            return
        fields["failed_records"] = failed
        if result.error is not None:
            fields["error_type"] = result.error.error_type
            fields["error_message"] = result.error.error_message[:2000]
        elif outcome.reason:
            fields["reason"] = outcome.reason
        self._log.warning("invocation", **fields)
