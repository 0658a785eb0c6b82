"""Resharding against kinesis-local (ministack's split deletes the parent shard): a child
shard starts only after its parent(s) were read to the end and checkpointed as ended, for a
split and a merge, and nothing is lost or reordered per partition key."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import client, wait_until
from tests.support.emulator import KinesisLocal
from tests.support.records import read_invocations
from tests.support.streams import STREAM_ENV, put_many, sqlite_leases, stream_mapping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kinesis_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = KinesisLocal(tmp_path_factory.mktemp("kinesis-local"))
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def wait_active(kinesis: Any, name: str) -> None:
    def active() -> bool:
        d = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return bool(d["StreamStatus"] == "ACTIVE")

    wait_until(active, 30, what=f"stream {name} ACTIVE")


def values_of(inv: Any) -> list[tuple[str, str, int]]:
    """(shard, partition key, n) of every record of an invocation."""
    out = []
    for r in inv.event["Records"]:
        value = json.loads(base64.b64decode(r["kinesis"]["data"]))
        out.append((r["eventID"].split(":")[0], r["kinesis"]["partitionKey"], value["n"]))
    return out


def test_split_and_merge_read_parents_before_children_in_order_per_key(
    kinesis_local, runtime_factory, record_file, tmp_path
):
    kinesis = client("kinesis", kinesis_local)
    name = f"reshard-{int(time.time() * 1000)}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_active(kinesis, name)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    keys = [f"key-{i}" for i in range(12)]
    counter = iter(range(10_000))

    def put_round(n: int) -> None:
        put_many(
            kinesis,
            arn,
            [(keys[i % len(keys)], {"n": next(counter), "sleep": 0.02}) for i in range(n)],
        )

    # Everything is written before the runtime starts, so that parent and children all hold
    # records at once: only the parent-first rule keeps each key in order.
    put_round(60)
    [parent] = kinesis.list_shards(StreamName=name)["Shards"]
    kinesis.split_shard(
        StreamName=name, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(2**127)
    )
    wait_active(kinesis, name)
    put_round(60)
    children = [s for s in kinesis.list_shards(StreamName=name)["Shards"] if s.get("ParentShardId")]
    assert len(children) == 2
    low, high = sorted(children, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    kinesis.merge_shards(
        StreamName=name, ShardToMerge=low["ShardId"], AdjacentShardToMerge=high["ShardId"]
    )
    wait_active(kinesis, name)
    put_round(60)
    data = tmp_path / "data"
    env = {
        **STREAM_ENV,
        "ESM_AWS_ENDPOINT_URL": kinesis_local,
        "ESM_DATA_DIR": str(data),
        "ESM_SHARD_SYNC_SECONDS": "1",
    }
    cfg = stream_mapping(arn, record_file, BatchSize=7)
    runtime_factory(cfg, env=env).start()

    def processed() -> set[int]:
        return {n for inv in read_invocations(record_file) for _, _, n in values_of(inv)}

    wait_until(lambda: len(processed()) == 180, 40)

    invs = read_invocations(record_file)
    everything = [v for inv in invs for v in values_of(inv)]
    assert sorted(n for _, _, n in everything) == list(range(180)), "each record exactly once"
    # Order per key holds across the split and the merge.
    by_key: dict[str, list[int]] = defaultdict(list)
    for _, key, n in everything:
        by_key[key].append(n)
    for key, ns in by_key.items():
        assert ns == sorted(ns), key
    # Parents before children: a child's first invocation starts after the last invocation
    # of each of its parents ended.
    spans: dict[str, tuple[float, float]] = {}
    for inv in invs:
        shard = values_of(inv)[0][0]
        first, last = spans.get(shard, (inv.started, inv.ended or 0.0))
        spans[shard] = (min(first, inv.started), max(last, inv.ended or 0.0))
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=name)["Shards"]}
    merged = next(s for s in shards.values() if s.get("AdjacentParentShardId"))
    for child in [low, high, merged]:
        parents = [child["ParentShardId"], child.get("AdjacentParentShardId")]
        for p in filter(None, parents):
            if p in spans and child["ShardId"] in spans:
                assert spans[child["ShardId"]][0] >= spans[p][1], (child["ShardId"], p)
    # The lease table: ended leases whose children began are deleted (so the table does not
    # grow with every reshard), and never created again by a later shard listing (that would
    # read them again: the exactly-once check above runs after a few listings).
    wait_until(lambda: set(lz["shard"] for lz in sqlite_leases(data)) == {merged["ShardId"]}, 10)
    time.sleep(2.5)  # more listings (every second)
    assert [lz["shard"] for lz in sqlite_leases(data)] == [merged["ShardId"]]
    [lease] = sqlite_leases(data)
    assert lease["checkpoint"] != "SHARD_END"
    assert set(json.loads(lease["parents"])) == {low["ShardId"], high["ShardId"]}
    assert sorted(n for inv in read_invocations(record_file) for _, _, n in values_of(inv)) == (
        list(range(180))
    )
