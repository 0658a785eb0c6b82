"""Keeps the mappings a pod runs equal to the configuration file plus the mapping store.

Every pod runs one: it reads the store every ``ESM_MAPPING_SYNC_SECONDS`` (at once when its
own API changed something), merges it with the file (:func:`runtime.api.catalog.merge`) and,
when the result differs from what runs, has the supervisor apply it: the workers of each
function whose mappings changed drain (finishing and checkpointing their in-flight batches)
and start again with the new set. A stored mapping about to start running is first checked
against its source; one that fails is left out (shown Disabled with the problem) and checked
again every :data:`RECHECK_SECONDS`, so a wrong broker or queue never fails its function's
other mappings.

After each round the pod writes its state to the store: the revision of every stored mapping
it now runs as stored. A change is settled only when every live pod (one that wrote within
:data:`LIVENESS_SECONDS`) has applied it: ``Creating``/``Enabling``/``Updating`` become
``Enabled`` (or ``Disabled``), ``Disabling`` becomes ``Disabled``, and a ``Deleting`` record
is removed, so "Disabled" and "gone" mean that no pod runs the mapping any more. Each of these
writes is conditional on the revision that was applied, so a newer change is never lost. A pod
that stops cleanly removes its state; a dead one stops counting after the liveness time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from runtime.api.catalog import Catalog, merge
from runtime.api.service import settled_state
from runtime.api.store import (
    MappingStore,
    MappingStoreError,
    PodState,
    StoreConflict,
    StoredMapping,
)
from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.sources.aws import AwsClients
from runtime.supervisor.processing import ProcessingResults

log = structlog.get_logger("runtime.mappings")

RECHECK_SECONDS = 30.0
# A pod that has not synced for this long (or ten sync periods, if longer) is taken for dead:
# changes no longer wait for its acknowledgement.
LIVENESS_SECONDS = 30.0
_SETTLE = {"Creating", "Enabling", "Updating", "Disabling"}

Apply = Callable[[Catalog], Awaitable[bool]]
SourceCheck = Callable[[Mapping], Awaitable[str | None]]


def api_credentials(settings: Settings) -> dict[str, str]:
    """The access keys the API accepts (ESM_API_CREDENTIALS plus ESM_API_CREDENTIALS_FILE).
    An unreadable or malformed file is a configuration error (ValueError), not "no API"."""
    keys = dict(settings.api_credentials)
    if settings.api_credentials_file:
        try:
            data = json.loads(Path(settings.api_credentials_file).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"ESM_API_CREDENTIALS_FILE: cannot read a JSON object of access keys ({exc})"
            ) from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in data.items()
        ):
            raise ValueError(
                "ESM_API_CREDENTIALS_FILE: must hold a JSON object of access key id to secret"
            )
        keys.update(data)
    return keys


def open_store(settings: Settings, clients: AwsClients) -> MappingStore:
    kind = settings.mapping_store or settings.lease_store
    if kind == "dynamodb":
        from runtime.api.dynamodb_store import DynamoDbMappingStore

        return DynamoDbMappingStore(
            clients, settings.mapping_table, settings.lease_region or settings.region
        )
    from runtime.api.sqlite_store import SqliteMappingStore

    return SqliteMappingStore(settings.data_dir)


class MappingSync:
    def __init__(
        self,
        *,
        document: Any,
        path: str,
        settings: Settings,
        store: MappingStore,
        catalog: Catalog,
        check_source: SourceCheck,
    ) -> None:
        self._document = document
        self._path = path
        self._settings = settings
        self._store = store
        self.catalog = catalog
        self._check_source = check_source
        self._wake = asyncio.Event()
        self._unusable: dict[str, str] = {}  # stored UUID -> why its source failed
        self._checked_at = 0.0
        self._apply: Apply | None = None
        self.results = ProcessingResults()

    def wake(self) -> None:
        self._wake.set()

    def current(self) -> Catalog:
        return self.catalog

    async def load(self) -> Catalog:
        """The first merge, before any worker starts. The pod announces itself at once, so
        that no change settles without it from now on."""
        records = sorted(await self._store.all(), key=lambda r: (r.last_modified, r.uuid))
        self.catalog = self._merge(records)
        await self._heartbeat(records)
        return self.catalog

    async def _heartbeat(self, records: list[StoredMapping]) -> None:
        applied = {r.uuid: r.revision for r in records}
        await self._store.heartbeat(PodState(self._settings.pod_name, time.time(), applied))

    def exclude(self, problems: dict[str, str]) -> Catalog:
        """Leave out stored mappings whose source failed its start-up check."""
        self._unusable.update(problems)
        self._checked_at = time.monotonic()
        for uuid, problem in problems.items():
            log.error("stored mapping not run: its source failed", mapping=uuid, problem=problem)
        records = sorted(self.catalog.stored.values(), key=lambda r: (r.last_modified, r.uuid))
        self.catalog = self._merge(records)
        return self.catalog

    def _merge(self, records: list[StoredMapping]) -> Catalog:
        cat = merge(self._document, records, self._settings, self._path)
        gone = {u for u in self._unusable if u not in cat.stored}
        for u in gone:
            del self._unusable[u]
        if not self._unusable:
            return cat
        usable = [r for r in records if r.uuid not in self._unusable]
        cat = merge(self._document, usable, self._settings, self._path)
        problems = {**cat.problems, **{u: f"source: {p}" for u, p in self._unusable.items()}}
        return Catalog(
            cat.config, cat.document, cat.declared, {r.uuid: r for r in records}, problems
        )

    async def run(self, apply: Apply, stopping: asyncio.Event) -> None:
        self._apply = apply
        try:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.mapping_sync_seconds)
                self._wake.clear()
                if stopping.is_set():
                    return
                try:
                    await self.sync_once()
                except (MappingStoreError, OSError) as exc:
                    log.warning(
                        "mapping store unavailable; keeping the current mappings",
                        error=str(exc)[:300],
                    )
        finally:
            # A clean stop: nobody needs to wait for this pod's acknowledgements any more.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.forget_pod(self._settings.pod_name))

    async def sync_once(self) -> None:
        self.results.update()
        records = sorted(await self._store.all(), key=lambda r: (r.last_modified, r.uuid))
        await self._recheck(records)
        catalog = self._merge(records)
        await self._check_new(catalog, records)
        catalog = self._merge(records)
        for uuid, problem in catalog.problems.items():
            if self.catalog.problems.get(uuid) != problem:
                log.error("stored mapping not run", mapping=uuid, problem=problem)
        if catalog.document != self.catalog.document and self._apply is not None:
            log.info(
                "mappings changed; applying",
                running=len(catalog.config.mappings),
                stored=len(records),
            )
            if not await self._apply(catalog):
                return  # stopping: nothing was applied for good
        self.catalog = catalog
        # Tell the other pods what this one now runs, then settle what every live pod runs.
        await self._heartbeat(records)
        await self._settle(records, await self._live_pods())

    async def _live_pods(self) -> list[PodState]:
        horizon = time.time() - max(LIVENESS_SECONDS, 10 * self._settings.mapping_sync_seconds)
        return [p for p in await self._store.pods() if p.at >= horizon]

    async def _check_new(self, catalog: Catalog, records: list[StoredMapping]) -> None:
        """Check the source of every stored mapping about to start running here (an API call
        on another pod, a broker that went away): one that fails is left out, shown with its
        problem, and checked again later, instead of failing its function's workers."""
        running = {m.uuid: m.raw for m in self.catalog.config.mappings if m.enabled}
        fresh = [
            m
            for m in catalog.config.mappings
            if m.enabled
            and m.uuid not in catalog.declared
            and running.get(m.uuid) != m.raw
            and m.uuid not in self._unusable
        ]
        if not fresh:
            return
        problems = await asyncio.gather(*(self._check_source(m) for m in fresh))
        for m, problem in zip(fresh, problems, strict=True):
            if problem is not None:
                log.error(
                    "stored mapping not run: its source failed", mapping=m.uuid, problem=problem
                )
                self._unusable[m.uuid] = problem
                self._checked_at = time.monotonic()

    async def _recheck(self, records: list[StoredMapping]) -> None:
        if not self._unusable or time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = time.monotonic()
        cat = merge(self._document, records, self._settings, self._path)
        due = [m for u in list(self._unusable) if (m := cat.mapping(u)) is not None]
        problems = await asyncio.gather(*(self._check_source(m) for m in due))
        for m, problem in zip(due, problems, strict=True):
            if problem is None:
                log.info("stored mapping's source works again; running it", mapping=m.uuid)
                del self._unusable[m.uuid]
            else:
                self._unusable[m.uuid] = problem

    async def _settle(self, records: list[StoredMapping], pods: list[PodState]) -> None:
        """Settle each change that every live pod has applied (this one included)."""
        for r in records:
            if r.state not in _SETTLE and r.state != "Deleting":
                continue
            waiting = [p.pod for p in pods if p.applied.get(r.uuid, -1) < r.revision]
            if waiting:
                continue  # the next round looks again
            try:
                if r.state == "Deleting":
                    await self._store.delete(r)
                    log.info("mapping deleted", mapping=r.uuid)
                else:
                    state = settled_state(r)
                    await self._store.replace(r.replace(state=state))
                    log.info("mapping settled", mapping=r.uuid, state=state)
            except StoreConflict:
                self.wake()  # changed meanwhile: the next round applies the newer version
