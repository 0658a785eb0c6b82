"""Shard leases across pods: two runtimes sharing one DynamoDB lease table, and the lease
store contract against both stores (SQLite file, DynamoDB on the emulator)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest

from runtime.config.settings import Settings
from runtime.leases.dynamodb_store import DynamoDbLeaseStore
from runtime.leases.sqlite_store import SqliteLeaseStore
from runtime.leases.store import END, LeaseStore, Position
from runtime.sources.aws import AwsClients
from tests.support.aws import CREDENTIALS, REGION, client, wait_until
from tests.support.records import read_invocations
from tests.support.streams import STREAM_ENV, create_stream, put_many, stream_mapping

pytestmark = pytest.mark.integration


def table_owners(ddb: Any, table: str) -> Counter[str]:
    items = ddb.scan(TableName=table, ConsistentRead=True).get("Items", [])
    return Counter(
        i["leaseOwner"]["S"]
        for i in items
        if "leaseOwner" in i and i.get("checkpoint", {}).get("S") != "SHARD_END"
    )


def test_two_pods_share_shards_take_over_a_dead_pod_and_never_overlap(
    aws_endpoint, runtime_factory, record_file, tmp_path
):
    kinesis = client("kinesis", aws_endpoint)
    ddb = client("dynamodb", aws_endpoint)
    arn = create_stream(kinesis, 4)
    table = f"leases-{uuid.uuid4().hex[:8]}"
    cfg = stream_mapping(arn, record_file, BatchSize=5)
    common = {
        **STREAM_ENV,
        "ESM_LEASE_STORE": "dynamodb",
        "ESM_LEASE_TABLE": table,
        "ESM_LEASE_FAILOVER_SECONDS": "3",
    }
    pod_a = runtime_factory(cfg, env={**common, "ESM_POD_NAME": "pod-a"}).start()
    wait_until(lambda: table_owners(ddb, table).total() == 4, 30)
    put_many(kinesis, arn, [(f"k{i % 8}", {"n": i, "sleep": 0.4}) for i in range(80)])
    pod_b = runtime_factory(cfg, env={**common, "ESM_POD_NAME": "pod-b"}).start()
    # Balanced by hand-off requests: two shards each.
    wait_until(lambda: sorted(table_owners(ddb, table).values()) == [2, 2], 30)
    assert {o.split("/")[0] for o in table_owners(ddb, table)} == {"pod-a", "pod-b"}
    put_many(kinesis, arn, [(f"k{i % 8}", {"n": i}) for i in range(80, 120)])
    wait_until(
        lambda: (
            {v["n"] for i in read_invocations(record_file) for v in i_values(i)} >= set(range(120))
        ),
        60,
    )
    # Kill pod A outright (no supervisor left to free its leases): pod B takes them once
    # they expire and resumes from their checkpoints.
    pods_a = set(pod_a.worker_pids())
    pod_a.kill_tree()
    killed_at = time.time()
    put_many(kinesis, arn, [(f"k{i % 8}", {"n": i}) for i in range(120, 160)])
    wait_until(lambda: list(table_owners(ddb, table).values()) == [4], 30)
    assert next(iter(table_owners(ddb, table))).startswith("pod-b/")
    wait_until(
        lambda: (
            {v["n"] for i in read_invocations(record_file) for v in i_values(i)} >= set(range(160))
        ),
        60,
    )
    # No two invocations of one shard overlapped in time, across the pods (an invocation
    # of the killed pod that never recorded its end ended when the pod was killed).
    by_shard: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for inv in read_invocations(record_file):
        shard = inv.event["Records"][0]["eventID"].split(":")[0]
        end = inv.ended or (killed_at if inv.pid in pods_a else time.time())
        by_shard[shard].append((inv.started, end, inv.pid))
    for shard, spans in by_shard.items():
        spans.sort()
        for (s1, e1, p1), (s2, _, p2) in itertools.pairwise(spans):
            assert s2 >= e1 - 0.001, f"{shard}: invocations overlap: {(s1, e1, p1)}, {(s2, p2)}"
    assert pod_b.stop() == 0


def i_values(inv: Any) -> list[dict[str, Any]]:
    import base64

    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in inv.event["Records"]]


# ------------------------------------------------------------------ the store contract


def _settings(endpoint: str) -> Settings:
    return Settings(aws_endpoint_url=endpoint, region=REGION)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_factory(request, aws_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    table = f"contract-{uuid.uuid4().hex[:8]}"
    mapping = str(uuid.uuid4())

    def make(clients: AwsClients) -> LeaseStore:
        if request.param == "sqlite":
            return SqliteLeaseStore(str(tmp_path / "data"), mapping)
        return DynamoDbLeaseStore(clients, table, mapping, REGION)

    return make


def test_every_write_is_conditional_on_owner_and_counter(store_factory, aws_endpoint):
    async def scenario() -> None:
        clients = AwsClients(_settings(aws_endpoint))
        a, b = store_factory(clients), store_factory(clients)
        try:
            await a.open()
            await b.open()
            await a.ensure([("s-1", ()), ("s-2", ("s-1",))])
            await a.ensure([("s-1", ("ignored",))])  # existing leases are kept
            leases = {lz.shard: lz for lz in await a.list()}
            assert leases["s-1"].owner is None and leases["s-1"].counter == 0
            assert leases["s-1"].parents == () and leases["s-2"].parents == ("s-1",)
            free = leases["s-1"]
            mine = await a.take(free, "owner-a")
            assert mine is not None and mine.owner == "owner-a" and mine.counter == 1
            assert await b.take(free, "owner-b") is None, "a stale view cannot take it"
            renewed = await a.renew(mine)
            assert renewed is not None and renewed.counter == 2
            assert await a.renew(mine) is None, "a renewal with an old counter fails"
            moved = await a.checkpoint(renewed, Position("after", "42"))
            assert moved is not None and moved.checkpoint == Position("after", "42")
            # Another worker takes it over (after expiry): the old owner is fenced off.
            stolen = await b.take(moved, "owner-b")
            assert stolen is not None and stolen.owner == "owner-b"
            assert await a.checkpoint(moved, Position("after", "99")) is None
            [now] = [lz for lz in await b.list() if lz.shard == "s-1"]
            assert now.checkpoint == Position("after", "42")
            # Hand-off requests: one at a time, only to the current owner.
            assert await a.request(stolen, "owner-a")
            assert not await a.request(stolen, "owner-c")
            [asked] = [lz for lz in await b.list() if lz.shard == "s-1"]
            assert asked.pending_owner == "owner-a"
            released = await b.release(asked)
            assert released is not None and released.owner is None
            retaken = await a.take(released, "owner-a")
            assert retaken is not None and retaken.pending_owner is None
            ended = await a.checkpoint(retaken, END)
            assert ended is not None and ended.ended
            # An ended lease nobody holds can be deleted, once; a held one cannot.
            assert await a.delete(ended) is False, "still owned"
            [free_end] = [lz for lz in await a.list() if lz.shard == "s-1"]
            freed_end = await a.release(free_end)
            assert freed_end is not None
            assert await b.delete(free_end) is False, "stale counter"
            assert await b.delete(freed_end) is True
            assert [lz.shard for lz in await a.list()] == ["s-2"]
            # The supervisor frees a dead worker's leases.
            [s2] = [lz for lz in await a.list() if lz.shard == "s-2"]
            held = await b.take(s2, "dead-worker")
            assert held is not None
            assert await a.evict("dead-worker") == 1
            [freed] = [lz for lz in await a.list() if lz.shard == "s-2"]
            assert freed.owner is None and freed.counter == held.counter + 1
        finally:
            await a.close()
            await b.close()
            await clients.close()

    asyncio.run(scenario())
