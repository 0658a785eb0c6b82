"""Keeps the mappings a pod runs equal to the configuration file plus the mapping store.

Every pod runs one: it reads the store every ``ESM_MAPPING_SYNC_SECONDS`` (at once when its
own API changed something), merges it with the file (:func:`runtime.api.catalog.merge`) and,
when the result differs from what runs, has the supervisor apply it: the workers of each
function whose mappings changed drain (finishing and checkpointing their in-flight batches)
and start again with the new set. Then it settles the state machine in the store, each write
conditional on the revision it read: ``Creating``/``Enabling``/``Updating`` become
``Enabled`` (or ``Disabled``), ``Disabling`` becomes ``Disabled``, and a ``Deleting`` record
is removed once this pod no longer runs it. With several pods the first pod to apply a change
settles it; the others converge within one sync period.

A stored mapping whose source cannot be reached is not run (and does not stop the pod, unlike
a broken file); it is checked again every :data:`RECHECK_SECONDS` and runs once it works.
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
from runtime.api.store import MappingStore, MappingStoreError, StoreConflict, StoredMapping
from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.sources.aws import AwsClients

log = structlog.get_logger("runtime.mappings")

RECHECK_SECONDS = 30.0
_SETTLE = {"Creating", "Enabling", "Updating", "Disabling"}

Apply = Callable[[Catalog], Awaitable[None]]
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

    def wake(self) -> None:
        self._wake.set()

    def current(self) -> Catalog:
        return self.catalog

    async def load(self) -> Catalog:
        """The first merge, before any worker starts."""
        self.catalog = self._merge(await self._store.all())
        return self.catalog

    def exclude(self, problems: dict[str, str]) -> Catalog:
        """Leave out stored mappings whose source failed its start-up check."""
        self._unusable.update(problems)
        self._checked_at = time.monotonic()
        for uuid, problem in problems.items():
            log.error("stored mapping not run: its source failed", mapping=uuid, problem=problem)
        self.catalog = self._merge(list(self.catalog.stored.values()))
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
                    "mapping store unavailable; keeping the current mappings", error=str(exc)[:300]
                )

    async def sync_once(self) -> None:
        records = await self._store.all()
        await self._recheck(records)
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
            await self._apply(catalog)
        self.catalog = catalog
        await self._settle(records)

    async def _recheck(self, records: list[StoredMapping]) -> None:
        if not self._unusable or time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = time.monotonic()
        cat = merge(self._document, records, self._settings, self._path)
        for uuid in list(self._unusable):
            m = cat.mapping(uuid)
            if m is None:
                continue
            problem = await self._check_source(m)
            if problem is None:
                log.info("stored mapping's source works again; running it", mapping=uuid)
                del self._unusable[uuid]
            else:
                self._unusable[uuid] = problem

    async def _settle(self, records: list[StoredMapping]) -> None:
        for r in records:
            try:
                if r.state == "Deleting":
                    await self._store.delete(r)
                    log.info("mapping deleted", mapping=r.uuid)
                elif r.state in _SETTLE:
                    state = settled_state(r)
                    await self._store.replace(r.replace(state=state))
                    log.info("mapping settled", mapping=r.uuid, state=state)
            except StoreConflict:
                self.wake()  # changed meanwhile: the next round applies the newer version
