"""Stored mappings in an embedded SQLite file (``mappings.sqlite3`` in ``ESM_DATA_DIR``).

The default: one pod, nothing to set up, kept on the pod's volume. Each write is one
statement conditional on the revision, in its own transaction; calls run on a thread of their
own (sqlite3 blocks), never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runtime.api.store import MappingStoreError, PodState, StoreConflict, StoredMapping

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mappings (
    uuid TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL
)
"""
_PODS = """
CREATE TABLE IF NOT EXISTS pods (
    pod TEXT PRIMARY KEY,
    at REAL NOT NULL,
    applied TEXT NOT NULL
)
"""


class SqliteMappingStore:
    FILE_NAME = "mappings.sqlite3"

    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / self.FILE_NAME
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mappings")

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            raise MappingStoreError(f"mapping store {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise sqlite3.OperationalError(f"cannot create the data directory: {exc}") from exc
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.execute(_PODS)
            self._db = db
        return self._db

    async def open(self) -> None:
        await self._run(self._conn)

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(_close)
        self._thread.shutdown(wait=False)

    async def all(self) -> list[StoredMapping]:
        def _all() -> list[StoredMapping]:
            rows = self._conn().execute("SELECT uuid, revision, record FROM mappings").fetchall()
            return [StoredMapping.from_json(u, int(r), json.loads(rec)) for u, r, rec in rows]

        result: list[StoredMapping] = await self._run(_all)
        return result

    async def create(self, record: StoredMapping) -> StoredMapping:
        def _create() -> None:
            try:
                self._conn().execute(
                    "INSERT INTO mappings (uuid, revision, record) VALUES (?, 1, ?)",
                    (record.uuid, json.dumps(record.to_json())),
                )
            except sqlite3.IntegrityError:
                raise StoreConflict(f"mapping {record.uuid} exists") from None

        await self._run(_create)
        return record.replace(revision=1)

    async def replace(self, record: StoredMapping) -> StoredMapping:
        def _replace() -> None:
            cur = self._conn().execute(
                "UPDATE mappings SET revision = revision + 1, record = ? "
                "WHERE uuid = ? AND revision = ?",
                (json.dumps(record.to_json()), record.uuid, record.revision),
            )
            if cur.rowcount != 1:
                raise StoreConflict(f"mapping {record.uuid} changed meanwhile")

        await self._run(_replace)
        return record.replace(revision=record.revision + 1)

    async def delete(self, record: StoredMapping) -> None:
        def _delete() -> None:
            cur = self._conn().execute(
                "DELETE FROM mappings WHERE uuid = ? AND revision = ?",
                (record.uuid, record.revision),
            )
            if cur.rowcount != 1:
                raise StoreConflict(f"mapping {record.uuid} changed meanwhile")

        await self._run(_delete)

    async def heartbeat(self, state: PodState) -> None:
        def _beat() -> None:
            self._conn().execute(
                "INSERT INTO pods (pod, at, applied) VALUES (?, ?, ?) "
                "ON CONFLICT (pod) DO UPDATE SET at = excluded.at, applied = excluded.applied",
                (state.pod, state.at, json.dumps(state.applied)),
            )

        await self._run(_beat)

    async def pods(self) -> list[PodState]:
        def _pods() -> list[PodState]:
            rows = self._conn().execute("SELECT pod, at, applied FROM pods").fetchall()
            return [PodState(p, float(at), json.loads(applied)) for p, at, applied in rows]

        result: list[PodState] = await self._run(_pods)
        return result

    async def forget_pod(self, pod: str) -> None:
        await self._run(lambda: self._conn().execute("DELETE FROM pods WHERE pod = ?", (pod,)))
