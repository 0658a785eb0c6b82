"""Kinesis end to end against the emulator: format, order, checkpoints, failures, leases."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import client, wait_until
from tests.support.records import read_invocations
from tests.support.streams import STREAM_ENV, create_stream, put, put_many, stream_mapping

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kinesis(aws_endpoint: str) -> Any:
    return client("kinesis", aws_endpoint)


def starts(record_file: Path) -> list[dict[str, Any]]:
    if not record_file.exists():
        return []
    return [
        json.loads(line)
        for line in record_file.read_text().splitlines()
        if line.strip() and json.loads(line)["phase"] == "start"
    ]


def succeeded(record_file: Path) -> Counter[str]:
    """How many times each sequence number was in an invocation that returned without
    reporting it."""
    c: Counter[str] = Counter()
    for inv in read_invocations(record_file):
        if inv.outcome == "returned":
            failed = set(inv.failed or [])
            seqs = [r["kinesis"]["sequenceNumber"] for r in inv.event["Records"]]
            # In a shard, everything from the first reported failure on is retried.
            for s in seqs:
                if s in failed:
                    break
                c[s] += 1
    return c


def test_records_arrive_in_lambda_format_in_order_per_shard(
    kinesis, runtime_factory, record_file
):
    arn = create_stream(kinesis, 2)
    values = [(f"key-{i % 5}", {"n": i}) for i in range(60)]
    put_many(kinesis, arn, values)
    cfg = stream_mapping(
        arn,
        record_file,
        BatchSize=10,
        function={"Role": "arn:aws:iam::123456789012:role/stream-role"},
    )
    runtime_factory(cfg, env=STREAM_ENV).start()
    wait_until(lambda: sum(len(s["sequences"]) for s in starts(record_file)) >= 60, 30)
    invs = starts(record_file)
    seen: dict[str, list[int]] = defaultdict(list)
    for inv in invs:
        assert len(set(inv["shards"])) == 1, "a batch holds records of one shard"
        assert len(inv["sequences"]) <= 10
        seen[inv["shards"][0]].extend(int(s) for s in inv["sequences"])
        for r in inv["event"]["Records"]:
            assert list(r) == [
                "kinesis",
                "eventSource",
                "eventVersion",
                "eventID",
                "eventName",
                "invokeIdentityArn",
                "awsRegion",
                "eventSourceARN",
            ]
            assert list(r["kinesis"]) == [
                "kinesisSchemaVersion",
                "partitionKey",
                "sequenceNumber",
                "data",
                "approximateArrivalTimestamp",
            ]
            k = r["kinesis"]
            assert r["eventID"] == f"{inv['shards'][0]}:{k['sequenceNumber']}"
            assert r["eventSource"] == "aws:kinesis" and r["eventName"] == "aws:kinesis:record"
            assert r["invokeIdentityArn"] == "arn:aws:iam::123456789012:role/stream-role"
            assert r["eventSourceARN"] == arn
            assert isinstance(k["approximateArrivalTimestamp"], float)
            json.loads(base64.b64decode(k["data"]))
    assert sum(len(v) for v in seen.values()) == 60, "each record exactly once"
    for shard, seqs in seen.items():
        assert seqs == sorted(seqs), f"{shard} out of order"
    # Order per partition key.
    by_key: dict[str, list[int]] = defaultdict(list)
    for inv in invs:
        for key, value in zip(inv["keys"], inv["values"], strict=True):
            by_key[key].append(value["n"])
    for key, ns in by_key.items():
        assert ns == sorted(ns), key
