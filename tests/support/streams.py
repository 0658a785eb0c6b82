"""Kinesis streams and DynamoDB tables with streams on the emulator, for the tests."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.support.config import single_mapping

STREAM_HANDLER = "tests.handlers.streams.handler"

# Short lease and polling times so tests see hand-overs and records quickly.
STREAM_ENV = {
    "ESM_LEASE_FAILOVER_SECONDS": "3",
    "ESM_STREAM_POLL_INTERVAL_SECONDS": "0.1",
    "ESM_SHARD_SYNC_SECONDS": "2",
    "ESM_STREAM_CHECKPOINT_INTERVAL_SECONDS": "0.3",
    "ESM_RETRY_BACKOFF_SECONDS": "0.2",
    "ESM_RETRY_BACKOFF_MAX_SECONDS": "1",
}


def create_stream(kinesis: Any, shards: int, prefix: str = "s") -> str:
    """A new ACTIVE stream; returns its ARN (read from the emulator, never built)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + 30
    while True:
        desc = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if desc["StreamStatus"] == "ACTIVE":
            return str(desc["StreamARN"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {name} not ACTIVE")
        time.sleep(0.1)


def stream_name(arn: str) -> str:
    return arn.split("/")[1]


def put(kinesis: Any, arn: str, values: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Put (partition key, JSON value) records in order; returns PutRecord answers."""
    name = stream_name(arn)
    out = []
    for key, value in values:
        out.append(
            kinesis.put_record(StreamName=name, PartitionKey=key, Data=json.dumps(value).encode())
        )
    return out


def put_many(kinesis: Any, arn: str, values: list[tuple[str, Any]]) -> None:
    """Put records in batches of 500 (order per partition key holds within a call)."""
    name = stream_name(arn)
    for i in range(0, len(values), 500):
        chunk = values[i : i + 500]
        got = kinesis.put_records(
            StreamName=name,
            Records=[{"PartitionKey": k, "Data": json.dumps(v).encode()} for k, v in chunk],
        )
        assert not got.get("FailedRecordCount"), got


def create_table_with_stream(ddb: Any, view: str = "NEW_AND_OLD_IMAGES") -> tuple[str, str]:
    """A table keyed by ``id`` (S) with a stream; returns (table name, stream ARN)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    got = ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    arn = got["TableDescription"].get("LatestStreamArn")
    if not arn:
        arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    return name, str(arn)


def stream_mapping(
    arn: str, record_file: Path, *, handler: str = STREAM_HANDLER, **mapping: Any
) -> dict[str, Any]:
    mapping.setdefault("StartingPosition", "TRIM_HORIZON")
    return single_mapping(arn, record_file, handler=handler, **mapping)


def sqlite_leases(data_dir: Path) -> list[dict[str, Any]]:
    """The SQLite lease store's rows (read directly, as an operator would)."""
    import sqlite3

    path = data_dir / "leases.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM leases ORDER BY shard")]
    finally:
        db.close()


def owners(leases: list[dict[str, Any]]) -> Counter[str]:
    """Leases held per owner, for the shards that have not ended."""
    return Counter(lz["owner"] for lz in leases if lz["owner"] and lz["checkpoint"] != "SHARD_END")


def worker_pid(logs: str, worker: str) -> int:
    """The pid of the latest start of ``worker`` ("fn/0"), from the supervisor's log."""
    pid = None
    for line in logs.splitlines():
        if '"worker started"' in line:
            rec = json.loads(line)
            if rec.get("worker") == worker:
                pid = int(rec["pid"])
    assert pid is not None, f"no start of {worker} in the log"
    return pid
