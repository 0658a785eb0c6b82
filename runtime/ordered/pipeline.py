"""The ordered-unit core: one ordered-source mapping (Kafka, Kinesis, DynamoDB Streams) in one
worker.

The source decides which units (partitions, shards) this worker owns and fetches their
records; everything else is here, once for every ordered source:

- **ownership** (:mod:`runtime.ordered.ownership`): records carry their unit and token; work
  starts only while the unit is owned under that token, checked before every invocation,
  retry, destination send and checkpoint;
- **checkpoints** (:mod:`runtime.ordered.tracker`, :mod:`runtime.ordered.checkpoints`): the
  contiguous completed prefix per unit, written every ``checkpoint_interval`` seconds, and
  synchronously when a unit is handed over; counted only once the source confirmed them;
- **flow control** (:mod:`runtime.ordered.flow`): a unit holding too many records or bytes
  is paused at the source alone, and resumed when it drained to half;
- **lag** gauges, from the confirmed checkpoint, refreshed with the checkpoints;
- **hand-off**: a revoked unit starts nothing new, its waiting records are dropped (the next
  owner reads them from the checkpoint), its running invocation may finish (bounded by the
  function's timeout), and what completed is checkpointed before the unit goes. A handler
  still running after that bound (a stuck sync handler, whose thread cannot be stopped) would
  overlap with the next owner: the worker is then ended (``abort``) right after the final
  checkpoints are written, before the unit can reach its next owner. Shutdown is the same
  hand-off, done by the source's close.

Batches are per lane (a partition; later a shard, or a ParallelizationFactor slot within one),
at most one in flight per lane. Concurrency is one batch per lane up to the mapping's share:
an error on one unit backs off that unit's retries only, never the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import operator
import time
from collections.abc import Callable, Hashable
from typing import Any

import structlog

from runtime.config.resolved import Mapping
from runtime.invoke.invoker import Invoker
from runtime.metrics import UNIT_BLOCKED, MappingMetrics
from runtime.ordered.checkpoints import Checkpoint, Checkpointer, CheckpointResult
from runtime.ordered.flow import FlowLimits, UnitFlow
from runtime.ordered.ownership import UnitState, UnitTable, wait_while_owned
from runtime.ordered.windows import (
    Key,
    ShardWindow,
    StateHook,
    WindowAcknowledger,
    WindowedExecution,
    WindowShape,
)
from runtime.pipeline.dispatch import BatchDispatcher, BatchRunner
from runtime.pipeline.execution import BatchExecution, Destination, RecordBuilder
from runtime.pipeline.failure import RetryPolicy
from runtime.pipeline.filtering import RecordFilter
from runtime.pipeline.records import Batch, Record
from runtime.sources.base import Assignment, OrderedSource

log = structlog.get_logger("runtime.ordered")

# Beyond the function's timeout, how long a hand-off waits for a batch to finish (a cancelled
# async handler unwinding, a destination write in progress).
HANDOFF_GRACE_SECONDS = 5.0
# How long a worker that must end (a handler stuck during a hand-off) waits for its final
# checkpoints to be written first.
ABORT_FALLBACK_SECONDS = 10.0


class UnitAcknowledger:
    """Execution's view of the core: ownership checks and completions."""

    def __init__(self, pipeline: StreamPipeline) -> None:
        self._p = pipeline

    def may_start(self, records: list[Record]) -> bool:
        # A batch never spans units (batches are per lane, lanes lie within one unit).
        r = records[0]
        return self._p.units.owned(r.unit, r.token) is not None

    async def wait(self, records: list[Record], seconds: float) -> bool:
        r = records[0]
        state = self._p.units.owned(r.unit, r.token)
        if state is None:
            return False
        if state.failing_since is None:
            state.failing_since = time.monotonic()
        return await wait_while_owned(state, seconds)

    async def settle(self, succeeded: list[Record], failed: list[Record]) -> None:
        # Retrying sources only ever settle records that are done: succeeded, or given up.
        self._p.complete(succeeded)


class StreamPipeline:
    def __init__(
        self,
        mapping: Mapping,
        source: OrderedSource,
        invoker: Invoker,
        metrics: MappingMetrics,
        *,
        concurrency: int,
        retry: RetryPolicy,
        flow: FlowLimits,
        checkpoint_interval: float,
        destination: Destination | None = None,
        record_builder: RecordBuilder | None = None,
        record_filter: RecordFilter | None = None,
        abort: Callable[[str], None],
        on_source_failed: Callable[[str], None],
        on_runtime_error: Callable[[str], None],
        stuck_handlers: Callable[[], int] = lambda: 0,
        blocked_after_seconds: float = 0.0,
    ) -> None:
        self.mapping = mapping
        self.units = UnitTable()
        self._source = source
        self._metrics = metrics
        self._concurrency = concurrency
        self._flow = flow
        self._interval = checkpoint_interval
        self._filter = record_filter
        self._abort = abort
        self._on_source_failed = on_source_failed
        self._on_runtime_error = on_runtime_error
        self._stuck_handlers = stuck_handlers
        self._blocked_after = blocked_after_seconds
        self._checkpointer = Checkpointer(metrics)
        runner: BatchRunner
        self._windows: WindowedExecution | None = None
        seconds = mapping.raw.tumbling_window_in_seconds or 0
        if seconds:
            windows: dict[Key, ShardWindow] = {}
            shape = WindowShape(
                source, windows, seconds, (mapping.source.arn or "").split("/consumer/")[0]
            )
            hook = StateHook(windows)
            self._windows = runner = WindowedExecution(
                BatchExecution(
                    mapping,
                    shape,
                    invoker,
                    metrics,
                    WindowAcknowledger(UnitAcknowledger(self), windows, self.release_flow),
                    retry=retry,
                    failure_shape=shape,
                    destination=destination,
                    record_builder=record_builder,
                    response_check=hook.check,
                ),
                shape,
                UnitAcknowledger(self),
                windows,
                hook,
                invoker,
                metrics,
                seconds=seconds,
                complete=lambda records: self.complete(records, flow_released=True),
                caught_up=source.caught_up,
            )
            envelope = shape.envelope_bytes
        else:
            runner = BatchExecution(
                mapping,
                source,
                invoker,
                metrics,
                UnitAcknowledger(self),
                retry=retry,
                failure_shape=source,
                destination=destination,
                record_builder=record_builder,
            )
            envelope = source.envelope_bytes
        self._dispatcher = BatchDispatcher(
            mapping,
            runner,
            metrics,
            envelope_bytes=envelope,
            limit=lambda: self._concurrency,
            on_done=lambda: None,
            on_crash=self._on_crash,
        )
        self._handoff_wait = mapping.function.timeout_seconds + HANDOFF_GRACE_SECONDS
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False
        self._abort_reason: str | None = None
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._metrics.touch(self._metrics.committed)
        self._metrics.concurrency_limit.set(self._concurrency)
        await self._source.start(self)
        self._ticker = asyncio.create_task(self._tick(), name=f"checkpoints-{self.mapping.uuid}")
        self._log.info(
            "mapping started",
            source=self.mapping.source.identity,
            batch_size=self.mapping.batch_size,
            window_seconds=self.mapping.batching_window_seconds,
            concurrency=self._concurrency,
        )

    async def drain(self, within_seconds: float) -> None:
        """Shutdown: nothing new starts, running invocations may finish within
        ``within_seconds``, then the source is closed, which hands every unit over through
        the same :meth:`revoke` a rebalance uses (so the final checkpoints are written in one
        place: a Kafka consumer's close revokes its partitions). Records fetched but not
        invoked are left to the next owner, which reads them again."""
        self._stopping = True
        self._source.stop_fetching()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self._quiesce({s.unit for s in self.units}, within_seconds)
        await self._source.close()
        if self._windows is not None:
            await self._windows.close()
        left = [str(s.unit) for s in self.units]
        if left:
            self._log.warning(
                "units not handed over by the source at close; the next owner resumes them "
                "from their last checkpoint",
                units=sorted(left),
            )
            for state in self.units:
                self._forget(state)
        self._metrics.concurrency_limit.set(0)

    # ----------------------------------------------------------------- the source's calls

    def assigned(self, units: list[Assignment]) -> None:
        for a in units:
            state = UnitState(a.unit, a.token, UnitFlow(self._flow), confirmed=a.confirmed)
            old = self.units.assign(state)
            if old is not None:  # assigned again without a revoke: the old token is dead
                self._dispatcher.discard_units({a.unit})
                self._forget(old)
            self._blocked_gauge(state).set(0)  # the series exists (at 0) while the unit is owned
        self._metrics.owned_units.set(len(self.units))
        self._log.info("units assigned", units=sorted(str(a.unit) for a in units))

    async def revoke(
        self, units: set[Hashable], *, lost: bool = False, wait_seconds: float | None = None
    ) -> list[Checkpoint]:
        wait = self._handoff_wait if wait_seconds is None else min(wait_seconds, self._handoff_wait)
        states = await self._quiesce(units, 0.0 if lost else wait, lost=lost)
        final: list[Checkpoint] = []
        for state in states:
            if not lost:
                cp = self._checkpointer.final(state)
                if cp is not None:
                    final.append(cp)
            self._forget(state)
        self._metrics.owned_units.set(len(self.units))
        if states:
            self._log.info("units lost" if lost else "units revoked", units=sorted(map(str, units)))
        if self._abort_reason is not None and not final:
            self._abort(self._abort_reason)
        return final

    def confirm(self, results: list[CheckpointResult]) -> None:
        self._checkpointer.confirm(results)
        if self._abort_reason is not None:
            # The final checkpoints of a hand-off that found a handler still running are
            # written: end the worker now, before its units go to their next owner.
            self._abort(self._abort_reason)

    def accept(self, records: list[Record]) -> None:
        if not records or self._stopping:
            return
        self._metrics.polled.inc(len(records))
        kept: list[Record] = []
        to_pause: list[Hashable] = []
        for unit, recs in _by_unit(records).items():
            # One delivery of one unit is fetched under one token.
            state = self.units.owned(unit, recs[0].token)
            if state is None:
                continue  # fetched just before a revoke: the next owner reads them again
            state.tracker.track(list(map(_ack, recs)))
            if state.flow.hold(len(recs), sum(map(_size, recs))):
                to_pause.append(unit)
            if kept:
                kept.extend(recs)
            else:
                kept = recs
        if to_pause:
            self._source.pause(to_pause)
        if self._filter is not None:
            kept, dropped = self._filter.split(kept)
            if dropped:
                # Filtered out: done, so the checkpoint moves past them (Lambda's behaviour).
                self._metrics.filtered_out.inc(len(dropped))
                self.complete(dropped)
        if not kept:
            return
        self._dispatcher.add_by_lane(kept)
        self._dispatcher.arm_window()
        self._dispatcher.dispatch()

    def source_failed(self, reason: str) -> None:
        self._log.error("event source failed; the worker drains and restarts", reason=reason)
        self._on_source_failed(reason)

    # ----------------------------------------------------------------- completions

    def release_flow(self, records: list[Record]) -> None:
        """Records that no longer count against their unit's flow bounds though they are not
        complete yet (a tumbling window's records, awaiting its final invocation)."""
        to_resume: list[Hashable] = []
        for r in records:
            state = self.units.completable(r.unit, r.token)
            if state is not None and state.flow.release(1, r.size) and not self._stopping:
                to_resume.append(r.unit)
        if to_resume:
            self._source.resume(to_resume)

    def complete(self, records: list[Record], *, flow_released: bool = False) -> None:
        """Records done (succeeded, filtered out, or handed to the on-failure destination);
        ``flow_released``: their flow counts were already given back (:meth:`release_flow`)."""
        to_resume: list[Hashable] = []
        for unit, recs in _by_unit(records).items():
            token = recs[0].token
            if recs[-1].token != token or len(set(map(_token, recs))) != 1:
                # Records of two ownerships of one unit in one call (rare): each on its own.
                for again in _by_token(recs):
                    self.complete(again, flow_released=flow_released)
                continue
            state = self.units.completable(unit, token)
            if state is None:
                continue  # revoked since: not ours to checkpoint
            before = state.tracker.passed
            state.tracker.complete(list(map(_ack, recs)))
            if state.failing_since is not None and state.tracker.passed != before:
                self._unblocked(state)
            if flow_released:
                continue
            if state.flow.release(len(recs), sum(map(_size, recs))) and not self._stopping:
                to_resume.append(unit)
        if to_resume:
            self._source.resume(to_resume)

    # ----------------------------------------------------------------- hand-off

    async def _quiesce(
        self, units: set[Hashable], wait_seconds: float, *, lost: bool = False
    ) -> list[UnitState]:
        """Hand ``units`` off: nothing new starts, what waits is dropped, running batches get
        ``wait_seconds`` to finish. Returns their states (still in the table)."""
        states = [s for u in units if (s := self.units.hand_off(u)) is not None]
        if not states:
            return []
        gone = {s.unit for s in states}
        dropped = self._dispatcher.discard_units(gone)
        if dropped:
            self._log.info(
                "handing off: dropping records not yet invoked (the next owner reads them)",
                units=sorted(str(s.unit) for s in states),
                records=dropped,
            )
        busy = [*self._dispatcher.running_units(gone)]
        if self._windows is not None:
            busy.extend(self._windows.running(gone))
        if busy:
            pending: set[asyncio.Task[None]] = set(busy)
            if wait_seconds > 0:
                _, pending = await asyncio.wait(busy, timeout=wait_seconds)
            # Still running (or the unit is lost: nothing may run on): a destination write,
            # an invocation started late (after a wait for reserved concurrency). Cancelling a
            # running handler does not stop it: the invoker then counts it as stuck until it
            # ends.
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._stuck_handlers() and self._abort_reason is None:
            # A handler still runs and cannot be stopped; handing its unit over would let two
            # invocations of one lane overlap. The worker ends once the final checkpoints
            # are written (or shortly, if they never come back); a lost unit has none to
            # write, so at once.
            self._abort_reason = "a handler is still running during a hand-off"
            if lost:
                self._abort(self._abort_reason)
            asyncio.get_running_loop().call_later(
                ABORT_FALLBACK_SECONDS, self._abort, self._abort_reason
            )
        return states

    def _forget(self, state: UnitState) -> None:
        self.units.drop(state)
        if self._windows is not None:
            self._windows.forget({state.unit})
        self._source.lag_gauge(state.unit).set(0)
        if state.failing_since is not None:
            self._unblocked(state)

    # ----------------------------------------------------------------- blocked units

    def _unblocked(self, state: UnitState) -> None:
        if state.blocked_reported:
            self._log.info(
                "unit no longer blocked",
                unit=str(state.unit),
                blocked_seconds=round(time.monotonic() - (state.failing_since or 0.0), 1),
            )
            self._blocked_gauge(state).set(0)
        state.failing_since = None
        state.blocked_reported = 0.0

    def _blocked_gauge(self, state: UnitState) -> Any:
        return UNIT_BLOCKED.labels(self.mapping.function.name, self.mapping.uuid, str(state.unit))

    def _report_blocked(self) -> None:
        """Beyond Lambda: say loudly when one failing batch holds a unit (Lambda lets one
        poison record block a shard for up to a week, silently)."""
        if self._blocked_after <= 0:
            return
        now = time.monotonic()
        for state in self.units:
            since = state.failing_since
            if since is None or now - since < self._blocked_after:
                continue
            self._blocked_gauge(state).set(now - since)
            if now - state.blocked_reported >= self._blocked_after:
                state.blocked_reported = now
                self._log.warning(
                    "unit blocked by a failing batch: nothing after it is processed until it "
                    "succeeds, expires (MaximumRecordAgeInSeconds) or runs out of retries "
                    "(MaximumRetryAttempts)",
                    unit=str(state.unit),
                    blocked_seconds=round(now - since, 1),
                    checkpoint=state.confirmed,
                )

    async def _on_crash(self, batch: Batch, exc: BaseException) -> None:
        """The runtime failed around a batch of an ordered unit. Its records never complete,
        so the checkpoint cannot pass them; nothing later in the unit may start either (that
        would break its order). The worker restarts, and the unit resumes from its checkpoint."""
        r = batch.records[0]
        self.units.hand_off(r.unit)
        self._dispatcher.discard_units({r.unit})
        self._on_runtime_error(f"the runtime failed while processing a batch of {r.unit}: {exc!r}")

    # ----------------------------------------------------------------- periodic work

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.checkpoint_round()

    async def checkpoint_round(self) -> None:
        """Write the checkpoints that are due, then refresh the lag and blocked gauges."""
        self._report_blocked()
        due = self._checkpointer.due(self.units)
        if due:
            try:
                results = await self._source.write_checkpoints(due)
            except Exception as exc:
                results = [CheckpointResult(cp, repr(exc)[:500]) for cp in due]
            self.confirm(results)
        owned = {s.unit: s.confirmed for s in self.units if not s.handing_off}
        if not owned:
            return
        try:
            lags = await self._source.read_lag(owned)
        except Exception as exc:
            self._log.warning("reading the lag failed", error=repr(exc)[:500])
            return
        for unit, lag in lags.items():
            if self.units.get(unit) is not None:
                self._source.lag_gauge(unit).set(lag)


_ack = operator.attrgetter("ack")
_size = operator.attrgetter("size")
_unit = operator.attrgetter("unit")
_token = operator.attrgetter("token")


def _by_unit(records: list[Record]) -> dict[Hashable, list[Record]]:
    """Records grouped by unit, each group in the given order. Per run of one unit, not per
    record: a delivery or a batch is one unit, so this is usually one slice of C work."""
    groups: dict[Hashable, list[Record]] = {}
    if records[0].unit == records[-1].unit and len(set(map(_unit, records))) == 1:
        groups[records[0].unit] = records
        return groups
    for unit, run in itertools.groupby(records, _unit):
        got = groups.get(unit)
        if got is None:
            groups[unit] = list(run)
        else:
            got.extend(run)
    return groups


def _by_token(records: list[Record]) -> list[list[Record]]:
    groups: dict[int, list[Record]] = {}
    for r in records:
        groups.setdefault(r.token, []).append(r)
    return list(groups.values())
