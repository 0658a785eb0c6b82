"""The mapping store contract, on both stores (SQLite file; DynamoDB on the emulator): every
write conditional on the revision read, and the pods' states."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime.api.dynamodb_store import DynamoDbMappingStore
from runtime.api.sqlite_store import SqliteMappingStore
from runtime.api.store import MappingStore, PodState, StoreConflict, StoredMapping
from runtime.config.settings import Settings
from runtime.sources.aws import AwsClients
from tests.support.aws import CREDENTIALS, REGION

pytestmark = pytest.mark.integration


def record(**changes: Any) -> StoredMapping:
    base = StoredMapping(
        uuid=str(uuid.uuid4()),
        body={"FunctionName": "fn", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"},
        state="Creating",
        last_modified=1.5,
        tags={"team": "a"},
    )
    return base.replace(**changes)


async def contract(store: MappingStore) -> None:
    await store.open()
    first = await store.create(record())
    assert first.revision == 1
    with pytest.raises(StoreConflict):
        await store.create(first)
    [got] = await store.all()
    assert got == first
    second = await store.replace(first.replace(state="Enabled"))
    assert second.revision == 2
    with pytest.raises(StoreConflict):  # written over a revision that is gone
        await store.replace(first.replace(state="Disabling"))
    with pytest.raises(StoreConflict):
        await store.delete(first)
    [got] = await store.all()
    assert got.state == "Enabled" and got.revision == 2 and got.tags == {"team": "a"}

    await store.heartbeat(PodState("pod-a", 10.0, {second.uuid: 2}))
    await store.heartbeat(PodState("pod-b", 11.0, {}))
    await store.heartbeat(PodState("pod-a", 12.0, {second.uuid: 2}))
    pods = sorted(await store.pods(), key=lambda p: p.pod)
    assert pods == [PodState("pod-a", 12.0, {second.uuid: 2}), PodState("pod-b", 11.0, {})]
    assert len(await store.all()) == 1  # pod states are not mappings
    await store.forget_pod("pod-b")
    assert [p.pod for p in await store.pods()] == ["pod-a"]

    await store.delete(second)
    assert await store.all() == []
    await store.close()


def test_the_sqlite_store_keeps_the_contract(tmp_path: Path) -> None:
    asyncio.run(contract(SqliteMappingStore(str(tmp_path))))


def test_the_dynamodb_store_keeps_the_contract(aws_endpoint: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])

    async def run() -> None:
        clients = AwsClients(Settings(aws_endpoint_url=aws_endpoint, region=REGION))
        try:
            table = f"esm-mappings-{uuid.uuid4().hex[:8]}"
            await contract(DynamoDbMappingStore(clients, table, REGION))
        finally:
            await clients.close()

    asyncio.run(run())
