"""Self-managed Apache Kafka and Amazon MSK as an event source (a push source).

Each worker runs one consumer per Kafka mapping, all in the mapping's consumer group (default:
the mapping UUID), so partitions spread over workers and pods by the group protocol
(cooperative-sticky). A partition is a lane: its batches run one at a time, in offset order.

Threads: confluent-kafka's consumer blocks, so it lives on its own thread, which consumes,
builds Lambda-shaped records and hands them to the event loop; the loop owns every piece of
partition state (epochs, offset trackers), so nothing is shared across threads except a
queue of requests the loop sends the consumer thread (pause, resume, commit).

Delivery guarantees:
- offsets are committed only past the contiguous prefix of completed records, throttled
  (``ESM_KAFKA_COMMIT_INTERVAL_SECONDS``) and forced, synchronously, on revoke and shutdown;
- each assignment of a partition is an *epoch*: a batch of a partition that was revoked in
  the meantime completes into nothing (its records belong to the next owner, which resumes
  from the last commit), so no offset is ever committed for a partition this consumer does
  not own;
- a partition whose records pile up (slow handler) is paused on its own; the consumer keeps
  polling, so other partitions, heartbeats and rebalances go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import structlog
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from runtime.config.model import StartingPosition
from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.invoke.response import IdentifierParser
from runtime.metrics import OFFSET_LAG, MappingMetrics
from runtime.pipeline.offsets import OffsetTracker
from runtime.pipeline.records import Record
from runtime.sources.base import RecordSink, SourceError
from runtime.sources.kafka_auth import redacted
from runtime.sources.kafka_records import (
    envelope_size,
    kafka_batch_info,
    kafka_event,
    kafka_identifier,
    kafka_record,
    partition_key,
    record_size,
)

log = structlog.get_logger("runtime.sources.kafka")

_CONSUME_BATCH = 1000
_CONSUME_TIMEOUT = 0.05


@dataclass
class _Partition:
    """Loop-side state of one assigned partition (one epoch)."""

    topic: str
    partition: int
    epoch: int
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    committed: int = -1  # next offset to read, as last committed (-1: none)
    reported: int = 0  # tracker.passed already counted in CommittedEventCount
    paused: bool = False


class KafkaSource:
    mode: Literal["pull", "push"] = "push"
    batch_per_lane = True
    retries_in_process = True
    ack_metric = "committed"
    invoke_fetched_on_drain = False  # uncommitted records are read again by the next owner
    max_fetch = _CONSUME_BATCH
    parse_identifier: IdentifierParser = staticmethod(kafka_identifier)

    def __init__(
        self,
        mapping: Mapping,
        settings: Settings,
        metrics: MappingMetrics,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        security: dict[str, str],
        event_source_arn: str | None = None,
        client_id: str = "esm-runtime",
    ) -> None:
        self.mapping = mapping
        self._settings = settings
        self._metrics = metrics
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self._security = security
        self._arn = event_source_arn
        self._client_id = client_id
        self.envelope_bytes = envelope_size(bootstrap_servers, event_source_arn)
        self._consumer: Any = None
        self._sink: RecordSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._requests: queue.SimpleQueue[Callable[[Any], None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._partitions: dict[str, _Partition] = {}
        self._lane_names: dict[tuple[str, int], str] = {}
        self._epoch = 0
        self._draining = False
        self._ticker: asyncio.Task[None] | None = None
        bs = mapping.batch_size
        self._pause_at = max(4 * bs, 1000)
        self._resume_at = self._pause_at // 2

    # ------------------------------------------------------------------ config

    def consumer_config(self) -> dict[str, Any]:
        s = self._settings
        position = self.mapping.raw.starting_position or StartingPosition.TRIM_HORIZON
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "client.id": self._client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "auto.offset.reset": "latest" if position is StartingPosition.LATEST else "earliest",
            "session.timeout.ms": s.kafka_session_timeout_ms,
            "heartbeat.interval.ms": max(100, s.kafka_session_timeout_ms // 3),
            "fetch.wait.max.ms": s.kafka_fetch_wait_max_ms,
            "max.poll.interval.ms": max(300_000, s.kafka_session_timeout_ms),
            **self._security,
            **s.kafka_consumer_config,
        }
        return conf

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: RecordSink | None = None) -> None:
        assert sink is not None, "a push source needs a sink"
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        conf = self.consumer_config()
        # Passwords, private keys and client certificates are masked.
        log.info("kafka consumer", settings=redacted(conf))
        try:
            self._consumer = Consumer(conf, logger=None)
        except Exception as exc:
            raise SourceError(f"invalid Kafka consumer settings: {exc}") from exc
        await self._check_topic()
        self._consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._thread = threading.Thread(
            target=self._consume_loop, name=f"kafka-{self.mapping.uuid[:8]}", daemon=True
        )
        self._thread.start()
        self._ticker = asyncio.create_task(self._tick(), name="kafka-commit")

    async def check(self) -> None:
        """Pre-flight (supervisor): the brokers answer and the topic exists."""
        try:
            self._consumer = Consumer(self.consumer_config(), logger=None)
        except Exception as exc:
            raise SourceError(f"invalid Kafka consumer settings: {exc}") from exc
        try:
            await self._check_topic()
        finally:
            self._consumer.close()
            self._consumer = None

    async def _check_topic(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            md = await loop.run_in_executor(
                None, lambda: self._consumer.list_topics(self.topic, timeout=15)
            )
        except Exception as exc:
            raise SourceError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        topic = md.topics.get(self.topic)
        if topic is None or topic.error is not None:
            reason = topic.error if topic is not None else "unknown topic"
            raise SourceError(
                f"Kafka topic {self.topic!r} is not available on {self.bootstrap_servers}: {reason}"
            )

    def stop_fetching(self) -> None:
        """Shutdown: deliver nothing more; what was delivered is invoked and committed."""
        self._draining = True
        self._request(lambda c: c.pause(c.assignment()))

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._thread is None:
            return
        self._draining = True
        final = self._commit_positions()
        done = threading.Event()

        def finish(consumer: Any) -> None:
            if final:
                self._commit_sync(consumer, final, "shutdown")
            self._stop.set()
            done.set()

        self._request(finish)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._thread.join, 30)
        for p in self._partitions.values():
            self._lag_gauge(p).set(0)
        self._partitions.clear()

    # ------------------------------------------------------------------ consumer thread

    def _request(self, fn: Callable[[Any], None]) -> None:
        self._requests.put(fn)

    def _consume_loop(self) -> None:
        consumer = self._consumer
        loop = self._loop
        assert loop is not None
        try:
            while not self._stop.is_set():
                while True:
                    try:
                        self._requests.get_nowait()(consumer)
                    except queue.Empty:
                        break
                if self._stop.is_set():
                    break
                # Wait for the first message only, then take whatever else is ready without
                # waiting: consume(n, timeout) would hold every record until n arrived or the
                # timeout passed (up to 50 ms of added latency on a steady stream).
                first = consumer.poll(_CONSUME_TIMEOUT)
                if first is None:
                    continue
                messages = [first, *consumer.consume(_CONSUME_BATCH - 1, 0)]
                if messages:
                    records = self._records(messages)
                    if records:
                        loop.call_soon_threadsafe(self._deliver, records)
        except Exception as exc:  # never silently: the worker must know its consumer died
            log.error("kafka consumer thread failed", error=repr(exc))
            loop.call_soon_threadsafe(self._consumer_died, repr(exc))
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _records(self, messages: list[Any]) -> list[Record]:
        """Lambda-shaped records for consumed messages (the hot path: per-record work only)."""
        out: list[Record] = []
        append = out.append
        lanes = self._lane_names
        for m in messages:
            if m.error() is not None:
                self._consume_error(m.error())
                continue
            topic, part, offset = m.topic(), m.partition(), m.offset()
            key, value, headers, ts = m.key(), m.value(), m.headers(), m.timestamp()
            lane = lanes.get((topic, part))
            if lane is None:
                lane = lanes[(topic, part)] = partition_key(topic, part)
            append(
                Record(
                    kafka_record(topic, part, offset, ts, key, value, headers),
                    record_size(topic, key, value, headers),
                    (lane, offset),
                    None,  # ack: (lane, offset, epoch), stamped on the loop
                    lane,
                    float(ts[1]) if ts[0] else 0.0,
                )
            )
        return out

    def _consume_error(self, err: Any) -> None:
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka consume error", error=str(err))
            self._metrics.polling_errors.inc()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        position = self.mapping.raw.starting_position
        committed = consumer.committed(partitions, timeout=15)
        start: dict[str, int] = {}
        if position is StartingPosition.AT_TIMESTAMP:
            need = [p for p in committed if p.offset < 0]
            if need:
                at = int((self.mapping.raw.starting_position_timestamp or 0) * 1000)
                found = consumer.offsets_for_times(
                    [TopicPartition(p.topic, p.partition, at) for p in need], timeout=15
                )
                for p in found:
                    start[partition_key(p.topic, p.partition)] = (
                        p.offset if p.offset >= 0 else OFFSET_END
                    )
        for p in partitions:
            k = partition_key(p.topic, p.partition)
            if k in start:
                p.offset = start[k]
        consumer.incremental_assign(partitions)
        info = [
            (p.topic, p.partition, c.offset) for p, c in zip(partitions, committed, strict=True)
        ]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._assigned, info)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        lanes = {partition_key(p.topic, p.partition) for p in partitions}
        wait = self._settings.kafka_revoke_wait_seconds
        assert self._loop is not None
        try:
            final = asyncio.run_coroutine_threadsafe(self._revoked(lanes, wait), self._loop).result(
                wait + 10
            )
        except Exception as exc:
            log.error("revoke handling failed; not committing", error=repr(exc))
            final = []
        if final:
            self._commit_sync(consumer, final, "revoke")
        with contextlib.suppress(Exception):
            consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: someone else may own them already; commit nothing.
        lanes = {partition_key(p.topic, p.partition) for p in partitions}
        assert self._loop is not None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._revoked(lanes, 0, lost=True), self._loop).result(
                10
            )
        with contextlib.suppress(Exception):
            consumer.incremental_unassign(partitions)

    def _commit_sync(self, consumer: Any, offsets: list[TopicPartition], why: str) -> None:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            log.info(
                "committed",
                reason=why,
                offsets={partition_key(o.topic, o.partition): o.offset for o in offsets},
            )
        except Exception as exc:
            log.error("commit failed", reason=why, error=str(exc))

    # ------------------------------------------------------------------ event loop side

    def _assigned(self, info: list[tuple[str, int, int]]) -> None:
        for topic, part, committed in info:
            self._epoch += 1
            self._partitions[partition_key(topic, part)] = _Partition(
                topic, part, self._epoch, committed=committed
            )
        log.info(
            "partitions assigned",
            partitions=sorted(partition_key(t, p) for t, p, _ in info),
            group=self.group_id,
        )

    async def _revoked(
        self, lanes: set[str], wait: float, lost: bool = False
    ) -> list[TopicPartition]:
        assert self._sink is not None
        await self._sink.revoke(set[Hashable](lanes), 0 if lost else wait)
        final: list[TopicPartition] = []
        for lane in lanes:
            p = self._partitions.pop(lane, None)
            if p is None:
                continue
            self._lag_gauge(p).set(0)
            if not lost:
                pos = self._advance(p)
                if pos is not None:
                    final.append(TopicPartition(p.topic, p.partition, pos))
        log.info(
            "partitions lost" if lost else "partitions revoked",
            partitions=sorted(map(str, lanes)),
        )
        return final

    def _deliver(self, records: list[Record]) -> None:
        if self._draining or self._sink is None:
            return
        accepted: list[Record] = []
        offsets: dict[str, list[int]] = {}
        for r in records:
            lane = cast(str, r.lane)
            p = self._partitions.get(lane)
            if p is None:
                continue  # fetched just before a revoke: the new owner has it
            offset = cast(tuple[str, int], r.item_id)[1]
            r.ack = (lane, offset, p.epoch)
            accepted.append(r)
            got = offsets.get(lane)
            if got is None:
                offsets[lane] = [offset]
            else:
                got.append(offset)
        for lane, offs in offsets.items():
            self._partitions[lane].tracker.track(offs)
        if accepted:
            self._sink.accept(accepted)
        for lane in offsets:
            p = self._partitions[lane]
            if not p.paused and len(p.tracker) >= self._pause_at:
                p.paused = True
                self._request(_pause(TopicPartition(p.topic, p.partition)))

    def _consumer_died(self, reason: str) -> None:
        log.error("kafka consumer stopped; this worker will restart", reason=reason)
        raise SystemExit(78)  # surfaces through the loop: the worker exits and is restarted

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        """Mark records done (failed ones never reach here: they are retried or given up)."""
        done: dict[str, list[int]] = {}
        for r in succeeded:
            lane, offset, epoch = r.ack
            p = self._partitions.get(lane)
            if p is None or p.epoch != epoch:
                continue  # revoked since: not ours to commit
            got = done.get(lane)
            if got is None:
                done[lane] = [offset]
            else:
                got.append(offset)
        for lane, offsets in done.items():
            p = self._partitions[lane]
            p.tracker.complete(offsets)
            if p.paused and len(p.tracker) <= self._resume_at:
                p.paused = False
                self._request(_resume(TopicPartition(p.topic, p.partition)))
        return 0  # CommittedEventCount is counted when offsets are committed

    async def release(self, records: list[Record], delay_seconds: int = 0) -> None:
        """Nothing to give back: uncommitted records are read again by the next owner."""

    def _advance(self, p: _Partition) -> int | None:
        """The offset to commit for ``p`` if its completed prefix moved, counting it."""
        last = p.tracker.last_complete
        if last is None or last + 1 <= p.committed:
            return None
        passed = p.tracker.passed
        self._metrics.committed.inc(passed - p.reported)
        p.reported = passed
        p.committed = last + 1
        return p.committed

    def _commit_positions(self) -> list[TopicPartition]:
        out = []
        for p in self._partitions.values():
            pos = self._advance(p)
            if pos is not None:
                out.append(TopicPartition(p.topic, p.partition, pos))
        return out

    async def _tick(self) -> None:
        interval = self._settings.kafka_commit_interval_seconds
        while True:
            await asyncio.sleep(interval)
            offsets = self._commit_positions()
            if offsets:
                self._request(_commit_async(offsets))
            # Only the consumer thread may call the consumer: watermarks are read there.
            snapshot = [(p.topic, p.partition) for p in self._partitions.values()]
            self._request(self._read_watermarks(snapshot))

    def _read_watermarks(self, partitions: list[tuple[str, int]]) -> Callable[[Any], None]:
        def read(consumer: Any) -> None:
            marks = []
            for topic, part in partitions:
                with contextlib.suppress(Exception):
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, part), cached=True
                    )
                    marks.append((topic, part, low, high))
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._update_lag, marks)

        return read

    def _update_lag(self, marks: list[tuple[str, int, int, int]]) -> None:
        for topic, part, low, high in marks:
            p = self._partitions.get(partition_key(topic, part))
            if p is None or high < 0:
                continue
            base = p.committed if p.committed >= 0 else low
            self._lag_gauge(p).set(max(0, high - base))

    def _lag_gauge(self, p: _Partition) -> Any:
        return OFFSET_LAG.labels(
            self.mapping.function.name, self.mapping.uuid, p.topic, str(p.partition)
        )

    # ------------------------------------------------------------------ events

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return kafka_event(
            [r.payload for r in records],
            bootstrap_servers=self.bootstrap_servers,
            event_source_arn=self._arn,
        )

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        return "KafkaBatchInfo", kafka_batch_info(
            [r.payload for r in records],
            payload_size=payload_size,
            bootstrap_servers=self.bootstrap_servers,
            event_source_arn=self._arn,
        )

    def unit_of(self, records: list[Record]) -> str:
        return str(records[0].lane) if records else self.topic

    async def fetch(self, max_records: int) -> list[Record]:  # pragma: no cover - push source
        raise NotImplementedError("KafkaSource is a push source")


def _pause(tp: TopicPartition) -> Callable[[Any], None]:
    return lambda consumer: consumer.pause([tp])


def _resume(tp: TopicPartition) -> Callable[[Any], None]:
    return lambda consumer: consumer.resume([tp])


def _commit_async(offsets: list[TopicPartition]) -> Callable[[Any], None]:
    return lambda consumer: consumer.commit(offsets=offsets, asynchronous=True)
