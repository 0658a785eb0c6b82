"""Self-managed Apache Kafka and Amazon MSK as an ordered source: broker code only.

Each worker runs one consumer per Kafka mapping, all in the mapping's consumer group (default:
the mapping UUID), so partitions spread over workers and pods by the group protocol
(cooperative-sticky). A partition is a work unit of the ordered core
(:mod:`runtime.ordered.pipeline`), which owns everything beyond the broker: ownership,
checkpoints, flow control, hand-offs. This module only

- runs the consumer on its own thread (confluent-kafka blocks; only that thread ever calls
  the consumer, since concurrent calls from the event loop deadlocked), building Lambda-shaped
  records (:mod:`runtime.sources.kafka_records`) stamped with their partition and the
  partition's *assignment epoch* (its ownership token: every assignment is a new epoch);
- reports assignments, and, in the revoke callback, asks the core for the final checkpoints,
  commits them synchronously and reports the broker's answer before the partitions go;
- commits checkpoints on request (synchronously, on the consumer thread, so every result is
  the broker's), pauses and resumes partitions, reads watermarks for OffsetLag.

A partition assigned again is explicitly resumed: librdkafka keeps an application pause
across unassign/assign, so a partition paused for flow control, revoked and assigned again
would otherwise never be read again.

If the consumer thread fails, it tells the core (which drains the worker) and keeps serving
requests (the final commits) until it is told to stop.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import operator
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import structlog
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from runtime.config.model import StartingPosition
from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.invoke.response import IdentifierParser
from runtime.metrics import OFFSET_LAG, MappingMetrics
from runtime.ordered.checkpoints import Checkpoint, CheckpointResult
from runtime.pipeline.records import Record
from runtime.sources.base import Assignment, SourceError, SourceUnreachable, UnitSink
from runtime.sources.health import SourceHealth
from runtime.sources.kafka_auth import redacted
from runtime.sources.kafka_records import (
    NO_TIMESTAMP_TYPE,
    TIMESTAMP_TYPES,
    envelope_size,
    kafka_batch_info,
    kafka_event,
    kafka_identifier,
    kafka_record,
    partition_key,
    record_size,
)
from runtime.sources.kafka_refusal import UNREACHABLE_CODES, RefusalWatch, list_topic, refusal

log = structlog.get_logger("runtime.sources.kafka")
# librdkafka's own lines (connection failures, group errors) through the standard library, so
# they are rendered like every other line (JSON, timestamp, level) instead of raw "%3|..." text
# on stderr. They are delivered by the consumer's poll calls.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

_unit = operator.attrgetter("unit")
_payload = operator.attrgetter("payload")

_CONSUME_BATCH = 1000
_CONSUME_TIMEOUT = 0.05
# While the brokers look down: how often to ask one for metadata, and how long to wait.
_PROBE_SECONDS = 2.0
_PROBE_TIMEOUT = 1.0
_CALLBACK_GRACE_SECONDS = 30.0


def topic_partition(unit: Hashable, offset: int = -1001) -> TopicPartition:
    """The TopicPartition of a unit named ``topic-N``."""
    topic, _, part = str(unit).rpartition("-")
    return TopicPartition(topic, int(part), offset)


class KafkaSource:
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
        self._refusals = RefusalWatch()
        self._health = SourceHealth(
            metrics.source_unreachable,
            after_seconds=settings.source_unreachable_after_seconds,
            source=f"{bootstrap_servers} {topic}",
        )
        self._next_probe = 0.0
        self._sink: UnitSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._requests: queue.SimpleQueue[Callable[[Any], None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        # Consumer-thread state: the epoch of each assigned partition, and whether polling
        # failed. Only the consumer thread reads or writes these.
        self._epochs: dict[tuple[str, int], int] = {}
        self._next_epoch = 0
        self._failed = False

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
            # A revoke may wait for a running invocation (up to the function's timeout): the
            # group must not drop this member meanwhile.
            "max.poll.interval.ms": max(
                300_000,
                s.kafka_session_timeout_ms,
                int((self.mapping.function.timeout_seconds + _CALLBACK_GRACE_SECONDS) * 2000),
            ),
            **self._security,
            **s.kafka_consumer_config,
        }
        return conf

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: UnitSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        conf = self.consumer_config()
        log.info("kafka consumer", settings=redacted(conf))
        self._consumer = self._new_consumer(conf, self._health)
        try:
            await self._check_topic()
        except SourceError:
            self._consumer.close()  # frees librdkafka's threads before a retry
            self._consumer = None
            raise
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

    async def check(self) -> None:
        """Pre-flight (supervisor): the brokers answer and the topic exists."""
        self._consumer = self._new_consumer(self.consumer_config())
        try:
            await self._check_topic()
        finally:
            self._consumer.close()
            self._consumer = None

    def _new_consumer(self, conf: dict[str, Any], health: SourceHealth | None = None) -> Any:
        """A consumer whose librdkafka lines go through logging and whose refusals of the
        mapping's credentials are kept (see :mod:`runtime.sources.kafka_refusal`); a running
        one also reports brokers that stop answering to ``health``."""
        self._refusals = RefusalWatch(health)
        try:
            return Consumer({**conf, "error_cb": self._refusals}, logger=LIBRDKAFKA_LOG)
        except Exception as exc:
            raise SourceError(f"invalid Kafka consumer settings: {exc}") from exc

    async def _check_topic(self) -> None:
        loop = asyncio.get_running_loop()
        watch = self._refusals
        try:
            md = await loop.run_in_executor(
                None, lambda: list_topic(self._consumer, self.topic, watch, 15)
            )
        except Exception as exc:
            if watch.refusal is not None:
                raise refusal(
                    watch.refusal,
                    bootstrap=self.bootstrap_servers,
                    security=self._security,
                    access=self.mapping.raw.source_access_configurations or [],
                ) from exc
            kind = SourceUnreachable if _unreachable(exc) else SourceError
            raise kind(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        topic = md.topics.get(self.topic)
        if topic is None or topic.error is not None:
            reason = topic.error if topic is not None else "unknown topic"
            raise SourceError(
                f"Kafka topic {self.topic!r} is not available on {self.bootstrap_servers}: {reason}"
            )

    def stop_fetching(self) -> None:
        self._request(lambda c: _quietly(c.pause, c.assignment()))

    async def close(self) -> None:
        if self._thread is None:
            return
        self._request(lambda _: self._stop.set())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._thread.join, _CALLBACK_GRACE_SECONDS)

    # ------------------------------------------------------------------ requests (loop side)

    def _request(self, fn: Callable[[Any], None]) -> None:
        self._requests.put(fn)

    def _call(self, fn: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """Run ``fn(consumer)`` on the consumer thread; its result (or error) comes back."""
        assert self._loop is not None
        loop = self._loop
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        def run(consumer: Any) -> None:
            try:
                value = fn(consumer)
            except Exception as exc:
                loop.call_soon_threadsafe(settle, False, exc)
            else:
                loop.call_soon_threadsafe(settle, True, value)

        if self._thread is None or not self._thread.is_alive():
            fut.set_exception(SourceError("the Kafka consumer is not running"))
        else:
            self._request(run)
        return fut

    def pause(self, units: list[Hashable]) -> None:
        tps = [topic_partition(u) for u in units]
        self._request(lambda c: _quietly(c.pause, tps))

    def resume(self, units: list[Hashable]) -> None:
        tps = [topic_partition(u) for u in units]
        self._request(lambda c: _quietly(c.resume, tps))

    async def write_checkpoints(self, checkpoints: list[Checkpoint]) -> list[CheckpointResult]:
        try:
            result: list[CheckpointResult] = await self._call(
                lambda c: self._commit(c, checkpoints)
            )
        except Exception as exc:
            return [CheckpointResult(cp, repr(exc)[:300]) for cp in checkpoints]
        return result

    async def read_lag(self, confirmed: dict[Hashable, int | None]) -> dict[Hashable, float]:
        def read(consumer: Any) -> dict[Hashable, float]:
            out: dict[Hashable, float] = {}
            for unit, last in confirmed.items():
                with contextlib.suppress(Exception):
                    low, high = consumer.get_watermark_offsets(topic_partition(unit), cached=True)
                    if high >= 0:
                        base = last + 1 if last is not None else low
                        out[unit] = float(max(0, high - base))
            return out

        lags: dict[Hashable, float] = await self._call(read)
        return lags

    def caught_up(self, unit: Hashable) -> bool:
        return True  # no tumbling windows on Kafka

    def lag_gauge(self, unit: Hashable) -> Any:
        tp = topic_partition(unit)
        return OFFSET_LAG.labels(
            self.mapping.function.name, self.mapping.uuid, tp.topic, str(tp.partition)
        )

    # ------------------------------------------------------------------ consumer thread

    def _consume_loop(self) -> None:
        consumer = self._consumer
        loop = self._loop
        sink = self._sink
        assert loop is not None and sink is not None
        try:
            while not self._stop.is_set():
                self._serve_requests(consumer)
                if self._stop.is_set():
                    break
                if self._failed:
                    self._stop.wait(_CONSUME_TIMEOUT)
                    continue
                try:
                    # Wait for the first message only, then take whatever else is ready
                    # without waiting: consume(n, timeout) would hold every record until n
                    # arrived or the timeout passed.
                    first = consumer.poll(_CONSUME_TIMEOUT)
                    if self._health.failing:
                        self._probe(consumer, first is not None)
                    if first is None:
                        continue
                    messages = [first, *consumer.consume(_CONSUME_BATCH - 1, 0)]
                    records = self._records(messages)
                except Exception as exc:  # never silently: the worker must know
                    self._failed = True
                    log.error("kafka consumer failed", error=repr(exc))
                    loop.call_soon_threadsafe(sink.source_failed, f"kafka consumer: {exc!r}")
                    continue
                if records:
                    loop.call_soon_threadsafe(sink.accept, records)
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
            # Anything still asked of the consumer fails now rather than waiting for ever.
            self._serve_requests(None)

    def _probe(self, consumer: Any, consumed: bool) -> None:
        """While the brokers look down, ask one for the topic's metadata every
        ``_PROBE_SECONDS``: librdkafka reports a lost connection once, not every failed
        reconnect, so the probe is what tells an outage that lasts from a blip that healed
        (a consumed message says so too)."""
        if consumed:
            self._health.answered()
            return
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + _PROBE_SECONDS
        try:
            consumer.list_topics(self.topic, timeout=_PROBE_TIMEOUT)
        except KafkaException as exc:
            self._health.failed(str(exc))
        else:
            self._health.answered()

    def _serve_requests(self, consumer: Any) -> None:
        """Run what the loop asked of the consumer; a failing request is logged, not fatal
        (requests that return a result report their own errors to the loop)."""
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                request(consumer)
            except Exception as exc:
                log.warning("kafka consumer request failed", error=repr(exc))

    def _records(self, messages: list[Any]) -> list[Record]:
        """Lambda-shaped records for consumed messages: the hot path, one pass, with what is
        per partition (its ``topic-N`` name and epoch) looked up once per call. The consumer
        subscribes to one topic, so every message is of ``self.topic``.

        The common message (a value, no key, no headers) is built inline, without the calls
        to :func:`kafka_record` and :func:`record_size` (a third of this loop's time);
        everything else goes through them. tests/unit/test_kafka_records.py checks that both
        paths build the same records."""
        out: list[Record] = []
        append = out.append
        topic = self.topic
        epochs = self._epochs
        lanes: dict[int, tuple[str, int] | None] = {}
        b2a = binascii.b2a_base64
        ts_types = TIMESTAMP_TYPES
        value_base = record_size(topic, None, b"", None)  # the size of a record with b"" value
        for m in messages:
            if m.error() is not None:
                self._consume_error(m.error())
                continue
            part = m.partition()
            if part in lanes:
                lane_epoch = lanes[part]
            else:
                epoch = epochs.get((topic, part))
                lane_epoch = lanes[part] = (
                    None if epoch is None else (partition_key(topic, part), epoch)
                )
            if lane_epoch is None:
                continue  # not assigned any more
            lane, epoch = lane_epoch
            offset = m.offset()
            key = m.key()
            value = m.value()
            headers = m.headers()
            ts_type, ts = m.timestamp()
            if key is None and value is not None and not headers:
                payload: dict[str, Any] = {
                    "topic": topic,
                    "partition": part,
                    "offset": offset,
                    "timestamp": ts,
                    "timestampType": ts_types.get(ts_type, NO_TIMESTAMP_TYPE),
                    "value": b2a(value, newline=False).decode("ascii"),
                    "headers": [],
                }
                size = value_base + (len(value) + 2) // 3 * 4
            else:
                payload = kafka_record(topic, part, offset, (ts_type, ts), key, value, headers)
                size = record_size(topic, key, value, headers)
            append(
                Record(
                    payload, size, (lane, offset), offset, lane, ts if ts_type else 0, lane, epoch
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
        start: dict[tuple[str, int], int] = {}
        if position is StartingPosition.AT_TIMESTAMP:
            need = [p for p in committed if p.offset < 0]
            if need:
                at = int((self.mapping.raw.starting_position_timestamp or 0) * 1000)
                found = consumer.offsets_for_times(
                    [TopicPartition(p.topic, p.partition, at) for p in need], timeout=15
                )
                for p in found:
                    start[(p.topic, p.partition)] = p.offset if p.offset >= 0 else OFFSET_END
        for p in partitions:
            if (p.topic, p.partition) in start:
                p.offset = start[(p.topic, p.partition)]
        consumer.incremental_assign(partitions)
        if partitions:
            consumer.resume(partitions)  # a pause survives unassign/assign in librdkafka
        assigned = []
        for p, c in zip(partitions, committed, strict=True):
            self._next_epoch += 1
            self._epochs[(p.topic, p.partition)] = self._next_epoch
            assigned.append(
                Assignment(
                    partition_key(p.topic, p.partition),
                    self._next_epoch,
                    c.offset - 1 if c.offset >= 0 else None,
                )
            )
        assert self._loop is not None and self._sink is not None
        self._loop.call_soon_threadsafe(self._sink.assigned, assigned)
        log.info(
            "partitions assigned",
            partitions=sorted(str(a.unit) for a in assigned),
            group=self.group_id,
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._hand_over(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: someone else may own them already; nothing may be committed.
        self._hand_over(consumer, partitions, lost=True)

    def _hand_over(self, consumer: Any, partitions: list[TopicPartition], *, lost: bool) -> None:
        for p in partitions:
            self._epochs.pop((p.topic, p.partition), None)
        units = {partition_key(p.topic, p.partition) for p in partitions}
        loop, sink = self._loop, self._sink
        assert loop is not None and sink is not None
        wait = self.mapping.function.timeout_seconds + _CALLBACK_GRACE_SECONDS
        try:
            final = asyncio.run_coroutine_threadsafe(
                sink.revoke(set[Hashable](units), lost=lost), loop
            ).result(wait)
        except Exception as exc:
            log.error("hand-off failed; committing nothing", error=repr(exc))
            final = []
        if final:
            results = self._commit(consumer, final, handing_over=True)
            # Confirmed on the loop before the partitions go: the core may have to end the
            # worker first (a handler still running), and must be able to do it before then.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_confirm(sink, results), loop).result(10)
        with contextlib.suppress(Exception):
            consumer.incremental_unassign(partitions)

    def _commit(
        self, consumer: Any, checkpoints: list[Checkpoint], *, handing_over: bool = False
    ) -> list[CheckpointResult]:
        """Commit synchronously; per checkpoint, what the broker answered.

        Ownership is checked here, on the consumer thread, at the moment of the commit: a
        periodic checkpoint asked for before a revoke must not land after it (it would move
        the group's offset back behind the new owner's).
        """
        results: list[CheckpointResult] = []
        mine: list[Checkpoint] = []
        for cp in checkpoints:
            tp = topic_partition(cp.unit)
            if handing_over or self._epochs.get((tp.topic, tp.partition)) == cp.token:
                mine.append(cp)
            else:
                results.append(CheckpointResult(cp, "the partition is no longer assigned"))
        if not mine:
            return results
        checkpoints = mine
        offsets = [topic_partition(cp.unit, cp.position + 1) for cp in checkpoints]
        try:
            answered = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            return results + [CheckpointResult(cp, str(err)) for cp in checkpoints]
        errors = {(tp.topic, tp.partition): tp.error for tp in answered or ()}
        for cp, tp in zip(checkpoints, offsets, strict=True):
            err = errors.get((tp.topic, tp.partition))
            results.append(CheckpointResult(cp, None if err is None else str(err)))
        committed = {partition_key(tp.topic, tp.partition): tp.offset for tp in offsets}
        log.debug("committed", offsets=committed)
        return results

    # ------------------------------------------------------------------ events

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        # A batch never spans partitions (its lane is its partition): no grouping per record.
        unit = records[0].unit if records else None
        one = isinstance(unit, str) and len(set(map(_unit, records))) == 1
        return kafka_event(
            list(map(_payload, records)),
            bootstrap_servers=self.bootstrap_servers,
            event_source_arn=self._arn,
            partition=str(unit) if one else None,
        )

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        return "KafkaBatchInfo", kafka_batch_info(
            [r.payload for r in records],
            payload_size=payload_size,
            bootstrap_servers=self.bootstrap_servers,
            event_source_arn=self._arn,
        )


async def _confirm(sink: UnitSink, results: list[CheckpointResult]) -> None:
    sink.confirm(results)


def _quietly(fn: Callable[[list[TopicPartition]], Any], tps: list[TopicPartition]) -> None:
    """Pause/resume partitions that may have been unassigned meanwhile."""
    with contextlib.suppress(KafkaException):
        fn(tps)


def _unreachable(exc: BaseException) -> bool:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and error.code() in UNREACHABLE_CODES
