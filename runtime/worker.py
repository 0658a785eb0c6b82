"""A worker process: one function's share of its mappings, on a uvloop event loop.

The supervisor starts ``python -m runtime worker CONFIG --plan JSON`` with the function's
environment variables set (and only that function's: each function has worker processes of
its own) and the plan (:mod:`runtime.supervisor.plan`) saying what this worker holds of each
of the function's mappings. The worker imports its function's handler (nothing else: the
handlers of other functions, and source libraries its mappings do not use, are never loaded
here) and runs one pipeline per mapping:

- SQS: :class:`~runtime.pipeline.queue.QueuePipeline`;
- Kafka: :class:`~runtime.ordered.pipeline.StreamPipeline` around a
  :class:`~runtime.sources.kafka.KafkaSource`;
- Kinesis, DynamoDB Streams: the same core around a
  :class:`~runtime.sources.shards.ShardSource` (shards under leases).

Exit codes tell the supervisor what happened:
- 0 drained after SIGTERM (or the supervisor went away);
- 75 (EX_TEMPFAIL) recycle me: a sync handler is stuck past its timeout, or the runtime failed
  around a batch of an ordered unit; replaced at once;
- 76 the event loop stalled (an async handler blocking it), killed by the watchdog;
- 78 (EX_CONFIG) the handler does not import, or an event source is (or became) unusable.

A source that does not answer at start (:class:`~runtime.sources.base.SourceUnreachable`) is
not a configuration problem: the worker starts its other mappings and retries that one with
back-off, reporting each attempt to the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import structlog

from runtime.config.resolved import Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.destinations.record import invocation_record
from runtime.destinations.sender import OnFailureDestination, destination_for
from runtime.destinations.targets import parse_destination
from runtime.invoke.environments import EnvironmentPool
from runtime.invoke.handler import HandlerLoadError
from runtime.invoke.invoker import Invoker
from runtime.metrics import MappingMetrics
from runtime.ordered.flow import FlowLimits
from runtime.pipeline.failure import KAFKA_RETRY_CAP_WITH_DESTINATION, RetryPolicy
from runtime.pipeline.filtering import RecordFilter
from runtime.pipeline.scaling import ConcurrencyScaler, ScalingPolicy
from runtime.sources.aws import AwsClients
from runtime.sources.base import SourceError, SourceUnreachable
from runtime.supervisor.plan import Share, WorkerPlan

log = structlog.get_logger("runtime.worker")

EXIT_OK = 0
EXIT_RECYCLE = 75
EXIT_STALLED = 76
EXIT_CONFIG = 78

# Concurrent receive calls per mapping and worker; more adds connections, not throughput.
MAX_POLLERS = 64


class Pipeline(Protocol):
    async def start(self) -> None: ...

    async def drain(self, within_seconds: float) -> None: ...


def retry_settings(
    m: Mapping, clients: AwsClients, settings: Settings
) -> tuple[RetryPolicy, OnFailureDestination | None]:
    """The retry policy and on-failure destination of a source that retries in place."""
    raw = m.raw
    destination: OnFailureDestination | None = None
    arn = (
        raw.destination_config.on_failure.destination
        if raw.destination_config and raw.destination_config.on_failure
        else None
    )
    if arn:
        owner = settings.account_id if "account_id" in settings.model_fields_set else None
        destination = destination_for(parse_destination(arn), clients, expected_bucket_owner=owner)
    retries = raw.maximum_retry_attempts if raw.maximum_retry_attempts is not None else -1
    if (
        retries < 0
        and destination is not None
        and m.source.kind in (SourceKind.KAFKA, SourceKind.MSK)
    ):
        retries = KAFKA_RETRY_CAP_WITH_DESTINATION  # Lambda's cap for Kafka with a destination
    policy = RetryPolicy(
        maximum_retry_attempts=retries,
        maximum_record_age_seconds=(
            raw.maximum_record_age_in_seconds
            if raw.maximum_record_age_in_seconds is not None
            else -1
        ),
        bisect_on_function_error=bool(raw.bisect_batch_on_function_error),
        backoff_seconds=settings.retry_backoff_seconds,
        backoff_max_seconds=settings.retry_backoff_max_seconds,
    )
    return policy, destination


def resident_mb() -> float:
    """This process's resident memory (Linux), in MiB; 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def record_filter(m: Mapping) -> RecordFilter | None:
    return RecordFilter(m.source.kind, list(m.filter_patterns)) if m.filter_patterns else None


class Worker:
    def __init__(
        self,
        config: RuntimeConfig,
        settings: Settings,
        plan: WorkerPlan,
        control: socket.socket | None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.plan = plan
        self.function = config.functions[plan.function]
        self._control = control
        self._stop = asyncio.Event()
        self._exit_code = EXIT_OK
        self._pipelines: list[Pipeline] = []
        self._waiting: list[asyncio.Task[None]] = []  # mappings waiting for their source
        self._last_tick = time.monotonic()
        self._invoker: Invoker | None = None

    # ------------------------------------------------------------------ signals

    def request_stop(self, code: int = EXIT_OK, reason: str = "") -> None:
        if not self._stop.is_set():
            if reason:
                log.info("worker stopping", reason=reason, exit_code=code)
            self._exit_code = code
            self._stop.set()

    def _on_stuck(self, reason: str) -> None:
        log.error("handler stuck; recycling this worker after its other batches", reason=reason)
        self._send({"event": "recycle", "reason": reason})
        self.request_stop(EXIT_RECYCLE, reason)

    def _abort(self, reason: str) -> None:
        """End the process now: waiting for anything would let work overlap (a stuck handler
        thread while its unit is handed over). A worker already stopping for a reason of its
        own (a dead consumer: 78) keeps that exit code; otherwise it asks to be recycled."""
        code = self._exit_code if self._stop.is_set() and self._exit_code else EXIT_RECYCLE
        log.critical("ending this worker at once", reason=reason, exit_code=code)
        if code == EXIT_RECYCLE:
            self._send({"event": "recycle", "reason": reason})
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def _send(self, message: dict[str, object]) -> None:
        if self._control is None:
            return
        with contextlib.suppress(OSError):
            self._control.sendall(json.dumps(message).encode() + b"\n")

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, EXIT_OK, signal.Signals(sig).name)
        background = [loop.create_task(self._tick())]
        if self._control is not None:
            background.append(loop.create_task(self._watch_supervisor()))
        self._start_watchdog()

        clients = AwsClients(self.settings)
        budget = sum(s.maximum for s in self.plan.shares.values())
        executor = ThreadPoolExecutor(max_workers=max(4, budget), thread_name_prefix="handler")
        try:
            try:
                environments = EnvironmentPool(self.function.handler)
            except HandlerLoadError as exc:
                problem = f"functions.{self.function.name}.Handler: {exc}"
                log.error("handler does not load", problem=problem)
                self._send({"event": "failed", "problems": [problem]})
                return EXIT_CONFIG
            self._invoker = Invoker(
                self.function,
                environments,
                executor,
                concurrency_limit=self.plan.reserved,
                on_stuck=self._on_stuck,
            )
            waiting = set(self.plan.unreachable)
            for m, share in self._my_mappings():
                if m.uuid in waiting:  # the supervisor found it unreachable a moment ago
                    self._waiting.append(
                        asyncio.create_task(self._launch_later(m, share, clients, first=0.0))
                    )
            mine = [(m, share) for m, share in self._my_mappings() if m.uuid not in waiting]
            outcomes = await asyncio.gather(
                *(self._launch(m, share, clients) for m, share in mine), return_exceptions=True
            )
            failed: list[BaseException] = []
            for (m, share), outcome in zip(mine, outcomes, strict=True):
                if isinstance(outcome, SourceUnreachable):
                    # Not a configuration problem: the mapping stays enabled and waits for
                    # its source while the others run.
                    log.warning(
                        "event source unreachable; retrying", mapping=m.uuid, error=str(outcome)
                    )
                    self._report_source(m, str(outcome))
                    self._waiting.append(asyncio.create_task(self._launch_later(m, share, clients)))
                elif isinstance(outcome, BaseException):
                    failed.append(outcome)
                else:
                    self._pipelines.append(outcome)
            if failed:
                for e in failed:
                    log.error("event source unusable", error=str(e))
                await self._cancel_waiting()
                # Leave cleanly what did start (a Kafka consumer leaves its group at once
                # instead of holding its partitions until its session times out).
                await asyncio.gather(
                    *(p.drain(self.settings.drain_timeout_seconds) for p in self._pipelines),
                    return_exceptions=True,
                )
                if not all(isinstance(e, SourceError) for e in failed):
                    raise failed[0]
                return EXIT_CONFIG
            self._send({"event": "ready", "pipelines": len(self._pipelines)})
            log.info(
                "worker ready",
                worker=self.plan.name,
                mappings=len(self._pipelines),
                waiting_for_source=len(self._waiting),
            )
            await self._stop.wait()
            await self._cancel_waiting()
            await asyncio.gather(
                *(p.drain(self.settings.drain_timeout_seconds) for p in self._pipelines)
            )
        finally:
            await clients.close()
            executor.shutdown(wait=False, cancel_futures=True)
        for task in background:
            task.cancel()
        log.info("worker stopped", exit_code=self._exit_code)
        return self._exit_code

    def _my_mappings(self) -> list[tuple[Mapping, Share]]:
        return [
            (m, share)
            for m in self.config.mappings
            if m.function.name == self.function.name
            and m.enabled
            and (share := self.plan.shares.get(m.uuid)) is not None
        ]

    async def _launch(self, m: Mapping, share: Share, clients: AwsClients) -> Pipeline:
        """Build one mapping's pipeline and start it (SourceError if its source is unusable)."""
        metrics = MappingMetrics.bind(m.function.name, m.uuid)
        pipeline: Pipeline
        if m.source.kind is SourceKind.SQS:
            pipeline = self._queue_pipeline(m, share, clients, metrics)
        else:
            pipeline = await self._stream_pipeline(m, share, clients, metrics)
        await pipeline.start()
        return pipeline

    async def _launch_later(
        self, m: Mapping, share: Share, clients: AwsClients, first: float | None = None
    ) -> None:
        """Retry a mapping whose source did not answer, with doubling back-off, until it
        starts or the worker stops. Each failure is reported to the supervisor (readiness,
        metrics, LastProcessingResult)."""
        delay = self.settings.source_retry_seconds
        wait = delay if first is None else first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            wait = delay
            if self._stop.is_set():
                return
            try:
                pipeline = await self._launch(m, share, clients)
            except Exception as exc:  # any failure: the source may be half up
                delay = wait = min(delay * 2, self.settings.source_retry_max_seconds)
                log.warning(
                    "event source still unusable; retrying",
                    mapping=m.uuid,
                    error=str(exc)[:500],
                    retry_in=delay,
                )
                self._report_source(m, str(exc))
                continue
            self._pipelines.append(pipeline)
            self._report_source(m, None)
            log.info("event source reachable; mapping started", mapping=m.uuid)
            return

    def _report_source(self, m: Mapping, problem: str | None) -> None:
        """Tell the supervisor (which logs the change once, and keeps the gauge)."""
        self._send({"event": "source", "mapping": m.uuid, "problem": problem})

    async def _cancel_waiting(self) -> None:
        for task in self._waiting:
            task.cancel()
        await asyncio.gather(*self._waiting, return_exceptions=True)
        self._waiting.clear()

    def _queue_pipeline(
        self, m: Mapping, share: Share, clients: AwsClients, metrics: MappingMetrics
    ) -> Pipeline:
        from runtime.pipeline.queue import QueuePipeline
        from runtime.sources.sqs import SqsSource

        assert self._invoker is not None
        s = self.settings
        scaler = ConcurrencyScaler(
            ScalingPolicy(
                initial=share.initial,
                maximum=share.maximum,
                step=s.scaling_step,
                interval_seconds=s.scaling_interval_seconds,
                error_cooldown_seconds=s.scaling_error_cooldown_seconds,
            )
        )
        return QueuePipeline(
            m,
            SqsSource(m, clients, s, metrics),
            self._invoker,
            scaler,
            metrics,
            max_pollers=MAX_POLLERS,
            record_filter=record_filter(m),
            release_filtered_out=m.raw.filtered_out_messages == "Keep",
        )

    async def _stream_pipeline(
        self, m: Mapping, share: Share, clients: AwsClients, metrics: MappingMetrics
    ) -> Pipeline:
        """Kafka partitions or Kinesis/DynamoDB shards: one ordered core, the source differs."""
        # Imported here: a worker whose mappings are all SQS never loads librdkafka, and one
        # without Kafka mappings never does either.
        from runtime.ordered.pipeline import StreamPipeline
        from runtime.sources.base import OrderedSource

        assert self._invoker is not None
        invoker = self._invoker
        s = self.settings
        retry, destination = retry_settings(m, clients, s)
        source: OrderedSource
        if m.source.kind in (SourceKind.KAFKA, SourceKind.MSK):
            from runtime.sources.kafka_setup import make_kafka_source

            source = await make_kafka_source(m, clients, s, metrics, self.plan.index)
            interval = s.kafka_commit_interval_seconds
        else:
            from runtime.sources.shard_setup import make_shard_source

            owner = self.plan.lease_owner or f"{s.pod_name}/{self.plan.name}/{os.getpid()}"
            source = make_shard_source(m, clients, s, metrics, owner)
            interval = s.stream_checkpoint_interval_seconds
        return StreamPipeline(
            m,
            source,
            invoker,
            metrics,
            concurrency=share.maximum,
            retry=retry,
            flow=FlowLimits(
                max_records=s.unit_buffer_records or max(10 * m.batch_size, 10_000),
                max_bytes=s.unit_buffer_bytes,
            ),
            checkpoint_interval=interval,
            destination=destination,
            record_builder=invocation_record if destination is not None else None,
            record_filter=record_filter(m),
            abort=self._abort,
            on_source_failed=lambda reason: self.request_stop(EXIT_CONFIG, reason),
            on_runtime_error=lambda reason: self.request_stop(EXIT_RECYCLE, reason),
            stuck_handlers=lambda: invoker.stuck_handlers,
            blocked_after_seconds=s.blocked_unit_warning_seconds,
        )

    # ------------------------------------------------------------------ liveness

    async def _watch_supervisor(self) -> None:
        """The control socket reads EOF when the supervisor dies: drain and leave."""
        assert self._control is not None
        loop = asyncio.get_running_loop()
        try:
            while await loop.sock_recv(self._control, 4096):
                pass
        except OSError:
            pass
        self.request_stop(EXIT_OK, "supervisor went away")

    async def _tick(self) -> None:
        limit = self.settings.worker_memory_limit_mb
        while True:
            self._last_tick = time.monotonic()
            if limit is not None and not self._stop.is_set():
                rss = resident_mb()
                if rss > limit:
                    # A leaking handler: finish the batches in flight, then the supervisor
                    # starts a fresh process at once (before the container's hard limit
                    # kills the whole pod mid-batch).
                    log.warning(
                        "worker memory above its limit; recycling after its in-flight batches",
                        resident_mb=round(rss, 1),
                        limit_mb=limit,
                    )
                    self._send({"event": "recycle", "reason": "memory"})
                    self.request_stop(EXIT_RECYCLE, "memory limit")
            await asyncio.sleep(0.5)

    def _start_watchdog(self) -> None:
        limit = self.function.timeout_seconds + self.settings.worker_stall_timeout_seconds

        def watch() -> None:
            while True:
                time.sleep(1.0)
                stalled = time.monotonic() - self._last_tick
                if stalled > limit:
                    event: dict[str, Any] = {
                        "event": "event loop stalled; killing worker",
                        "stalled_seconds": round(stalled, 1),
                        "worker": self.plan.name,
                        "level": "critical",
                    }
                    sys.stderr.write(json.dumps(event) + "\n")
                    sys.stderr.flush()
                    os._exit(EXIT_STALLED)

        threading.Thread(target=watch, name="loop-watchdog", daemon=True).start()
