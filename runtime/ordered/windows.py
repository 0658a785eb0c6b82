"""Tumbling windows (``TumblingWindowInSeconds``, Kinesis and DynamoDB Streams; esm-spec §2.6).

Records fall into fixed windows by their approximate arrival time (``start = floor(t / W) x
W``). Each shard carries a *state* between the invocations of a window: every event has the
window's bounds, the state the previous invocation returned, the shard id and the source
ARN; every response must return ``state`` (else the invocation failed). When the window is
over, one more invocation has ``isFinalInvokeForWindow: true`` (and no records) so the
function can act on the aggregate; only after it succeeded are the window's records
checkpointed, so a window interrupted by a failure, a restart or a hand-off is processed again
from its start with a fresh state. A state returned larger than 1 MB ends the window early
(``isWindowTerminatedEarly``: a final invocation with it, then the window goes on with a fresh
state). The final invocation is retried until it succeeds, while the shard is owned; the
failure policy (retries, record age, bisection, destinations) applies to the other
invocations as usual.

A window ends when a record of a later window is read, or, by the clock, a second after its
end once the shard's reader has caught up with the stream (a reader working through a backlog
closes windows by their records, so a window is never split by the clock). A record read after
its window was closed opens that window again, with a fresh state. State is per shard (and per
ownership token: a shard taken back after a loss starts afresh), so with a tumbling window a
shard is one lane (ParallelizationFactor does not split it). Completed records of an open
window no longer count against the shard's flow-control bounds, so a long window never pauses
its own shard.

Built around the shared execution: :class:`WindowedExecution` runs each batch window by window
through a :class:`~runtime.pipeline.execution.BatchExecution` whose event shape
(:class:`WindowShape`) adds the window fields, whose response hook takes the state, and whose
acknowledger (:class:`WindowAcknowledger`) holds completed records until the window's final
invocation succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import structlog

from runtime.invoke.invoker import Invoker
from runtime.metrics import MappingMetrics
from runtime.pipeline.execution import Acknowledger, BatchExecution
from runtime.pipeline.records import Batch, Record
from runtime.sources.base import FailureShape

log = structlog.get_logger("runtime.ordered.windows")

MAX_STATE_BYTES = 1024 * 1024
CLOSE_GRACE_SECONDS = 1.0
_FINAL_BACKOFF = (0.5, 30.0)


def window_of(timestamp_ms: float, seconds: int) -> int:
    """The start (epoch seconds) of the window a record arriving at ``timestamp_ms`` is in."""
    return int(timestamp_ms // 1000) // seconds * seconds


def _iso(epoch_s: int) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(eq=False)
class ShardWindow:
    """One shard's open window."""

    start: int | None = None
    state: Any = field(default_factory=dict)
    final: bool = False  # the invocation being built is the window's final one
    early: bool = False  # ... and ends it early (state over 1 MB)
    held: list[Record] = field(default_factory=list)  # completed, awaiting the final invoke
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.Task[None] | None = None
    closing: bool = False  # the timer is making the final invocation

    def reset(self) -> None:
        self.start, self.state, self.final, self.early = None, {}, False, False
        self.held = []


Key = tuple[Hashable, int]  # (shard, ownership token)


def key_of(record: Record) -> Key:
    return (record.unit, record.token)


class WindowShape:
    """The source's event shape plus the window fields of the shard's open window."""

    def __init__(self, shape: FailureShape, windows: dict[Key, ShardWindow], seconds: int,
                 source_arn: str) -> None:  # fmt: skip
        self._shape = shape
        self._windows = windows
        self._seconds = seconds
        self._arn = source_arn
        # Room for the window fields and the largest state, so no event passes 6 MB.
        self.envelope_bytes = shape.envelope_bytes + 400 + MAX_STATE_BYTES
        self.parse_identifier = shape.parse_identifier

    def window_event(self, key: Key, records: list[Record]) -> dict[str, Any]:
        w = self._windows.get(key)
        if w is None or w.start is None:
            # The window is gone (its shard handed off meanwhile): describe the records' own.
            w = ShardWindow(start=window_of(records[0].timestamp_ms, self._seconds))
        assert w.start is not None
        event = self._shape.build_event(records)
        event["window"] = {"start": _iso(w.start), "end": _iso(w.start + self._seconds)}
        event["state"] = w.state
        event["shardId"] = str(key[0])
        event["eventSourceARN"] = self._arn
        event["isFinalInvokeForWindow"] = w.final
        event["isWindowTerminatedEarly"] = w.early
        return event

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return self.window_event(key_of(records[0]), records)

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        return self._shape.batch_info(records, payload_size)


class WindowAcknowledger:
    """Ownership as the core says; completed records wait for the window's final invoke (and
    stop counting against the shard's flow-control bounds meanwhile)."""

    def __init__(
        self,
        acks: Acknowledger,
        windows: dict[Key, ShardWindow],
        release_flow: Callable[[list[Record]], None],
    ) -> None:
        self._acks = acks
        self._windows = windows
        self._release_flow = release_flow

    def may_start(self, records: list[Record]) -> bool:
        return self._acks.may_start(records)

    async def wait(self, records: list[Record], seconds: float) -> bool:
        return await self._acks.wait(records, seconds)

    async def settle(self, succeeded: list[Record], failed: list[Record]) -> None:
        if not succeeded:
            return
        w = self._windows.get(key_of(succeeded[0]))
        if w is None:
            return  # handed off meanwhile: the next owner processes the window again
        w.held.extend(succeeded)
        self._release_flow(succeeded)


class StateHook:
    """Every response of a windowed invocation must carry ``state``; it is kept for the
    shard's next invocation (ending the window early when it passes 1 MB)."""

    def __init__(self, windows: dict[Key, ShardWindow]) -> None:
        self._windows = windows
        self.too_big: set[Key] = set()

    def check(self, records: list[Record], response: Any) -> str | None:
        if not isinstance(response, dict) or "state" not in response:
            return "a tumbling-window response must be an object with a 'state' property"
        shard = key_of(records[0])
        w = self._windows.get(shard)
        if w is None:
            return None  # handed off meanwhile
        w.state = response["state"]
        try:
            size = len(json.dumps(response["state"], separators=(",", ":")))
        except (TypeError, ValueError):
            size = 0
        if size > MAX_STATE_BYTES:
            self.too_big.add(shard)
        return None


class WindowedExecution:
    """Runs batches of a tumbling-window mapping (the dispatcher's execution)."""

    def __init__(
        self,
        execution: BatchExecution,
        shape: WindowShape,
        acks: Acknowledger,
        windows: dict[Key, ShardWindow],
        hook: StateHook,
        invoker: Invoker,
        metrics: MappingMetrics,
        *,
        seconds: int,
        complete: Callable[[list[Record]], None],
        caught_up: Callable[[Hashable], bool],
    ) -> None:
        self._execution = execution
        self._shape = shape
        self._acks = acks
        self._windows = windows
        self._hook = hook
        self._invoker = invoker
        self._metrics = metrics
        self._seconds = seconds
        self._complete = complete  # the core's completion (checkpoint tracker)
        self._caught_up = caught_up  # whether the unit's reader has read all there is
        self._log = log.bind(event_source_mapping_uuid=execution.mapping.uuid)

    async def run(self, batch: Batch) -> None:
        shard = key_of(batch.records[0])
        w = self._windows.setdefault(shard, ShardWindow())
        async with w.lock:
            for start, records in self._by_window(batch.records):
                if w.start is not None and start != w.start and not await self._close(shard, w):
                    return
                if w.start is None:
                    w.start = start
                await self._execution.run(Batch(records, 0))
                if shard in self._hook.too_big:
                    self._hook.too_big.discard(shard)
                    if not await self._close(shard, w, early=True):
                        return
                    w.start = start  # the same window goes on, with a fresh state
            self._arm(shard, w)

    def _by_window(self, records: list[Record]) -> list[tuple[int, list[Record]]]:
        out: list[tuple[int, list[Record]]] = []
        for r in records:
            start = window_of(r.timestamp_ms, self._seconds)
            if out and out[-1][0] == start:
                out[-1][1].append(r)
            else:
                out.append((start, [r]))
        return out

    def _arm(self, shard: Key, w: ShardWindow) -> None:
        if w.start is None or (w.timer is not None and not w.timer.done()):
            return
        w.timer = asyncio.create_task(self._close_when_due(shard, w, w.start))

    async def _close_when_due(self, shard: Key, w: ShardWindow, start: int) -> None:
        now = dt.datetime.now(dt.UTC).timestamp()
        await asyncio.sleep(max(0.0, start + self._seconds + CLOSE_GRACE_SECONDS - now))
        # A reader behind the stream may still have records of this window to read: they
        # close it (a record of a later window), not the clock.
        while not self._caught_up(shard[0]):
            await asyncio.sleep(CLOSE_GRACE_SECONDS / 2)
            if w.start != start:
                return
        async with w.lock:
            if w.start == start:
                w.closing = True
                try:
                    await self._close(shard, w)
                finally:
                    w.closing = False

    def running(self, units: set[Hashable]) -> list[asyncio.Task[None]]:
        """Final invocations made by the clock for these units (the hand-off waits for them
        as for batches)."""
        return [
            w.timer
            for key, w in self._windows.items()
            if key[0] in units and w.closing and w.timer is not None and not w.timer.done()
        ]

    async def _close(self, shard: Key, w: ShardWindow, *, early: bool = False) -> bool:
        """The window's final invocation, retried until it succeeds; then its records are
        checkpointed. False when the shard was handed off meanwhile."""
        held = w.held
        if not held:
            # Nothing of this window was processed (all failed and given up, or nothing
            # invoked): no aggregate to act on.
            w.reset()
            return True
        w.final, w.early = True, early
        delay = _FINAL_BACKOFF[0]
        while True:
            if not self._acks.may_start(held):
                return False
            event = self._shape.window_event(shard, [])
            try:
                result = await self._invoker.invoke(
                    event, self._metrics, lambda: self._acks.may_start(held)
                )
            except Exception as exc:  # the runtime failed around the handler: try again
                self._log.error("final invocation of a window failed", error=repr(exc)[:500])
                result = None
            else:
                if result is None:
                    return False  # handed off while waiting to start
            problem = None
            if result is not None and result.error is None:
                problem = self._hook.check(held, result.response)
                self._hook.too_big.discard(shard)
            if result is not None and result.error is None and problem is None:
                break
            reason = problem or (result.error.error_message if result and result.error else "")
            self._log.warning(
                "final invocation of a window failed; retrying (the shard waits)",
                shard=str(shard[0]),
                window_start=_iso(w.start or 0),
                error=reason[:500],
                retry_in=delay,
            )
            if not await self._acks.wait(held, delay):
                return False
            delay = min(delay * 2, _FINAL_BACKOFF[1])
        self._log.info(
            "window closed",
            shard=str(shard[0]),
            window_start=_iso(w.start or 0),
            records=len(held),
            early=early,
        )
        w.reset()
        self._complete(held)
        return True

    def forget(self, units: set[Hashable]) -> None:
        """Units handed off: their windows start again from the checkpoint elsewhere."""
        for key in [k for k in self._windows if k[0] in units]:
            w = self._windows.pop(key)
            if w.timer is not None and not w.closing:
                w.timer.cancel()

    async def close(self) -> None:
        for w in self._windows.values():
            if w.timer is not None:
                w.timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w.timer
