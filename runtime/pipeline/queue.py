"""One queue-source mapping (SQS) in one worker: pollers → filter → batches → executions.

Pollers fetch while there is capacity, so the runtime never holds more messages than it can
invoke soon (each held SQS message burns visibility time). Capacity is counted in batches
against the concurrency limit (:class:`~runtime.pipeline.scaling.ConcurrencyScaler`): batches
running, batches waiting for a slot, batches being filled, and the batches the fetches in
progress will open. A fetch that only tops up a batch already being filled opens nothing, so
batches fill to BatchSize while there is a backlog, whatever the limit (with a limit of 1, the
one open batch keeps being filled instead of waiting out its window with one receive in it).

Failed messages are not retried here: the queue delivers them again after their visibility
timeout, and its redrive policy moves them to its DLQ. A function error steps the limit down,
except with ReportBatchItemFailures, where Lambda keeps polling at the same rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import structlog

from runtime.config.resolved import Mapping
from runtime.invoke.invoker import Invoker
from runtime.metrics import MappingMetrics
from runtime.pipeline.dispatch import BatchDispatcher
from runtime.pipeline.execution import BatchExecution
from runtime.pipeline.filtering import RecordFilter
from runtime.pipeline.records import Batch, Record
from runtime.pipeline.scaling import ConcurrencyScaler
from runtime.sources.base import QueueSource

log = structlog.get_logger("runtime.pipeline")

# SQS messages filtered out under ``FilteredOutMessages: Keep`` become visible again after this.
KEPT_MESSAGE_DELAY_SECONDS = 1


class QueueAcknowledger:
    """Queue sources own every message they received: nothing is ever handed off."""

    def __init__(self, source: QueueSource, metrics: MappingMetrics) -> None:
        self._source = source
        self._metrics = metrics

    def may_start(self, records: list[Record]) -> bool:
        return True

    async def wait(self, records: list[Record], seconds: float) -> bool:
        await asyncio.sleep(seconds)
        return True

    async def settle(self, succeeded: list[Record], failed: list[Record]) -> None:
        self._metrics.deleted.inc(await self._source.complete(succeeded, failed))


class QueuePipeline:
    def __init__(
        self,
        mapping: Mapping,
        source: QueueSource,
        invoker: Invoker,
        scaler: ConcurrencyScaler,
        metrics: MappingMetrics,
        *,
        max_pollers: int,
        record_filter: RecordFilter | None = None,
        release_filtered_out: bool = False,
    ) -> None:
        self.mapping = mapping
        self._source = source
        self._scaler = scaler
        self._metrics = metrics
        self._max_pollers = max_pollers
        self._filter = record_filter
        self._release_filtered_out = release_filtered_out
        self._acks = QueueAcknowledger(source, metrics)
        on_error = (
            (lambda: None) if mapping.report_batch_item_failures else scaler.on_function_error
        )
        self._dispatcher = BatchDispatcher(
            mapping,
            BatchExecution(
                mapping, source, invoker, metrics, self._acks, on_function_error=on_error
            ),
            metrics,
            envelope_bytes=source.envelope_bytes,
            limit=lambda: self._scaler.limit,
            on_done=self._kick,
            on_crash=self._on_crash,
        )
        self._background: set[asyncio.Task[None]] = set()
        self._fetching = 0  # records asked for by the fetches in progress
        self._pollers: dict[int, asyncio.Task[None]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._control: asyncio.Task[None] | None = None
        self._stopping = False
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._source.start()
        self._metrics.touch(self._metrics.deleted)
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
        """Stop fetching, invoke what was fetched, wait for in-flight batches (bounded), and
        make whatever is left visible again at once."""
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
        # Received messages are invisible to everyone else: invoke them now, window or not.
        self._dispatcher.flush_open()
        d = self._dispatcher
        while d.inflight or d.waiting:
            d.dispatch()
            remaining = deadline - time.monotonic()
            running = d.running()
            if remaining <= 0 or not running:
                break
            await asyncio.wait(running, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if self._background:
            await asyncio.wait(set(self._background), timeout=max(0.1, deadline - time.monotonic()))
        unsent = d.take_all()
        if unsent:
            self._log.warning("drain timeout: returning uninvoked records", records=len(unsent))
            await self._source.release(unsent)
        running = d.running()
        if running:
            self._log.warning(
                "drain timeout: batches still running are abandoned; their records will be "
                "delivered again",
                batches=len(running),
            )
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self._source.close()
        self._metrics.concurrency_limit.set(0)

    # ----------------------------------------------------------------- records in

    def accept(self, records: list[Record]) -> None:
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
        self._dispatcher.add(None, records)
        self._dispatcher.arm_window()
        self._dispatcher.dispatch()

    async def _settle_filtered_out(self, records: list[Record]) -> None:
        """Filtered-out messages are deleted, as Lambda does, or, with ``FilteredOutMessages:
        Keep``, made visible again for other consumers."""
        if self._release_filtered_out:
            # Not at once: this mapping's own pollers would receive them again immediately.
            await self._source.release(records, KEPT_MESSAGE_DELAY_SECONDS)
        else:
            await self._source.complete(records, [])

    async def _on_crash(self, batch: Batch, exc: BaseException) -> None:
        """The runtime failed around a batch: its messages come back through the queue."""
        await self._source.complete([], batch.records)

    # ----------------------------------------------------------------- capacity

    def _to_fetch(self) -> int:
        """How many records a poller may ask for now (0: none; wait for capacity).

        Topping up a batch being filled asks for no more than its room, so it never opens a
        batch the limit has no slot for (BatchSize 10: a receive that brought 3 is followed by
        one for up to 7)."""
        if self._stopping:
            return 0
        d = self._dispatcher
        open_batches, room = d.open_batches()
        free = room - self._fetching
        full = min(self._source.max_fetch, self.mapping.batch_size)
        if free > 0:
            return min(full, free)
        size = self.mapping.batch_size
        opening = -(-(self._fetching - room) // size)  # batches the fetches in progress open
        if d.inflight + d.waiting + open_batches + opening + 1 <= self._scaler.limit:
            return full
        return 0

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
        return 0 if self._stopping else min(self._scaler.limit, self._max_pollers)

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
                asked = self._to_fetch()
                if not asked:
                    await self._wait_for_capacity()
                    continue
                self._fetching += asked
                try:
                    records = await self._source.fetch(asked)
                finally:
                    self._fetching -= asked
                self._scaler.on_fetch(len(records), asked)
                self.accept(records)
                # Room may remain in an open batch: let a parked poller top it up too.
                self._kick()
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
                self._dispatcher.dispatch()
