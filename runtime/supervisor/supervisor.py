"""The supervisor: one per pod. Starts the workers, keeps them alive, drains on SIGTERM.

It checks every event source before starting anything (a missing queue or a visibility timeout
shorter than the function timeout stops the pod with the list of problems), plans the workers
(:mod:`runtime.supervisor.plan`: worker processes per function, and what each one holds),
serves the HTTP endpoints, and restarts a dead worker: at once when the worker asked to be
recycled, otherwise with exponential backoff (reset once a worker has run for a minute).
Messages a dead worker held are not lost: SQS makes them visible again when their visibility
timeout ends; Kafka partitions move and resume from their last commit.

Each worker runs with its function's environment variables on top of the runtime's own, so
no function sees another's, and the supervisor itself never imports a handler. A handler
that does not import is a configuration problem: when a worker reports one before every
worker was first ready, the supervisor stops everything and exits 2 with the problems.

Each worker gets one end of a socket pair. Workers send JSON lines ("ready", "recycle",
"failed"); the socket's EOF tells a worker that its supervisor is gone, so no worker
outlives its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field

import structlog
from prometheus_client.multiprocess import mark_process_dead

from runtime.config.resolved import Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.metrics import WORKER_RESTARTS, WORKER_SHARE, WORKERS_ALIVE, MappingMetrics
from runtime.sources.aws import AwsClients
from runtime.sources.base import SourceError
from runtime.supervisor.http import build_app, start_http
from runtime.supervisor.plan import WorkerPlan, plan_workers
from runtime.worker import EXIT_CONFIG, EXIT_RECYCLE, EXIT_STALLED

log = structlog.get_logger("runtime.supervisor")

_HEALTHY_RUN_SECONDS = 60.0


@dataclass
class WorkerSlot:
    plan: WorkerPlan
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    ever_ready: bool = False
    problems: list[str] = field(default_factory=list)
    started_at: float = 0.0
    backoff: float = 0.0
    restarts: int = 0
    reader_task: asyncio.Task[None] | None = field(default=None, repr=False)


# How long freeing a dead worker's shard leases may take before its restart goes on without.
_FREE_LEASES_SECONDS = 10.0


def _restart_reason(code: int) -> str:
    if code == EXIT_RECYCLE:
        return "recycle"
    if code == EXIT_STALLED:
        return "stalled"
    if code == EXIT_CONFIG:
        return "source_error"
    if code < 0:
        return (
            f"signal_{signal.Signals(-code).name}" if -code in signal.valid_signals() else "signal"
        )
    return "crash"


async def check_source(m: Mapping, clients: AwsClients, settings: Settings) -> None:
    """Connect to a mapping's source once (SourceError if unusable)."""
    metrics = MappingMetrics.bind(m.function.name, m.uuid)
    if m.source.kind is SourceKind.SQS:
        from runtime.sources.sqs import SqsSource

        await SqsSource(m, clients, settings, metrics).check()
    elif m.source.kind in (SourceKind.KAFKA, SourceKind.MSK):
        from runtime.sources.kafka_setup import make_kafka_source

        await (await make_kafka_source(m, clients, settings, metrics, 0)).check()
    else:
        from runtime.sources.shard_setup import shard_api

        await shard_api(m, clients, settings)[0].check()


async def check_sources(config: RuntimeConfig, settings: Settings) -> list[str]:
    """Connect to every enabled mapping's source once; return the problems found."""
    problems: list[str] = []
    clients = AwsClients(settings, max_pool_connections=8)
    try:
        for m in config.mappings:
            if not m.enabled:
                continue
            try:
                await check_source(m, clients, settings)
            except SourceError as exc:
                problems.append(f"eventSourceMappings[{m.index}]: {exc}")
    finally:
        await clients.close()
    return problems


class Supervisor:
    def __init__(self, config_path: str, config: RuntimeConfig, settings: Settings) -> None:
        self.config_path = config_path
        self.config = config
        self.settings = settings
        self.slots = [WorkerSlot(p) for p in plan_workers(config, settings)]
        self._stopping = asyncio.Event()
        self._draining = False
        self._startup_problems: list[str] = []
        self.http_port = settings.http_port

    def readiness(self) -> tuple[bool, str]:
        if self._draining:
            return False, "draining"
        ready = sum(1 for s in self.slots if s.ready)
        return ready == len(self.slots), f"{ready}/{len(self.slots)} workers ready"

    def request_stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            log.info("supervisor stopping", reason=reason)
            self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)

        problems = await check_sources(self.config, self.settings)
        if problems:
            return self._refuse("event source", problems)

        runner, self.http_port = await start_http(
            build_app(self.readiness), self.settings.http_host, self.settings.http_port
        )
        self._announce_plan()
        monitors = [asyncio.create_task(self._keep_alive(s)) for s in self.slots]
        await self._stopping.wait()
        self._draining = True
        await self._drain_workers()
        for t in monitors:
            t.cancel()
        await asyncio.gather(*monitors, return_exceptions=True)
        await runner.cleanup()
        if self._startup_problems:
            return self._refuse("configuration", self._startup_problems)
        log.info("runtime stopped")
        return 0

    def _refuse(self, kind: str, problems: list[str]) -> int:
        for p in problems:
            log.error(f"{kind} problem", problem=p)
        sys.stderr.write(
            f"{self.config_path}: {len(problems)} {kind} problem(s)\n"
            + "".join(f"  - {p}\n" for p in problems)
        )
        return 2

    def _announce_plan(self) -> None:
        functions = sorted({s.plan.function for s in self.slots})
        log.info(
            "runtime started",
            workers=len(self.slots),
            functions=len(functions),
            mappings=len(self.config.mappings),
            metrics=f"http://{self._display_host()}:{self.http_port}/metrics",
        )
        # Restart counters exist (at 0) from the start, for dashboards and alerts.
        for function in functions:
            for reason in ("recycle", "crash", "stalled", "source_error"):
                WORKER_RESTARTS.labels(function, reason).inc(0)
        by_uuid = {m.uuid: m for m in self.config.mappings}
        for slot in self.slots:
            plan = slot.plan
            held = {}
            for mapping_uuid, share in plan.shares.items():
                m = by_uuid[mapping_uuid]
                if m.source.kind is SourceKind.SQS:
                    kind = "sqs_batches"
                elif m.source.kind in (SourceKind.KAFKA, SourceKind.MSK):
                    kind = "kafka_member"
                else:
                    kind = "shard_leases"
                held[mapping_uuid] = f"{kind}:{share.maximum}"
                WORKER_SHARE.labels(plan.function, mapping_uuid, str(plan.index)).set(share.maximum)
            log.info("worker plan", worker=plan.name, mappings=held, reserved=plan.reserved)

    def _display_host(self) -> str:
        return (
            "127.0.0.1" if self.settings.http_host in ("0.0.0.0", "::") else self.settings.http_host
        )

    # ------------------------------------------------------------------ workers

    def _worker_env(self, plan: WorkerPlan, control_fd: int) -> dict[str, str]:
        """The runtime's environment plus the function's own variables (which may not name
        anything the runtime reads: the loader refuses reserved names)."""
        env = dict(os.environ)
        env.update(self.config.functions[plan.function].environment)
        env["ESM_CONTROL_FD"] = str(control_fd)
        return env

    async def _spawn(self, slot: WorkerSlot) -> None:
        # A lease owner name per process start: the supervisor frees exactly this process's
        # shard leases when it exits, and a restarted worker never mistakes old leases for its own.
        slot.plan = dataclasses.replace(
            slot.plan,
            lease_owner=f"{self.settings.pod_name}/{slot.plan.name}/{uuid.uuid4().hex[:8]}",
        )
        parent, child = socket.socketpair()
        slot.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime",
            "worker",
            self.config_path,
            "--plan",
            slot.plan.to_json(),
            pass_fds=(child.fileno(),),
            env=self._worker_env(slot.plan, child.fileno()),
        )
        child.close()
        slot.started_at = time.monotonic()
        slot.ready = False
        WORKERS_ALIVE.labels(slot.plan.function).inc()
        slot.reader_task = asyncio.create_task(self._read_control(slot, parent))
        log.info("worker started", worker=slot.plan.name, pid=slot.process.pid)

    async def _read_control(self, slot: WorkerSlot, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                event = msg.get("event")
                if event == "ready":
                    slot.ready = slot.ever_ready = True
                elif event == "recycle":
                    slot.ready = False
                elif event == "failed":
                    slot.problems = [str(p) for p in msg.get("problems", [])]
        finally:
            writer.close()

    async def _keep_alive(self, slot: WorkerSlot) -> None:
        while not self._stopping.is_set():
            await self._spawn(slot)
            assert slot.process is not None
            code = await slot.process.wait()
            try:
                await asyncio.wait_for(self._free_leases(slot), timeout=_FREE_LEASES_SECONDS)
            except Exception as exc:  # never keeps a worker from being restarted
                log.warning(
                    "could not free an ended worker's leases; they expire instead",
                    worker=slot.plan.name,
                    error=repr(exc)[:300],
                )
            if slot.reader_task is not None:
                # The last lines the worker wrote before exiting ("failed") are read first.
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(slot.reader_task), timeout=1.0)
            self._reap(slot)
            if self._stopping.is_set():
                return
            if slot.problems and not slot.ever_ready:
                # A handler that does not import: the pod cannot run this configuration.
                self._startup_problems.extend(
                    p for p in slot.problems if p not in self._startup_problems
                )
                self.request_stop("a worker reported configuration problems")
                return
            reason = _restart_reason(code)
            ran = time.monotonic() - slot.started_at
            if code == EXIT_RECYCLE:
                delay = 0.0
            else:
                base = self.settings.worker_restart_backoff_seconds
                slot.backoff = (
                    base
                    if ran >= _HEALTHY_RUN_SECONDS or not slot.backoff
                    else min(slot.backoff * 2, self.settings.worker_restart_backoff_max_seconds)
                )
                delay = slot.backoff
            slot.restarts += 1
            WORKER_RESTARTS.labels(slot.plan.function, reason).inc()
            log.warning(
                "worker exited; restarting",
                worker=slot.plan.name,
                exit_code=code,
                reason=reason,
                ran_seconds=round(ran, 1),
                restart_in=round(delay, 2),
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def _free_leases(self, slot: WorkerSlot) -> None:
        """A worker ended: free the shard leases it still holds, so that the pod's other
        workers (or its replacement) take them at once instead of after the lease failover
        time. Safe because the process is gone: nothing of it can run on them any more."""
        mappings = [
            m
            for m in self.config.mappings
            if m.enabled
            and m.function.name == slot.plan.function
            and m.source.kind in (SourceKind.KINESIS, SourceKind.DYNAMODB)
            and m.uuid in slot.plan.shares
        ]
        if not mappings or not slot.plan.lease_owner:
            return
        from runtime.sources.shard_setup import lease_store

        clients = AwsClients(self.settings, max_pool_connections=4)
        try:
            for m in mappings:
                store = lease_store(m, clients, self.settings)
                try:
                    await store.open()
                    freed = await store.evict(slot.plan.lease_owner)
                    if freed:
                        log.info(
                            "freed the shard leases of an ended worker",
                            worker=slot.plan.name,
                            mapping=m.uuid,
                            leases=freed,
                        )
                except Exception as exc:
                    log.warning(
                        "could not free an ended worker's leases; they expire instead",
                        worker=slot.plan.name,
                        error=repr(exc)[:300],
                    )
                finally:
                    with contextlib.suppress(Exception):
                        await store.close()
        finally:
            await clients.close()

    def _reap(self, slot: WorkerSlot) -> None:
        slot.ready = False
        WORKERS_ALIVE.labels(slot.plan.function).dec()
        if slot.process is not None and slot.process.pid:
            mark_process_dead(slot.process.pid)  # type: ignore[no-untyped-call]
        if slot.reader_task is not None:
            slot.reader_task.cancel()

    async def _drain_workers(self) -> None:
        live = [s.process for s in self.slots if s.process and s.process.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        grace = self.settings.drain_timeout_seconds + 10
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in live)), timeout=grace)
        except TimeoutError:
            for p in live:
                if p.returncode is None:
                    log.error("worker did not drain in time; killing it", pid=p.pid)
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            await asyncio.gather(*(p.wait() for p in live))
        for s in self.slots:
            if s.process is not None and s.process.returncode is not None:
                s.ready = False
