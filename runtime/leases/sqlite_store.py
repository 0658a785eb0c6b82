"""The lease table in an embedded SQLite file: one pod, nothing to set up.

Every worker process of the pod opens the same file (``leases.sqlite3`` in the data
directory, ``ESM_DATA_DIR``; a volume in the container), in WAL mode so readers never block
the writer. Each change is one ``UPDATE ... WHERE owner IS ? AND counter = ?`` in its own
immediate transaction, so the owner/counter condition holds across processes exactly as a
DynamoDB condition expression does. Calls run on one thread per store (sqlite3 blocks), never
on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from runtime.leases.store import Lease, LeaseStoreError, Position

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    mapping TEXT NOT NULL,
    shard TEXT NOT NULL,
    owner TEXT,
    counter INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    parents TEXT NOT NULL DEFAULT '[]',
    pending_owner TEXT,
    PRIMARY KEY (mapping, shard)
)
"""
_COLUMNS = "shard, owner, counter, checkpoint, parents, pending_owner"


def _lease(row: tuple[Any, ...]) -> Lease:
    shard, owner, counter, checkpoint, parents, pending = row
    return Lease(
        shard, owner, int(counter), Position.decode(checkpoint), tuple(json.loads(parents)), pending
    )


class SqliteLeaseStore:
    FILE_NAME = "leases.sqlite3"

    def __init__(self, data_dir: str, mapping: str) -> None:
        self.path = Path(data_dir) / self.FILE_NAME
        self._mapping = mapping
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leases")

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            raise LeaseStoreError(f"lease store {self.path}: {exc}") from exc

    # ------------------------------------------------------------------ thread side

    def _connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot create the data directory: {exc}") from exc
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._connect()
        assert self._db is not None
        return self._db

    def _ensure(self, shards: list[tuple[str, tuple[str, ...]]]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO leases (mapping, shard, parents) VALUES (?, ?, ?)",
                [(self._mapping, s, json.dumps(list(p))) for s, p in shards],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _list(self) -> list[Lease]:
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM leases WHERE mapping = ? ORDER BY shard", (self._mapping,)
        )
        return [_lease(r) for r in rows]

    def _update(self, lease: Lease, sets: dict[str, Any]) -> Lease | None:
        db = self._conn()
        assignments = ", ".join([*(f"{k} = ?" for k in sets), "counter = counter + 1"])
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                f"UPDATE leases SET {assignments} "
                "WHERE mapping = ? AND shard = ? AND owner IS ? AND counter = ?",
                (*sets.values(), self._mapping, lease.shard, lease.owner, lease.counter),
            )
            row = None
            if cur.rowcount == 1:
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM leases WHERE mapping = ? AND shard = ?",
                    (self._mapping, lease.shard),
                ).fetchone()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return None if row is None else _lease(row)

    def _request(self, lease: Lease, requester: str) -> bool:
        cur = self._conn().execute(
            "UPDATE leases SET pending_owner = ? WHERE mapping = ? AND shard = ? "
            "AND owner IS ? AND pending_owner IS NULL",
            (requester, self._mapping, lease.shard, lease.owner),
        )
        return cur.rowcount == 1

    def _delete(self, lease: Lease) -> bool:
        cur = self._conn().execute(
            "DELETE FROM leases WHERE mapping = ? AND shard = ? AND owner IS NULL AND counter = ?",
            (self._mapping, lease.shard, lease.counter),
        )
        return cur.rowcount == 1

    def _evict(self, owner: str) -> int:
        cur = self._conn().execute(
            "UPDATE leases SET owner = NULL, counter = counter + 1 WHERE mapping = ? AND owner = ?",
            (self._mapping, owner),
        )
        return cur.rowcount

    # ------------------------------------------------------------------ the protocol

    async def open(self) -> None:
        await self._run(self._conn)

    async def ensure(self, shards: list[tuple[str, tuple[str, ...]]]) -> None:
        if shards:
            await self._run(self._ensure, shards)

    async def list(self) -> list[Lease]:
        leases: list[Lease] = await self._run(self._list)
        return leases

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        got: Lease | None = await self._run(
            self._update, lease, {"owner": owner, "pending_owner": None}
        )
        return got

    async def renew(self, lease: Lease) -> Lease | None:
        got: Lease | None = await self._run(self._update, lease, {})
        return got

    async def checkpoint(self, lease: Lease, position: Position) -> Lease | None:
        got: Lease | None = await self._run(self._update, lease, {"checkpoint": position.encode()})
        return got

    async def release(self, lease: Lease) -> Lease | None:
        got: Lease | None = await self._run(self._update, lease, {"owner": None})
        return got

    async def request(self, lease: Lease, requester: str) -> bool:
        ok: bool = await self._run(self._request, lease, requester)
        return ok

    async def delete(self, lease: Lease) -> bool:
        ok: bool = await self._run(self._delete, lease)
        return ok

    async def evict(self, owner: str) -> int:
        n: int = await self._run(self._evict, owner)
        return n

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(shut)
        self._thread.shutdown(wait=False)
