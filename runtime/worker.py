"""A worker process: runs its share of every mapping on a uvloop event loop.

The supervisor starts ``python -m runtime worker`` with the worker's index and the worker
count; every worker derives its share of each mapping's concurrency from those two numbers
(:func:`runtime.pipeline.scaling.split`), so no assignment message is needed.

Exit codes tell the supervisor what happened:
- 0 drained after SIGTERM (or the supervisor went away);
- 75 (EX_TEMPFAIL) recycle me: a sync handler is stuck past its timeout, so after the other
  batches finished the process exits and is replaced at once;
- 76 the event loop stalled (an async handler blocking it), killed by the watchdog;
- 78 (EX_CONFIG) the configuration or an event source is unusable.
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
from dataclasses import dataclass

import structlog

from runtime.config.resolved import Function, Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.destinations.record import invocation_record
from runtime.destinations.sender import OnFailureDestination, destination_for
from runtime.destinations.targets import parse_destination
from runtime.invoke.environments import EnvironmentPool
from runtime.invoke.invoker import Invoker
from runtime.metrics import MappingMetrics
from runtime.pipeline.failure import KAFKA_RETRY_CAP_WITH_DESTINATION, RetryPolicy
from runtime.pipeline.filtering import RecordFilter
from runtime.pipeline.runner import MappingPipeline
from runtime.pipeline.scaling import ConcurrencyScaler, ScalingPolicy, split
from runtime.sources.aws import AwsClients
from runtime.sources.base import Source, SourceError
from runtime.sources.kafka_setup import make_kafka_source
from runtime.sources.sqs import SqsSource

log = structlog.get_logger("runtime.worker")

EXIT_OK = 0
EXIT_RECYCLE = 75
EXIT_STALLED = 76
EXIT_CONFIG = 78

# Concurrent receive calls per mapping and worker; more adds connections, not throughput.
MAX_POLLERS = 64


@dataclass(frozen=True, slots=True)
class Share:
    """This worker's part of one mapping's concurrency."""

    initial: int
    maximum: int


def mapping_share(mapping: Mapping, settings: Settings, index: int, count: int) -> Share | None:
    """Split a mapping's limits over ``count`` workers; None if this worker gets nothing.

    Mapping shares are rotated by the mapping's position so that small limits do not all land
    on worker 0. A function's ReservedConcurrentExecutions is split without rotation (it is
    one limit for all of the function's mappings, see :func:`function_share`) and caps the
    mapping's share in this worker.
    """
    slot = (index + mapping.index) % count
    maximum = mapping.maximum_concurrency or settings.default_maximum_concurrency
    share_max = split(maximum, count, slot)
    reserved = function_share(mapping.function, index, count)
    if reserved is not None:
        share_max = min(share_max, reserved)
    if share_max == 0:
        return None
    initial = split(min(settings.scaling_initial_concurrency, maximum), count, slot)
    return Share(initial=min(share_max, max(1, initial)), maximum=share_max)


def function_share(function: Function, index: int, count: int) -> int | None:
    """This worker's part of the function's ReservedConcurrentExecutions (None: unlimited)."""
    if function.reserved_concurrency is None:
        return None
    return split(function.reserved_concurrency, count, index)


async def make_source(
    m: Mapping, clients: AwsClients, settings: Settings, metrics: MappingMetrics, index: int
) -> Source:
    """The broker side of a mapping (no I/O beyond what its settings need)."""
    if m.source.kind is SourceKind.SQS:
        return SqsSource(m, clients, settings, metrics)
    if m.source.kind in (SourceKind.KAFKA, SourceKind.MSK):
        return await make_kafka_source(m, clients, settings, metrics, index)
    raise SourceError(f"{m.source.kind} sources are not supported yet")


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


class Worker:
    def __init__(
        self,
        config: RuntimeConfig,
        settings: Settings,
        index: int,
        count: int,
        control: socket.socket | None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.index = index
        self.count = count
        self._control = control
        self._stop = asyncio.Event()
        self._exit_code = EXIT_OK
        self._pipelines: list[MappingPipeline] = []
        self._last_tick = time.monotonic()

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
        executor = ThreadPoolExecutor(
            max_workers=max(4, self._thread_budget()), thread_name_prefix="handler"
        )
        try:
            try:
                await self._build_pipelines(clients, executor)
                await asyncio.gather(*(p.start() for p in self._pipelines))
            except SourceError as exc:
                log.error("event source unusable", error=str(exc))
                return EXIT_CONFIG
            self._send({"event": "ready", "pipelines": len(self._pipelines)})
            log.info("worker ready", mappings=len(self._pipelines))
            await self._stop.wait()
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

    def _thread_budget(self) -> int:
        total = 0
        for m in self.config.mappings:
            share = mapping_share(m, self.settings, self.index, self.count)
            if share is not None:
                total += share.maximum
        return total

    async def _build_pipelines(self, clients: AwsClients, executor: ThreadPoolExecutor) -> None:
        invokers: dict[str, Invoker] = {}
        for m in self.config.mappings:
            if not m.enabled:
                log.info("mapping disabled", event_source_mapping_uuid=m.uuid)
                continue
            share = mapping_share(m, self.settings, self.index, self.count)
            if share is None:
                continue
            fn = m.function
            if fn.name not in invokers:
                invokers[fn.name] = Invoker(
                    fn,
                    EnvironmentPool(fn.handler),
                    executor,
                    concurrency_limit=function_share(fn, self.index, self.count),
                    on_stuck=self._on_stuck,
                )
            metrics = MappingMetrics.bind(fn.name, m.uuid)
            source = await make_source(m, clients, self.settings, metrics, self.index)
            # Pull sources scale with their backlog; push sources run one batch per lane at
            # most, so their limit is simply the ceiling.
            initial = share.initial if source.mode == "pull" else share.maximum
            scaler = ConcurrencyScaler(
                ScalingPolicy(
                    initial=initial,
                    maximum=share.maximum,
                    step=self.settings.scaling_step,
                    interval_seconds=self.settings.scaling_interval_seconds,
                    error_cooldown_seconds=self.settings.scaling_error_cooldown_seconds,
                )
            )
            retry, destination = None, None
            if source.retries_in_process:
                retry, destination = retry_settings(m, clients, self.settings)
            self._pipelines.append(
                MappingPipeline(
                    m,
                    source,
                    invokers[fn.name],
                    scaler,
                    metrics,
                    max_pollers=MAX_POLLERS,
                    retry=retry,
                    destination=destination,
                    record_builder=invocation_record if destination is not None else None,
                    record_filter=(
                        RecordFilter(m.source.kind, list(m.filter_patterns))
                        if m.filter_patterns
                        else None
                    ),
                    release_filtered_out=m.raw.filtered_out_messages == "Keep",
                )
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
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(0.5)

    def _start_watchdog(self) -> None:
        longest = max((f.timeout_seconds for f in self.config.functions.values()), default=0)
        limit = longest + self.settings.worker_stall_timeout_seconds

        def watch() -> None:
            while True:
                time.sleep(1.0)
                stalled = time.monotonic() - self._last_tick
                if stalled > limit:
                    sys.stderr.write(
                        json.dumps(
                            {
                                "event": "event loop stalled; killing worker",
                                "stalled_seconds": round(stalled, 1),
                                "worker": self.index,
                                "level": "critical",
                            }
                        )
                        + "\n"
                    )
                    sys.stderr.flush()
                    os._exit(EXIT_STALLED)

        threading.Thread(target=watch, name="loop-watchdog", daemon=True).start()
