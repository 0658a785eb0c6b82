"""From records to running batches: batchers, lanes, the concurrency limit, batch tasks.

Both pipeline shapes (queue sources: :mod:`runtime.pipeline.queue`; ordered sources:
:mod:`runtime.ordered.pipeline`) hand their records to one :class:`BatchDispatcher`:

- records are batched per key (one :class:`~runtime.pipeline.batcher.Batcher` per lane for
  ordered sources, one for a whole queue), closing at BatchSize, 6 MB or the window's end;
- closed batches wait in the :class:`~runtime.pipeline.lanes.LaneQueue` (one batch per lane in
  flight, arrival order);
- up to the concurrency limit, waiting batches run as tasks through the shared
  :class:`~runtime.pipeline.execution.BatchExecution`.

A batch task always ends: if the runtime itself fails while running it (a bug, not a handler
error, which execution already turns into a function error), the pipeline's ``on_crash``
decides what happens to its records, and the lane is freed.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

import structlog

from runtime.config.resolved import Mapping
from runtime.metrics import MappingMetrics
from runtime.pipeline.batcher import Batcher
from runtime.pipeline.lanes import LaneQueue
from runtime.pipeline.records import Batch, Record

log = structlog.get_logger("runtime.pipeline")
_lane = operator.attrgetter("lane")


class BatchRunner(Protocol):
    """Runs one batch to its end (:class:`~runtime.pipeline.execution.BatchExecution`, or a
    tumbling-window execution around it)."""

    async def run(self, batch: Batch) -> None: ...


class BatchDispatcher:
    def __init__(
        self,
        mapping: Mapping,
        execution: BatchRunner,
        metrics: MappingMetrics,
        *,
        envelope_bytes: int,
        limit: Callable[[], int],
        on_done: Callable[[], None],
        on_crash: Callable[[Batch, BaseException], Awaitable[None]],
    ) -> None:
        self.mapping = mapping
        self._execution = execution
        self._metrics = metrics
        self._envelope_bytes = envelope_bytes
        self._limit = limit
        self._on_done = on_done
        self._on_crash = on_crash
        self._batchers: dict[Hashable, Batcher] = {}
        self._lanes = LaneQueue()
        self._inflight: dict[asyncio.Task[None], Batch] = {}
        self._window_timer: asyncio.TimerHandle | None = None
        self._window_at = float("inf")
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )

    # ----------------------------------------------------------------- counts

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def waiting(self) -> int:
        return len(self._lanes)

    def open_batches(self) -> tuple[int, int]:
        """(open batches, room left in them before BatchSize)."""
        n = room = 0
        for b in self._batchers.values():
            if b.open_count:
                n += 1
                room += b.max_records - b.open_count
        return n, room

    # ----------------------------------------------------------------- records in

    def add(self, key: Hashable, records: list[Record]) -> None:
        """Batch ``records`` under ``key`` (a lane, or None for an unordered queue)."""
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = Batcher(
                max_records=self.mapping.batch_size,
                window_seconds=self.mapping.batching_window_seconds,
                envelope_bytes=self._envelope_bytes,
            )
        for batch in batcher.add(records):
            self._lanes.push(batch)

    def add_by_lane(self, records: list[Record]) -> None:
        """Batch records under their lanes. Records of one lane (a Kafka partition's
        delivery) are passed on whole, without grouping them record by record."""
        if not records:
            return
        lane = records[0].lane
        if records[-1].lane == lane and len(set(map(_lane, records))) == 1:
            self.add(lane, records)
            return
        by_lane: dict[Hashable, list[Record]] = {}
        for r in records:
            got = by_lane.get(r.lane)
            if got is None:
                by_lane[r.lane] = [r]
            else:
                got.append(r)
        for lane, recs in by_lane.items():
            self.add(lane, recs)

    def flush_open(self) -> None:
        """Close every open batch now (shutdown: invoke what was fetched)."""
        self.cancel_window()
        for batcher in self._batchers.values():
            last = batcher.flush()
            if last is not None:
                self._lanes.push(last)

    def discard_units(self, units: set[Hashable]) -> int:
        """Forget what waits or is being batched for work ``units`` (handed off); return how
        many records. Batches never span units, so a batch's first record names its unit."""
        dropped = sum(len(b) for b in self._lanes.discard(lambda b: b.records[0].unit in units))
        for key, batcher in list(self._batchers.items()):
            first = batcher.first
            if first is not None and first.unit in units:
                dropped += batcher.open_count
                del self._batchers[key]
        return dropped

    def take_all(self) -> list[Record]:
        """Remove and return every record not yet running (waiting or being batched)."""
        self.cancel_window()
        out = [r for b in self._lanes.drain() for r in b.records]
        for batcher in self._batchers.values():
            last = batcher.flush()
            if last is not None:
                out.extend(last.records)
        self._batchers.clear()
        return out

    # ----------------------------------------------------------------- windows

    def arm_window(self) -> None:
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

    def cancel_window(self) -> None:
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
            self._window_at = float("inf")

    def _on_window(self) -> None:
        self._window_timer = None
        self._window_at = float("inf")
        now = time.monotonic()
        for batcher in self._batchers.values():
            batch = batcher.flush_due(now)
            if batch is not None:
                self._lanes.push(batch)
        self.dispatch()
        self.arm_window()

    # ----------------------------------------------------------------- running

    def dispatch(self) -> None:
        limit = max(1, self._limit())
        while len(self._inflight) < limit:
            batch = self._lanes.pop_runnable()
            if batch is None:
                return
            task = asyncio.create_task(self._run(batch))
            self._inflight[task] = batch
            task.add_done_callback(self._done)

    def running(self) -> list[asyncio.Task[None]]:
        """Batch tasks in flight."""
        return list(self._inflight)

    def running_units(self, units: set[Hashable]) -> list[asyncio.Task[None]]:
        """Batch tasks in flight for work ``units``."""
        return [t for t, b in self._inflight.items() if b.records[0].unit in units]

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self.dispatch()
        self._on_done()

    async def _run(self, batch: Batch) -> None:
        structlog.contextvars.bind_contextvars(
            event_source_mapping_uuid=self.mapping.uuid, function_name=self.mapping.function.name
        )
        self._metrics.inflight.inc()
        self._metrics.batch_bytes.observe(batch.payload_bytes)
        try:
            await self._execution.run(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.error(
                "the runtime failed while processing a batch",
                error=repr(exc)[:1000],
                records=len(batch),
                first=str(batch.records[0].item_id),
                last=str(batch.records[-1].item_id),
            )
            self._metrics.batch_crashes.inc()
            await self._on_crash(batch, exc)
        finally:
            self._lanes.finish(batch)
            self._metrics.inflight.dec()
