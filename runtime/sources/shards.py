"""Kinesis Data Streams and DynamoDB Streams as an ordered source: shards under leases.

A shard is a work unit of the ordered core (:mod:`runtime.ordered.pipeline`), which owns
batching, retries, ownership checks and checkpoints. This module reads shards:

- **which shards**: the lease coordinator (:mod:`runtime.leases.coordinator`) takes, renews,
  balances and gives back leases; every acquisition is a new ownership *token*. Shards are
  listed every ``ESM_SHARD_SYNC_SECONDS`` (and at once when one ends) and every new shard
  gets a lease, with its parents, so children wait for them;
- **reading**: one task per owned shard gets an iterator at the lease's checkpoint (or the
  mapping's StartingPosition; TRIM_HORIZON for children), reads pages, stamps each record
  with its shard, token and lane (the shard, or a ParallelizationFactor slot chosen by the
  hash of the partition key, so order per key holds), and hands them to the core. A paused
  shard (flow control) stops reading until resumed. A LATEST start is pinned as a checkpoint
  at the first record read, so a worker that dies before its first checkpoint does not make
  its successor skip what arrived meanwhile;
- **checkpoints**: the core's checkpoints are written through the lease (conditional on
  owner and counter: a worker that lost the lease cannot move them);
- **shard end**: when the iterator runs out, the shard is finished once everything read was
  completed and checkpointed; its lease is then checkpointed ``SHARD_END`` and freed, and
  the children become eligible;
- **hand-off** (another worker asked, the lease may expire, shutdown): the core finishes what
  runs and returns the final checkpoints, written through the lease before it is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import structlog

from runtime.config.model import StartingPosition
from runtime.config.resolved import Mapping
from runtime.invoke.response import IdentifierParser
from runtime.leases.coordinator import STORE_FAILED, LeaseCoordinator
from runtime.leases.store import END, Lease, LeaseStore, Position
from runtime.metrics import ITERATOR_AGE, MappingMetrics
from runtime.ordered.checkpoints import Checkpoint, CheckpointResult
from runtime.pipeline.records import Record
from runtime.sources.aws import error_code, is_unreachable
from runtime.sources.base import Assignment, SourceError, SourceUnreachable, UnitSink
from runtime.sources.health import SourceHealth
from runtime.sources.shard_apis import ExpiredIterator, Shard, ShardApi, Throttled
from runtime.sources.stream_records import StreamShape, stream_identifier

log = structlog.get_logger("runtime.sources.shards")

_ERROR_BACKOFF = (0.2, 10.0)
# Between tries of a final checkpoint the store refused (the lease is still ours).
FINAL_RETRY_SECONDS = 0.2
_GONE = object()  # the iterator of a shard that no longer exists


def _has_leased_descendant(shard: str, children: dict[str, list[str]], leased: set[str]) -> bool:
    todo = list(children.get(shard, ()))
    seen: set[str] = set()
    while todo:
        child = todo.pop()
        if child in leased:
            return True
        if child not in seen:
            seen.add(child)
            todo.extend(children.get(child, ()))
    return False


def _parents_first(shards: list[Shard]) -> list[Shard]:
    """Shards ordered so that each comes after its parents that are listed."""
    by_id = {s.shard_id: s for s in shards}
    out: list[Shard] = []
    seen: set[str] = set()

    def visit(s: Shard) -> None:
        if s.shard_id in seen:
            return
        seen.add(s.shard_id)
        for p in s.parents:
            if p in by_id:
                visit(by_id[p])
        out.append(s)

    for s in shards:
        visit(s)
    return out


@dataclass(eq=False)
class ShardState:
    """What the source keeps for one owned shard (loop only)."""

    lease: Lease
    token: int
    confirmed: int | None  # last checkpointed position (int of the sequence number)
    width: int = 0  # sequence numbers are zero-padded to this width (0: not padded)
    last_read: int | None = None
    last_read_seq: str | None = None
    millis_behind: float | None = None
    # (last position, arrival ms of the first record) per page read and not yet confirmed.
    pages: deque[tuple[int, float]] = field(default_factory=deque)
    reading: bool = True
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    iterator: Any = None  # the shard iterator or subscription being read
    from_oldest: bool = False  # the checkpoint was trimmed away: read from TRIM_HORIZON
    caught_up: bool = False  # the last read found nothing more (the reader is at the tip)
    started_at: float | None = None  # when the first iterator was got (epoch seconds)

    @property
    def shard(self) -> str:
        return self.lease.shard

    def sequence(self, position: int) -> str:
        return str(position).zfill(self.width)

    def stop(self) -> None:
        self.reading = False
        self.wake.set()
        self.resumed.set()
        self.progress.set()


def _confirmed(position: Position | None) -> int | None:
    if position is None or position.ended:
        return None
    seq = int(position.sequence)
    return seq if position.kind == "after" else seq - 1


class ShardSource:
    parse_identifier: IdentifierParser = staticmethod(stream_identifier)

    def __init__(
        self,
        mapping: Mapping,
        metrics: MappingMetrics,
        api: ShardApi,
        shape: StreamShape,
        store: LeaseStore,
        *,
        owner: str,
        failover_seconds: float,
        poll_seconds: float,
        sync_seconds: float,
        unreachable_after_seconds: float = 10.0,
    ) -> None:
        self.mapping = mapping
        self._metrics = metrics
        self._health = SourceHealth(
            metrics.source_unreachable,
            after_seconds=unreachable_after_seconds,
            source=mapping.source.identity,
        )
        self._api = api
        self._shape = shape
        self._store = store
        self._owner = owner
        self._failover = failover_seconds
        self._poll = poll_seconds
        self._sync_every = sync_seconds
        raw = mapping.raw
        self._start = raw.starting_position or StartingPosition.TRIM_HORIZON
        self._at = raw.starting_position_timestamp
        # A tumbling window keeps state per shard: the shard is then one lane.
        self._factor = 1 if raw.tumbling_window_in_seconds else raw.parallelization_factor or 1
        self._limit = api.max_page
        self.envelope_bytes = shape.envelope_bytes
        self._sink: UnitSink | None = None
        self._coordinator: LeaseCoordinator | None = None
        self._shards: dict[str, ShardState] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_now = asyncio.Event()
        self._fetching = True
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log.bind(event_source_mapping_uuid=mapping.uuid)

    # ------------------------------------------------------------------ event data

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return self._shape.build_event(records)

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        return self._shape.batch_info_key, self._shape.batch_info(records, payload_size)

    # ------------------------------------------------------------------ lifecycle

    async def check(self) -> None:
        await self._api.check()

    async def start(self, sink: UnitSink) -> None:
        self._sink = sink
        await self._api.check()
        try:
            await self._store.open()
            await self._sync_shards()
        except SourceError:
            raise
        except Exception as exc:
            kind = SourceUnreachable if is_unreachable(exc) else SourceError
            raise kind(f"cannot start reading {self.mapping.source.arn}: {exc}") from exc
        self._coordinator = LeaseCoordinator(
            self._store,
            self,
            owner=self._owner,
            failover_seconds=self._failover,
            label=self.mapping.uuid,
        )
        self._coordinator.start()
        self._sync_task = asyncio.create_task(self._sync_loop(), name="shard-sync")

    def stop_fetching(self) -> None:
        self._fetching = False
        if self._coordinator is not None:
            self._coordinator.stop_taking()
        for st in self._shards.values():
            st.stop()

    async def close(self) -> None:
        """Shutdown: stop taking leases, hand every owned shard over (the core returns the
        final checkpoints, written through the leases), free the leases. The coordinator
        keeps renewing until then: a drain that outlasts the failover time must not let
        another worker take a shard whose last batches are not checkpointed yet."""
        self.stop_fetching()
        self._closing = True
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        shards = list(self._shards.values())
        if shards and self._sink is not None:
            final = await self._sink.revoke({st.shard for st in shards})
            self._sink.confirm(await self._write_final(final))
            for st in shards:
                self._shards.pop(st.shard, None)
                if self._coordinator is not None:
                    await self._coordinator.release(st.shard, st.token)
        if self._coordinator is not None:
            await self._coordinator.stop()
        tasks = [st.task for st in shards if st.task is not None] + list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        await self._store.close()

    async def _write_final(self, checkpoints: list[Checkpoint]) -> list[CheckpointResult]:
        """The last checkpoints before a lease is freed, tried again while the store fails
        (a timeout under load) and the lease is still ours: freeing it at an older
        checkpoint would make the next owner do those batches again. The fence ends the
        tries (it drops a lease it could not renew in time), so does the failover time."""
        results = await self.write_checkpoints(checkpoints)
        deadline = time.monotonic() + self._failover
        while time.monotonic() < deadline:
            again = [
                r.checkpoint
                for r in results
                if r.error is not None
                and r.error.startswith(STORE_FAILED)
                and self._coordinator is not None
                and self._coordinator.token_of(str(r.checkpoint.unit)) == r.checkpoint.token
            ]
            if not again:
                break
            self._log.warning(
                "final checkpoint failed; trying again while the lease is ours",
                shards=[str(cp.unit) for cp in again],
                error=next(r.error for r in results if r.error),
            )
            await asyncio.sleep(FINAL_RETRY_SECONDS)
            retried = {id(r.checkpoint): r for r in await self.write_checkpoints(again)}
            results = [retried.get(id(r.checkpoint), r) for r in results]
        return results

    # ------------------------------------------------------------------ lease events

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def acquired(self, lease: Lease, token: int) -> None:
        assert self._sink is not None
        if not self._fetching:
            # Shutting down: give it straight back.
            assert self._coordinator is not None
            self._spawn(self._coordinator.release(lease.shard, token))
            return
        st = ShardState(lease, token, _confirmed(lease.checkpoint))
        if lease.checkpoint is not None and lease.checkpoint.sequence.startswith("0"):
            st.width = len(lease.checkpoint.sequence)
        st.resumed.set()
        self._shards[lease.shard] = st
        self._sink.assigned([Assignment(lease.shard, token, st.confirmed)])
        st.task = asyncio.create_task(self._read(st), name=f"shard-{lease.shard}")
        st.task.add_done_callback(lambda task: self._reader_ended(st, task))

    def _reader_ended(self, st: ShardState, task: asyncio.Task[None]) -> None:
        """A reader never dies silently: a failure hands its shard off (another worker, or
        this one again, resumes it from the checkpoint)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self._metrics.batch_crashes.inc()
        self._log.error(
            "shard reader failed; handing the shard off", shard=st.shard, error=repr(exc)
        )
        if self._shards.get(st.shard) is st and self._coordinator is not None:
            self.hand_off(st.shard, None)

    def lost(self, shard: str) -> None:
        st = self._shards.pop(shard, None)
        if st is None or self._sink is None:
            return
        st.stop()
        self._spawn(self._sink.revoke({shard}, lost=True))

    def hand_off(self, shard: str, within: float | None) -> None:
        st = self._shards.get(shard)
        if st is not None and not self._closing:  # closing hands every shard over
            self._spawn(self._hand_off(st, within))

    async def _hand_off(self, st: ShardState, within: float | None) -> None:
        assert self._sink is not None and self._coordinator is not None
        st.stop()
        final = await self._sink.revoke({st.shard}, wait_seconds=within)
        self._sink.confirm(await self._write_final(final))
        if self._shards.get(st.shard) is st:
            del self._shards[st.shard]
        await self._coordinator.release(st.shard, st.token)
        self._log.info("shard handed off", shard=st.shard)

    # ------------------------------------------------------------------ shard discovery

    async def _sync_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), timeout=self._sync_every)
            self._sync_now.clear()
            try:
                await self._sync_shards()
            except Exception as exc:
                self._metrics.polling_errors.inc()
                self._health.failed(repr(exc))
                self._log.warning("listing shards failed", error=repr(exc)[:500])

    async def _sync_shards(self) -> None:
        shards = await self._api.list_shards()
        existing = {lz.shard for lz in await self._store.list()}
        first = not existing
        latest = self._start is StartingPosition.LATEST
        leased = set(existing)
        new: list[tuple[str, tuple[str, ...]]] = []
        # Parents first (the listing may not be in that order), so that a shard's parents
        # are known when it is looked at.
        children: dict[str, list[str]] = {}
        for s in shards:
            for p in s.parents:
                children.setdefault(p, []).append(s.shard_id)
        for s in _parents_first(shards):
            if s.shard_id in existing:
                continue
            if _has_leased_descendant(s.shard_id, children, existing):
                continue  # read and ended before: its lease was deleted once its children began
            if latest and not s.open and (first or not any(p in leased for p in s.parents)):
                # Read from the tip: a closed shard holds nothing new, unless it descends from
                # a shard already read (it closed between two listings: read it, in order).
                continue
            parents = () if first and latest else tuple(p for p in s.parents if p in leased)
            new.append((s.shard_id, parents))
            leased.add(s.shard_id)
        if new:
            await self._store.ensure(new)
            self._log.info("shards found", shards=[s for s, _ in new])
            if self._coordinator is not None:
                self._coordinator.wake()

    async def _shard_gone(self, st: ShardState) -> bool:
        """A read said the shard or stream does not exist: which one? A stream that is gone
        ends the source (the worker restarts and reports it); a shard that is gone (trimmed
        after its retention, its records with it) is ended so that its children can start."""
        try:
            listed = {s.shard_id for s in await self._api.list_shards()}
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                assert self._sink is not None
                self._sink.source_failed(f"the stream {self.mapping.source.arn} no longer exists")
                st.stop()
                return True
            return False
        if st.shard in listed:
            return False
        self._log.error(
            "shard no longer exists (past the stream's retention); ending it so its children "
            "start: records it still held, if any, were trimmed by the stream",
            shard=st.shard,
        )
        self._metrics.polling_errors.inc()
        return True

    # ------------------------------------------------------------------ reading

    def _initial(self, lease: Lease) -> StartingPosition:
        if lease.parents and self._start is not StartingPosition.AT_TIMESTAMP:
            return StartingPosition.TRIM_HORIZON  # a child: from its very beginning
        return self._start

    async def _sleep(self, st: ShardState, seconds: float) -> None:
        st.wake.clear()
        if st.reading:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.wake.wait(), timeout=seconds)

    async def _iterator(self, st: ShardState) -> Any:
        delay = _ERROR_BACKOFF[0]
        while st.reading:
            position = (
                Position("after", st.last_read_seq)
                if st.last_read_seq is not None
                else None
                if st.from_oldest
                else st.lease.checkpoint
            )
            start = StartingPosition.TRIM_HORIZON if st.from_oldest else self._initial(st.lease)
            at = self._at
            if (
                start is StartingPosition.LATEST
                and st.started_at is not None
                and position is None
                and self._api.timestamps
            ):
                # A new iterator before the first record: from where the first one began
                # (Kinesis), not from a later tip that would skip what arrived meanwhile.
                start, at = StartingPosition.AT_TIMESTAMP, st.started_at
            # Taken before the call: records that arrive while LATEST is being resolved
            # are then still covered when a later iterator starts AT_TIMESTAMP from here.
            asked_at = time.time()
            try:
                got = await self._api.iterator(st.shard, position, start, at)
                if st.started_at is None:
                    st.started_at = asked_at
                return got
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException" and await self._shard_gone(st):
                    return _GONE
                if error_code(exc) == "TrimmedDataAccessException" and position is not None:
                    # The checkpoint is older than the stream's retention: what lay between
                    # is gone from the stream itself. Read from the oldest record left.
                    self._log.error(
                        "checkpoint older than the stream's retention; reading from the oldest "
                        "record left (records in between were trimmed by the stream)",
                        shard=st.shard,
                        checkpoint=position.encode(),
                    )
                    st.from_oldest = True
                    st.last_read_seq = None
                    continue
                self._metrics.polling_errors.inc()
                self._health.failed(repr(exc))
                self._log.warning(
                    "getting a shard iterator failed", shard=st.shard, error=repr(exc)
                )
                await self._sleep(st, delay)
                delay = min(delay * 2, _ERROR_BACKOFF[1])
        return None

    async def _read(self, st: ShardState) -> None:
        try:
            await self._read_shard(st)
        finally:
            await self._api.release(st.iterator)

    async def _read_shard(self, st: ShardState) -> None:
        assert self._sink is not None
        sink = self._sink
        pin = st.lease.checkpoint is None and self._initial(st.lease) is StartingPosition.LATEST
        iterator = st.iterator = await self._iterator(st)
        delay = _ERROR_BACKOFF[0]
        while st.reading and iterator is not None:
            if iterator is _GONE:
                if st.reading:
                    await self._end(st)
                return
            if not st.resumed.is_set():
                await st.resumed.wait()
                continue
            try:
                page = await self._api.read(iterator, self._limit)
            except ExpiredIterator:
                await self._api.release(iterator)
                iterator = st.iterator = await self._iterator(st)
                continue
            except Exception as exc:
                self._metrics.polling_errors.inc()
                if error_code(exc) == "ResourceNotFoundException" and await self._shard_gone(st):
                    iterator = _GONE
                    continue
                if not isinstance(exc, Throttled):
                    self._health.failed(repr(exc))
                    self._log.warning("reading a shard failed", shard=st.shard, error=repr(exc))
                await self._sleep(st, delay)
                delay = min(delay * 2, _ERROR_BACKOFF[1])
                continue
            delay = _ERROR_BACKOFF[0]
            self._health.answered()
            if not st.reading:
                return
            st.millis_behind = page.millis_behind
            st.caught_up = not page.records or page.millis_behind == 0
            if page.records:
                if pin and not await self._pin(st, self._api.sequence(page.records[0])):
                    return
                pin = False
                records = self._records(st, page.records)
                sink.accept(records)
            if page.next_iterator is None:
                st.caught_up = True
                await self._end(st)
                return
            iterator = page.next_iterator
            if not page.records and not self._api.push:
                await self._sleep(st, self._poll)

    async def _pin(self, st: ShardState, first: str) -> bool:
        """A LATEST start: record where reading began before anything is processed."""
        assert self._coordinator is not None
        while st.reading:
            err = await self._coordinator.checkpoint(st.shard, st.token, Position("at", first))
            if err is None:
                return True
            if self._coordinator.token_of(st.shard) != st.token:
                return False
            await self._sleep(st, 1.0)
        return False

    def _records(self, st: ShardState, raws: list[dict[str, Any]]) -> list[Record]:
        """Records for one page (the hot path: per-record work only)."""
        api, factor, shard, token = self._api, self._factor, st.shard, st.token
        out: list[Record] = []
        append = out.append
        for raw in raws:
            payload = api.payload(raw, shard)
            seq = api.sequence(raw)
            lane = shard if factor == 1 else f"{shard}#{api.lane_slot(raw, factor)}"
            append(
                Record(
                    payload,
                    api.size(raw, payload),
                    seq,
                    int(seq),
                    lane,
                    api.arrival_ms(raw, payload),
                    shard,
                    token,
                )
            )
        first_seq = str(out[0].item_id)
        if st.width == 0 and first_seq.startswith("0"):
            st.width = len(first_seq)
        st.last_read = out[-1].ack
        st.last_read_seq = str(out[-1].item_id)
        st.pages.append((out[-1].ack, out[0].timestamp_ms))
        return out

    async def _end(self, st: ShardState) -> None:
        """The shard has no more records: once everything read is checkpointed, mark it
        ended (its children become eligible) and free its lease."""
        assert self._coordinator is not None and self._sink is not None
        while (
            st.reading
            and st.last_read is not None
            and (st.confirmed is None or st.confirmed < st.last_read)
        ):
            st.progress.clear()
            await st.progress.wait()
        while st.reading:
            err = await self._coordinator.checkpoint(st.shard, st.token, END)
            if err is None:
                break
            if self._coordinator.token_of(st.shard) != st.token:
                return
            await self._sleep(st, 1.0)
        if not st.reading:
            return
        self._log.info("shard ended", shard=st.shard)
        st.stop()
        self._sink.confirm(await self._write_final(await self._sink.revoke({st.shard})))
        if self._shards.get(st.shard) is st:
            del self._shards[st.shard]
        await self._coordinator.release(st.shard, st.token)
        self._sync_now.set()

    # ------------------------------------------------------------------ the core's calls

    def pause(self, units: list[Hashable]) -> None:
        for u in units:
            st = self._shards.get(str(u))
            if st is not None:
                st.resumed.clear()

    def resume(self, units: list[Hashable]) -> None:
        for u in units:
            st = self._shards.get(str(u))
            if st is not None:
                st.resumed.set()

    async def write_checkpoints(self, checkpoints: list[Checkpoint]) -> list[CheckpointResult]:
        if not checkpoints:
            return []
        return list(await asyncio.gather(*(self._write(cp) for cp in checkpoints)))

    async def _write(self, cp: Checkpoint) -> CheckpointResult:
        st = self._shards.get(str(cp.unit))
        if st is None or st.token != cp.token or self._coordinator is None:
            return CheckpointResult(cp, "the shard's lease is no longer held")
        position = Position("after", st.sequence(cp.position))
        err = await self._coordinator.checkpoint(st.shard, cp.token, position)
        if err is None:
            if st.confirmed is None or cp.position > st.confirmed:
                st.confirmed = cp.position
            st.progress.set()
        return CheckpointResult(cp, err)

    async def read_lag(self, confirmed: dict[Hashable, int | None]) -> dict[Hashable, float]:
        now_ms = time.time() * 1000
        out: dict[Hashable, float] = {}
        for unit, last in confirmed.items():
            st = self._shards.get(str(unit))
            if st is None:
                continue
            pages = st.pages
            while pages and last is not None and pages[0][0] <= last:
                pages.popleft()
            if pages and pages[0][1]:
                out[unit] = max(0.0, now_ms - pages[0][1])
            else:
                out[unit] = st.millis_behind or 0.0
        return out

    def caught_up(self, unit: Hashable) -> bool:
        st = self._shards.get(str(unit))
        return st is None or st.caught_up

    def lag_gauge(self, unit: Hashable) -> Any:
        return ITERATOR_AGE.labels(self.mapping.function.name, self.mapping.uuid, str(unit))
