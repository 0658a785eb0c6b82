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
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from runtime.api.catalog import Catalog
from runtime.api.store import MappingStore, MappingStoreError
from runtime.config.resolved import Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.metrics import (
    SOURCE_UNREACHABLE,
    WORKER_RESTARTS,
    WORKER_SHARE,
    WORKERS_ALIVE,
    MappingMetrics,
)
from runtime.sources.aws import AwsClients
from runtime.sources.base import SourceError, SourceUnreachable
from runtime.supervisor.http import build_app, start_http
from runtime.supervisor.mapping_sync import MappingSync, api_credentials, open_store
from runtime.supervisor.plan import WorkerPlan, plan_workers
from runtime.supervisor.processing import ProcessingResults
from runtime.worker import EXIT_CONFIG, EXIT_RECYCLE, EXIT_STALLED

log = structlog.get_logger("runtime.supervisor")

_HEALTHY_RUN_SECONDS = 60.0


@dataclass(eq=False)
class WorkerSlot:
    plan: WorkerPlan
    config: RuntimeConfig  # the mappings this worker was started with
    config_path: str  # the file it loads them from
    initial: bool = True  # started with the pod (not by a mapping change)
    retired: bool = False  # its function's mappings changed: it ends and is not restarted
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    ever_ready: bool = False
    problems: list[str] = field(default_factory=list)
    started_at: float = 0.0
    backoff: float = 0.0
    restarts: int = 0
    reader_task: asyncio.Task[None] | None = field(default=None, repr=False)


# The mapping API's keys: handlers (which run in the workers) must not read them.
_SUPERVISOR_ONLY = frozenset({"ESM_API_CREDENTIALS", "ESM_API_CREDENTIALS_FILE"})
# How long freeing a dead worker's shard leases may take before its restart goes on without.
_FREE_LEASES_SECONDS = 10.0
# How long a mapping change waits for the new workers to be ready before settling its state.
_APPLY_READY_SECONDS = 30.0
# A source check made for the mapping API (create, update) answers within this.
_API_CHECK_SECONDS = 15.0


@dataclass(frozen=True)
class _Api:
    """The mapping API of a pod: its HTTP app, the sync loop, the store and its clients."""

    app: web.Application
    sync: MappingSync
    store: MappingStore
    clients: AwsClients


def _fingerprint(config: RuntimeConfig, plans: list[WorkerPlan], function: str) -> str:
    """What a function's workers run: its enabled mappings as written, and its plans."""
    mappings = sorted(
        (m.uuid, m.raw.model_dump_json(by_alias=True, exclude_none=True))
        for m in config.mappings
        if m.enabled and m.function.name == function
    )
    own = sorted(
        dataclasses.replace(p, lease_owner="").to_json() for p in plans if p.function == function
    )
    return json.dumps([mappings, own])


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


async def check_sources(
    config: RuntimeConfig, settings: Settings
) -> tuple[dict[str, str], dict[str, str]]:
    """Connect to every enabled mapping's source once; return the problems found by mapping
    UUID: those of the configuration (a missing queue, a bad setting), then the sources that
    did not answer (which the workers wait for)."""
    problems: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    clients = AwsClients(settings, max_pool_connections=8)

    async def check(m: Mapping) -> None:
        try:
            await check_source(m, clients, settings)
        except SourceUnreachable as exc:
            unreachable[m.uuid] = str(exc)
        except SourceError as exc:
            problems[m.uuid] = str(exc)

    try:  # at once: a broker that does not answer takes its whole timeout
        await asyncio.gather(*(check(m) for m in config.mappings if m.enabled))
    finally:
        await clients.close()
    # In the file's order, for the messages.
    order = {m.uuid: i for i, m in enumerate(config.mappings)}
    return (
        dict(sorted(problems.items(), key=lambda kv: order[kv[0]])),
        dict(sorted(unreachable.items(), key=lambda kv: order[kv[0]])),
    )


def source_checker(settings: Settings) -> Callable[[Mapping], Awaitable[str | None]]:
    """A check of one mapping's source for the mapping API (None: it works)."""

    async def check(m: Mapping) -> str | None:
        clients = AwsClients(settings, max_pool_connections=4)
        try:
            await asyncio.wait_for(check_source(m, clients, settings), _API_CHECK_SECONDS)
        except SourceUnreachable:
            return None  # runs: its workers wait for the source and report it
        except SourceError as exc:
            return str(exc)
        except TimeoutError:
            return None
        finally:
            await clients.close()
        return None

    return check


class Supervisor:
    def __init__(
        self,
        config_path: str,
        config: RuntimeConfig,
        settings: Settings,
        document: Any = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.settings = settings
        self._document = document  # the file as parsed (for merging API-created mappings)
        self._worker_config_path = config_path
        self.slots: list[WorkerSlot] = []
        self._monitors: dict[WorkerSlot, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._draining = False
        self._startup_problems: list[str] = []
        self.http_port = settings.http_port
        self.api_port: int | None = None
        self._apply_lock = asyncio.Lock()
        self._documents_dir: str | None = None
        self._documents = 0
        self._unreachable: dict[str, str] = {}  # mapping UUID -> why its source is not read
        self._processing: ProcessingResults | None = None

    def readiness(self) -> tuple[bool, str]:
        """Ready when every worker is. A mapping waiting for an unreachable source does not
        make the pod unready (its other mappings, its API and its metrics work, and taking it
        out of its Services would hide exactly the metrics that show the problem): it is
        named in the text instead."""
        if self._draining:
            return False, "draining"
        # Workers started by a mapping change count once they were ready: a new mapping that
        # cannot start must not take the pod (and its API, to fix it) out of its Service.
        live = [s for s in self.slots if not s.retired and (s.initial or s.ever_ready)]
        ready = sum(1 for s in live if s.ready)
        text = f"{ready}/{len(live)} workers ready"
        running = {m.uuid for m in self.config.mappings if m.enabled}
        waiting = {u: p for u, p in self._unreachable.items() if u in running}
        if waiting:
            text += "; event sources unreachable (retrying): " + "; ".join(
                f"{u}: {p}" for u, p in sorted(waiting.items())
            )
        return ready == len(live), text

    def _source_problem(self, mapping_uuid: str, problem: str | None) -> None:
        """A worker (or the start-up check) found a mapping's source unreachable, or working
        again: kept for /readyz, the esm_event_source_unreachable gauge and the mapping API's
        LastProcessingResult."""
        function = next(
            (m.function.name for m in self.config.mappings if m.uuid == mapping_uuid), ""
        )
        if problem is None:
            if self._unreachable.pop(mapping_uuid, None) is not None:
                log.info("event source reachable again", mapping=mapping_uuid)
        else:
            if mapping_uuid not in self._unreachable:
                log.error(
                    "event source unreachable; the mapping stays enabled and is retried",
                    mapping=mapping_uuid,
                    function=function,
                    problem=problem[:500],
                )
            self._unreachable[mapping_uuid] = problem
        SOURCE_UNREACHABLE.labels(function, mapping_uuid).set(0 if problem is None else 1)
        if self._processing is not None:
            self._processing.set_problem(mapping_uuid, problem)

    def request_stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            log.info("supervisor stopping", reason=reason)
            self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)

        try:
            credentials = api_credentials(self.settings)
        except ValueError as exc:
            return self._refuse("settings", [str(exc)])
        api: _Api | None = None
        if credentials:
            opened = await self._open_api(credentials)
            if isinstance(opened, int):
                return opened
            api = opened
        declared = api.sync.catalog.declared if api is not None else frozenset()
        problems, unreachable = await check_sources(self.config, self.settings)
        for m in self.config.mappings:
            if m.uuid in unreachable:
                self._source_problem(m.uuid, unreachable[m.uuid])
        fatal = [
            f"eventSourceMappings[{m.index}]: {problems[m.uuid]}"
            for m in self.config.mappings
            if m.uuid in problems and (api is None or m.uuid in declared)
        ]
        if fatal:
            await self._close_api(api)
            return self._refuse("event source", fatal)
        if api is not None:
            stored_problems = {
                u: p for u, p in problems.items() if u not in api.sync.catalog.declared
            }
            if stored_problems:
                self.config = api.sync.exclude(stored_problems).config
            self._worker_config_path = self._write_document(api.sync.catalog)

        runner, self.http_port = await start_http(
            build_app(self.readiness), self.settings.http_host, self.settings.http_port
        )
        for plan in plan_workers(self.config, self.settings):
            self._start(WorkerSlot(plan, self.config, self._worker_config_path))
        self._announce_plan()
        sync_task = None
        api_runner = None
        if api is not None:
            api_runner, self.api_port = await start_http(
                api.app, self.settings.api_host, self.settings.api_port
            )
            log.info("mapping API listening", port=self.api_port, keys=len(credentials))
            sync_task = asyncio.create_task(api.sync.run(self.apply, self._stopping))
        await self._stopping.wait()
        self._draining = True
        if sync_task is not None:
            sync_task.cancel()
            await asyncio.gather(sync_task, return_exceptions=True)
        async with self._apply_lock:  # not while a mapping change is half applied
            await self._drain_workers()
        monitors = list(self._monitors.values())
        for t in monitors:
            t.cancel()
        await asyncio.gather(*monitors, return_exceptions=True)
        await runner.cleanup()
        if api_runner is not None:
            await api_runner.cleanup()
        await self._close_api(api)
        if self._documents_dir is not None:
            shutil.rmtree(self._documents_dir, ignore_errors=True)
        if self._startup_problems:
            return self._refuse("configuration", self._startup_problems)
        log.info("runtime stopped")
        return 0

    # ------------------------------------------------------------------ the mapping API

    async def _open_api(self, credentials: dict[str, str]) -> _Api | int:
        """The API's store and sync, with the stored mappings merged into the configuration."""
        from runtime.api.server import build_api
        from runtime.api.service import MappingService

        clients = AwsClients(self.settings, max_pool_connections=8)
        store = open_store(self.settings, clients)
        check = source_checker(self.settings)
        sync = MappingSync(
            document=self._document,
            path=self.config_path,
            settings=self.settings,
            store=store,
            catalog=Catalog(self.config, {}, frozenset(m.uuid for m in self.config.mappings)),
            check_source=check,
        )
        try:
            await store.open()
            catalog = await sync.load()
        except MappingStoreError as exc:
            await clients.close()
            return self._refuse("mapping store", [str(exc)])
        self.config = catalog.config
        self._processing = sync.results
        service = MappingService(
            document=self._document,
            path=self.config_path,
            settings=self.settings,
            store=store,
            catalog=sync.current,
            changed=sync.wake,
            check_source=check,
            declared_since=time.time(),
            processing=sync.results.result,
        )
        for mapping_uuid, problem in catalog.problems.items():
            log.error("stored mapping not run", mapping=mapping_uuid, problem=problem)
        return _Api(build_api(service, credentials), sync, store, clients)

    async def _close_api(self, api: _Api | None) -> None:
        if api is None:
            return
        with contextlib.suppress(Exception):
            await api.store.close()
        with contextlib.suppress(Exception):
            await api.clients.close()

    def _write_document(self, catalog: Catalog) -> str:
        """The file the workers load: the merged document as planned, in a private temporary
        directory (not the configuration file, which may change under a running pod)."""
        if self._documents_dir is None:
            self._documents_dir = tempfile.mkdtemp(prefix="esm-mappings-")
        self._documents += 1
        path = os.path.join(self._documents_dir, f"mappings-{self._documents}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(catalog.document, f, sort_keys=False)
        return path

    async def apply(self, catalog: Catalog) -> bool:
        """Run ``catalog``'s mappings: the workers of every function whose mappings (or plan)
        changed drain and are replaced; other functions' workers are not touched. False when
        the pod is stopping (nothing new runs)."""
        async with self._apply_lock:
            if self._stopping.is_set():
                return False
            path = self._write_document(catalog)
            new = catalog.config
            plans = plan_workers(new, self.settings)
            functions = {s.plan.function for s in self.slots} | {p.function for p in plans}
            changed = {
                f
                for f in functions
                if _fingerprint(self.config, [s.plan for s in self.slots], f)
                != _fingerprint(new, plans, f)
            }
            retiring = [s for s in self.slots if s.plan.function in changed]
            if retiring:
                log.info(
                    "replacing workers for changed mappings",
                    functions=sorted(changed),
                    workers=len(retiring),
                )
                await self._retire(retiring)
            kept = {m.uuid for m in new.mappings if m.enabled}
            for gone in [u for u in self._unreachable if u not in kept]:
                self._source_problem(gone, None)  # no longer run: nothing to wait for
            self.config, self._worker_config_path = new, path
            self.slots = [s for s in self.slots if s not in retiring]
            fresh = [
                WorkerSlot(p, new, path, initial=False) for p in plans if p.function in changed
            ]
            for slot in fresh:
                self._start(slot)
            self._announce(fresh)
            self._forget_documents()
            deadline = time.monotonic() + _APPLY_READY_SECONDS
            while any(not s.ready for s in fresh) and time.monotonic() < deadline:
                if self._stopping.is_set():
                    return False
                await asyncio.sleep(0.1)
            return True

    async def _retire(self, slots: list[WorkerSlot]) -> None:
        """Drain and end these workers for good (their batches finish and checkpoint)."""
        for s in slots:
            s.retired = True
            s.ready = False
            for mapping_uuid in s.plan.shares:
                WORKER_SHARE.labels(s.plan.function, mapping_uuid, str(s.plan.index)).set(0)
            if s.process is not None and s.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    s.process.send_signal(signal.SIGTERM)
            else:
                self._monitors[s].cancel()  # waiting to restart: nothing runs
        # The monitors stay registered until they end: a stop arriving meanwhile still
        # cancels and awaits them (run()).
        tasks = [self._monitors[s] for s in slots]
        grace = self.settings.drain_timeout_seconds + 10
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            for s in slots:
                if s.process is not None and s.process.returncode is None:
                    log.error("worker did not drain in time; killing it", pid=s.process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        s.process.kill()
            await asyncio.wait(pending)
        for s in slots:
            self._monitors.pop(s, None)

    def _forget_documents(self) -> None:
        if self._documents_dir is None:
            return
        used = {s.config_path for s in self.slots} | {self._worker_config_path}
        for f in Path(self._documents_dir).glob("mappings-*.yaml"):
            if str(f) not in used:
                with contextlib.suppress(OSError):
                    f.unlink()

    def _start(self, slot: WorkerSlot) -> None:
        self.slots.append(slot)
        self._monitors[slot] = asyncio.create_task(self._keep_alive(slot))

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
        self._announce(self.slots)

    def _announce(self, slots: list[WorkerSlot]) -> None:
        # Restart counters exist (at 0) from the start, for dashboards and alerts.
        for function in sorted({s.plan.function for s in slots}):
            for reason in ("recycle", "crash", "stalled", "source_error"):
                WORKER_RESTARTS.labels(function, reason).inc(0)
        for slot in slots:
            by_uuid = {m.uuid: m for m in slot.config.mappings}
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
                # Present (at 0) from the start, for dashboards and alerts.
                SOURCE_UNREACHABLE.labels(plan.function, mapping_uuid).set(
                    1 if mapping_uuid in self._unreachable else 0
                )
                WORKER_SHARE.labels(plan.function, mapping_uuid, str(plan.index)).set(share.maximum)
            log.info("worker plan", worker=plan.name, mappings=held, reserved=plan.reserved)

    def _display_host(self) -> str:
        return (
            "127.0.0.1" if self.settings.http_host in ("0.0.0.0", "::") else self.settings.http_host
        )

    # ------------------------------------------------------------------ workers

    def _worker_env(self, slot: WorkerSlot, control_fd: int) -> dict[str, str]:
        """The runtime's environment plus the function's own variables (which may not name
        anything the runtime reads: the loader refuses reserved names)."""
        env = {k: v for k, v in os.environ.items() if k not in _SUPERVISOR_ONLY}
        env.update(slot.config.functions[slot.plan.function].environment)
        env["ESM_CONTROL_FD"] = str(control_fd)
        return env

    async def _spawn(self, slot: WorkerSlot) -> None:
        # A lease owner name per process start: the supervisor frees exactly this process's
        # shard leases when it exits, and a restarted worker never mistakes old leases for its own.
        slot.plan = dataclasses.replace(
            slot.plan,
            lease_owner=f"{self.settings.pod_name}/{slot.plan.name}/{uuid.uuid4().hex[:8]}",
            unreachable=tuple(sorted(u for u in slot.plan.shares if u in self._unreachable)),
        )
        parent, child = socket.socketpair()
        slot.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runtime",
            "worker",
            slot.config_path,
            "--plan",
            slot.plan.to_json(),
            pass_fds=(child.fileno(),),
            env=self._worker_env(slot, child.fileno()),
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
                elif event == "source" and isinstance(msg.get("mapping"), str):
                    problem = msg.get("problem")
                    self._source_problem(msg["mapping"], str(problem) if problem else None)
        finally:
            writer.close()

    async def _keep_alive(self, slot: WorkerSlot) -> None:
        while not self._stopping.is_set() and not slot.retired:
            await self._spawn(slot)
            assert slot.process is not None
            code = await slot.process.wait()
            try:
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
            finally:  # even when cancelled meanwhile (a stop): the process is gone
                self._reap(slot)
            if self._stopping.is_set() or slot.retired:
                return
            if slot.problems and not slot.ever_ready and slot.initial:
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
            for m in slot.config.mappings
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
