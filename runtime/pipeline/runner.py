"""One mapping's share of work in one worker: fetch → batchers → lanes → executions.

Two ways records come in (:mod:`runtime.sources.base`):
- *pull* (SQS): poller tasks fetch while there is capacity. Flow control counts *units*: a
  fetch in progress, an open batch, a batch waiting for a slot and a batch in flight each
  count one, and pollers fetch only while units stay under the concurrency limit, so the
  runtime never holds more messages than it can invoke soon (each held SQS message burns
  visibility time). A finished batch wakes exactly one parked poller.
- *push* (Kafka): the source delivers records itself and pauses the lanes (partitions) whose
  records are not consumed fast enough; the pipeline never stops the whole source.

Records are batched by :class:`~runtime.pipeline.batcher.Batcher` (one per lane when the source
batches per lane, e.g. per Kafka partition), ordered by :class:`~runtime.pipeline.lanes.LaneQueue`
and run by :class:`~runtime.pipeline.execution.BatchExecution`. The concurrency limit comes from
:class:`~runtime.pipeline.scaling.ConcurrencyScaler`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable

import structlog

from runtime.config.resolved import Mapping
from runtime.invoke.invoker import Invoker
from runtime.metrics import MappingMetrics
from runtime.pipeline.batcher import Batcher
from runtime.pipeline.execution import BatchExecution, Destination, RecordBuilder
from runtime.pipeline.failure import RetryPolicy
from runtime.pipeline.filtering import RecordFilter
from runtime.pipeline.lanes import LaneQueue, lanes_of
from runtime.pipeline.records import Batch, Record
from runtime.pipeline.scaling import ConcurrencyScaler
from runtime.sources.base import Source

log = structlog.get_logger("runtime.pipeline")

# SQS messages filtered out under ``FilteredOutMessages: Keep`` become visible again after this.
KEPT_MESSAGE_DELAY_SECONDS = 1


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
        retry: RetryPolicy | None = None,
        destination: Destination | None = None,
        record_builder: RecordBuilder | None = None,
        record_filter: RecordFilter | None = None,
        release_filtered_out: bool = False,
    ) -> None:
        self.mapping = mapping
        self._filter = record_filter
        self._release_filtered_out = release_filtered_out
        self._background: set[asyncio.Task[None]] = set()
        self._source = source
        self._scaler = scaler
        self._metrics = metrics
        self._max_pollers = max_pollers
        self._execution = BatchExecution(
            mapping,
            source,
            invoker,
            metrics,
            retry=retry,
            destination=destination,
            record_builder=record_builder,
            on_function_error=scaler.on_function_error,
            stopping=lambda: self._stopping,
        )
        self._batchers: dict[Hashable, Batcher] = {}
        self._lanes = LaneQueue()
        self._inflight: dict[asyncio.Task[None], Batch] = {}
        self._fetching = 0
        self._pollers: dict[int, asyncio.Task[None]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._window_timer: asyncio.TimerHandle | None = None
        self._window_at = float("inf")
        self._control: asyncio.Task[None] | None = None
        self._stopping = False
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._source.start(self)
        self._metrics.touch(getattr(self._metrics, self._source.ack_metric))
        self._metrics.concurrency_limit.set(self._scaler.limit)
        self._control = asyncio.create_task(
            self._control_loop(), name=f"control-{self.mapping.uuid}"
        )
        if self._source.mode == "pull":
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
        self._source.stop_fetching()
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
        if self._source.invoke_fetched_on_drain:
            for batcher in self._batchers.values():
                last = batcher.flush()
                if last is not None:
                    self._lanes.push(last)
        else:
            left = sum(len(b) for b in self._lanes.drain())
            left += sum(b.open_count for b in self._batchers.values())
            self._batchers.clear()
            if left:
                self._log.info("shutdown: leaving fetched records to the next owner", records=left)
        while self._inflight or self._lanes:
            self._dispatch()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._inflight:
                break
            await asyncio.wait(
                set(self._inflight), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        if self._background:
            await asyncio.wait(set(self._background), timeout=max(0.1, deadline - time.monotonic()))
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

    # ----------------------------------------------------------------- push sources

    def accept(self, records: list[Record]) -> None:
        """Records from a push source (or from this pipeline's pollers)."""
        if not records:
            return
        self._metrics.polled.inc(len(records))
        if self._filter is not None:
            records, dropped = self._filter.split(records)
            if dropped:
                self._metrics.filtered_out.inc(len(dropped))
                task = asyncio.create_task(self._settle_filtered_out(dropped))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            if not records:
                return
        if not self._source.batch_per_lane:
            self._add(None, records)
        else:
            by_lane: dict[Hashable, list[Record]] = {}
            for r in records:
                by_lane.setdefault(r.lane, []).append(r)
            for lane, recs in by_lane.items():
                self._add(lane, recs)
        self._arm_window()
        self._dispatch()

    async def _settle_filtered_out(self, records: list[Record]) -> None:
        """Filtered-out records are acknowledged (SQS: deleted, as Lambda does; Kafka: the
        checkpoint moves past them), or, for SQS with ``FilteredOutMessages: Keep``, made
        visible again at once for other consumers."""
        if self._release_filtered_out:
            # Not at once: this mapping's own pollers would receive them again immediately.
            await self._source.release(records, KEPT_MESSAGE_DELAY_SECONDS)
        else:
            await self._source.complete(records, [])

    async def revoke(self, lanes: set[Hashable], wait_seconds: float) -> None:
        """Lanes moved to another consumer: drop what waits, let in-flight batches finish."""
        for lane in lanes:
            self._batchers.pop(lane, None)
        dropped = self._lanes.discard_lanes(lanes)
        if dropped:
            self._log.info(
                "lanes revoked; dropping their waiting records (the new owner fetches them)",
                lanes=sorted(map(str, lanes)),
                records=sum(len(b) for b in dropped),
            )
        busy = [t for t, b in self._inflight.items() if not lanes_of(b).isdisjoint(lanes)]
        if busy and wait_seconds > 0:
            await asyncio.wait(busy, timeout=wait_seconds)

    # ----------------------------------------------------------------- pull sources

    def _units(self) -> int:
        open_batches = sum(1 for b in self._batchers.values() if b.open_count)
        return len(self._inflight) + len(self._lanes) + self._fetching + open_batches

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

    def _poller_target(self) -> int:
        if self._stopping or self._source.mode != "pull":
            return 0
        return min(self._scaler.limit, self._max_pollers)

    def _resize_pollers(self) -> None:
        for i in range(self._poller_target()):
            task = self._pollers.get(i)
            if task is None or task.done():
                self._pollers[i] = asyncio.create_task(self._poll_loop(i), name=f"poll-{i}")
        self._kick(len(self._waiters))

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
                self.accept(records)
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

    def _add(self, key: Hashable, records: list[Record]) -> None:
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = Batcher(
                max_records=self.mapping.batch_size,
                window_seconds=self.mapping.batching_window_seconds,
                envelope_bytes=self._source.envelope_bytes,
            )
        for batch in batcher.add(records):
            self._lanes.push(batch)

    def _arm_window(self) -> None:
        deadlines = [d for b in self._batchers.values() if (d := b.deadline) is not None]
        if not deadlines:
            return
        first = min(deadlines)
        if self._window_timer is not None:
            if self._window_at <= first:
                return
            self._window_timer.cancel()
        self._window_at = first
        self._window_timer = asyncio.get_running_loop().call_at(first, self._on_window)

    def _on_window(self) -> None:
        self._window_timer = None
        self._window_at = float("inf")
        now = time.monotonic()
        for batcher in self._batchers.values():
            batch = batcher.flush_due(now)
            if batch is not None:
                self._lanes.push(batch)
        self._dispatch()
        self._arm_window()

    def _dispatch(self) -> None:
        limit = max(1, self._scaler.limit)
        while len(self._inflight) < limit:
            batch = self._lanes.pop_runnable()
            if batch is None:
                return
            task = asyncio.create_task(self._run_batch(batch))
            self._inflight[task] = batch
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("batch processing crashed", error=repr(task.exception()))
        self._dispatch()
        self._kick()

    async def _run_batch(self, batch: Batch) -> None:
        structlog.contextvars.bind_contextvars(
            event_source_mapping_uuid=self.mapping.uuid, function_name=self.mapping.function.name
        )
        self._metrics.inflight.inc()
        self._metrics.batch_bytes.observe(batch.payload_bytes)
        try:
            await self._execution.run(batch)
        finally:
            self._lanes.finish(batch)
            self._metrics.inflight.dec()
