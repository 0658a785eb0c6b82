"""Kinesis end to end against the emulator: format, order, checkpoints, failures, leases."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import Queue, client, wait_until
from tests.support.records import read_invocations, starts
from tests.support.streams import (
    STREAM_ENV,
    create_stream,
    owners,
    put,
    put_many,
    sqlite_leases,
    stream_mapping,
    worker_pid,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kinesis(aws_endpoint: str) -> Any:
    return client("kinesis", aws_endpoint)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Stream settings with the SQLite lease store in the test's own directory."""
    return {**STREAM_ENV, "ESM_DATA_DIR": str(tmp_path / "data")}


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
    kinesis, runtime_factory, record_file, env
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
    runtime_factory(cfg, env=env).start()
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


def invoked_values(record_file: Path) -> list[Any]:
    return [v for inv in starts(record_file) for v in inv["values"]]


def test_a_restart_resumes_after_the_checkpoint(kinesis, runtime_factory, record_file, env):
    arn = create_stream(kinesis, 2)
    put_many(kinesis, arn, [(f"k{i % 3}", {"n": i}) for i in range(20)])
    cfg = stream_mapping(arn, record_file, BatchSize=7)
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: len(invoked_values(record_file)) >= 20, 30)
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 20, 10)
    assert rt.stop() == 0
    put_many(kinesis, arn, [(f"k{i % 3}", {"n": i}) for i in range(20, 30)])
    rt2 = runtime_factory(cfg, env=env).start()
    wait_until(lambda: len(invoked_values(record_file)) >= 30, 30)
    wait_until(lambda: rt2.metric("lambda_committed_events_total") == 10, 10)
    ns = sorted(v["n"] for v in invoked_values(record_file))
    assert ns == list(range(30)), "every record once: nothing lost, nothing repeated"


def test_latest_reads_only_what_arrives_after_the_start(kinesis, runtime_factory, record_file, env):
    arn = create_stream(kinesis, 1)
    put_many(kinesis, arn, [("k", {"n": i, "old": True}) for i in range(5)])
    cfg = stream_mapping(arn, record_file, StartingPosition="LATEST")
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("esm_owned_units") == 1, 20)
    time.sleep(1.0)  # the shard's first (empty) read
    put(kinesis, arn, [("k", {"n": i}) for i in range(5, 8)])
    wait_until(lambda: len(invoked_values(record_file)) >= 3, 20)
    time.sleep(0.5)
    assert [v["n"] for v in invoked_values(record_file)] == [5, 6, 7]


def test_at_timestamp_starts_at_the_time_given(kinesis, runtime_factory, record_file, env):
    arn = create_stream(kinesis, 1)
    put(kinesis, arn, [("k", {"n": 0})])
    time.sleep(1.5)
    at = time.time()
    time.sleep(0.5)
    put(kinesis, arn, [("k", {"n": 1}), ("k", {"n": 2})])
    cfg = stream_mapping(
        arn, record_file, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=at
    )
    runtime_factory(cfg, env=env).start()
    wait_until(lambda: len(invoked_values(record_file)) >= 2, 20)
    time.sleep(0.5)
    assert [v["n"] for v in invoked_values(record_file)] == [1, 2]


def test_partial_batch_response_checkpoints_before_the_lowest_failure(
    kinesis, runtime_factory, record_file, env
):
    arn = create_stream(kinesis, 1)
    values = [("k", {"n": i, "report_times": 1 if i in (3, 6) else 0}) for i in range(10)]
    answers = put(kinesis, arn, values)
    seqs = [a["SequenceNumber"] for a in answers]
    cfg = stream_mapping(
        arn, record_file, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"]
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 10, 30)
    invs = starts(record_file)
    assert [inv["sequences"] for inv in invs] == [seqs, seqs[3:]]
    assert succeeded(record_file) == Counter(seqs)


def test_bisection_isolates_a_poison_record_and_sends_its_batch_info(
    kinesis, aws_endpoint, sqs, runtime_factory, record_file, env
):
    s3 = client("s3", aws_endpoint)
    dest = Queue.create(sqs, "kin-ofd")
    bucket = f"kin-ofd-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    poison_arn = create_stream(kinesis, 1)
    s3_arn = create_stream(kinesis, 1)
    batch = 16
    values = [("k", {"n": i, "poison": i == 5}) for i in range(batch)]
    answers = put(kinesis, poison_arn, values)
    s3_answers = put(kinesis, s3_arn, values)
    sns = client("sns", aws_endpoint)
    via_sns = Queue.create(sqs, "kin-ofd-sns")
    topic_arn = sns.create_topic(Name=f"kin-ofd-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=via_sns.arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    sns_arn = create_stream(kinesis, 1)
    sns_answers = put(kinesis, sns_arn, values)
    common = {
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": batch,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 1,
    }
    cfg = stream_mapping(
        poison_arn,
        record_file,
        DestinationConfig={"OnFailure": {"Destination": dest.arn}},
        **common,
    )
    cfg["eventSourceMappings"].append(
        {
            "FunctionName": "fn",
            "EventSourceArn": s3_arn,
            "DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"}},
            **common,
        }
    )
    cfg["eventSourceMappings"].append(
        {
            "FunctionName": "fn",
            "EventSourceArn": sns_arn,
            "DestinationConfig": {"OnFailure": {"Destination": topic_arn}},
            **common,
        }
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 3 * batch, 60)
    poison_seq = answers[5]["SequenceNumber"]
    # Sequence numbers are per stream (three streams here may share some): this stream's only.
    with_poison = [
        inv
        for inv in starts(record_file)
        if poison_seq in inv["sequences"]
        and inv["event"]["Records"][0]["eventSourceARN"] == poison_arn
    ]
    # The whole batch, then one half per bisection down to the record alone
    # (log2(16) = 4 halvings), then MaximumRetryAttempts (1) retry of the record alone.
    assert [len(inv["sequences"]) for inv in with_poison] == [16, 8, 4, 2, 1, 1]
    [msg] = wait_until(lambda: dest.drain(0.2), 10)
    record = json.loads(msg["Body"])
    assert list(record) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    ]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    # Every invocation the given-up record was part of (bisection steps included).
    assert record["requestContext"]["approximateInvokeCount"] == 6
    assert record["responseContext"]["functionError"] == "Unhandled"
    info = record["KinesisBatchInfo"]
    assert list(info) == [
        "shardId",
        "startSequenceNumber",
        "endSequenceNumber",
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
        "batchSize",
        "streamArn",
    ]
    assert info["shardId"] == answers[5]["ShardId"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == poison_seq
    assert info["batchSize"] == 1 and info["streamArn"] == poison_arn
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["approximateArrivalOfFirstRecord"]
    )
    # S3: the key names the mapping and the shard; the object carries the payload.
    [obj] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    shard = s3_answers[5]["ShardId"]
    assert re.fullmatch(
        rf"aws/lambda/[0-9a-f-]{{36}}/{shard}/\d{{4}}/\d\d/\d\d/"
        r"\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{36}",
        obj["Key"],
    ), obj["Key"]
    doc = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    payload = json.loads(doc["payload"])
    assert [r["kinesis"]["sequenceNumber"] for r in payload["Records"]] == [
        s3_answers[5]["SequenceNumber"]
    ]
    # SNS: the same record, delivered through the topic.
    [sns_msg] = wait_until(lambda: via_sns.drain(0.2), 10)
    sns_record = json.loads(sns_msg["Body"])
    assert list(sns_record) == list(record)
    assert sns_record["KinesisBatchInfo"]["streamArn"] == sns_arn
    assert sns_record["KinesisBatchInfo"]["startSequenceNumber"] == sns_answers[5]["SequenceNumber"]
    assert rt.metric("lambda_on_failure_destination_delivered_events_total") == 3
    assert rt.stop() == 0


def overlap_per_lane(record_file: Path) -> int:
    """Most invocations running at once."""
    invs = read_invocations(record_file)
    events = sorted(
        [(i.started, 1) for i in invs] + [(i.ended or 1e18, -1) for i in invs],
        key=lambda e: (e[0], e[1]),
    )
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def test_parallelization_factor_runs_keys_of_one_shard_at_once_in_order_per_key(
    kinesis, runtime_factory, record_file, env
):
    arn = create_stream(kinesis, 1)
    put_many(kinesis, arn, [(f"key-{i % 16}", {"n": i, "sleep": 0.3}) for i in range(64)])
    cfg = stream_mapping(arn, record_file, BatchSize=4, ParallelizationFactor=4)
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 64, 60)
    invs = starts(record_file)
    assert sum(len(i["sequences"]) for i in invs) == 64
    assert 2 <= overlap_per_lane(record_file) <= 4
    by_key: dict[str, list[int]] = defaultdict(list)
    for inv in invs:
        for key, value in zip(inv["keys"], inv["values"], strict=True):
            by_key[key].append(value["n"])
    for key, ns in by_key.items():
        assert ns == sorted(ns), key
    assert rt.stop() == 0


def test_a_shard_blocked_by_a_failing_batch_is_reported(kinesis, runtime_factory, record_file, env):
    arn = create_stream(kinesis, 1)
    cfg = stream_mapping(arn, record_file)
    rt = runtime_factory(cfg, env={**env, "ESM_BLOCKED_UNIT_WARNING_SECONDS": "1"}).start()
    # Written once the runtime reads the shard, so the record fails for 4 s of its reading
    # however long the start took (a loaded machine's start once used up most of them).
    put(kinesis, arn, [("k", {"n": 0, "fail_until": time.time() + 4}), ("k", {"n": 1})])
    wait_until(lambda: rt.metric("esm_unit_blocked_seconds") >= 1, 20)
    # IteratorAge: the failing record, read and not checkpointed, is getting older.
    shard = kinesis.list_shards(StreamName=arn.split("/")[1])["Shards"][0]["ShardId"]
    assert rt.metric("lambda_iterator_age_milliseconds", shard=shard) >= 1000
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 2, 30)
    wait_until(lambda: rt.metric("esm_unit_blocked_seconds") == 0, 10)
    wait_until(lambda: rt.metric("lambda_iterator_age_milliseconds", shard=shard) == 0, 10)
    assert "unit blocked by a failing batch" in rt.logs()
    assert "unit no longer blocked" in rt.logs()


def test_filtered_out_records_are_checkpointed_without_invoking(
    kinesis, runtime_factory, record_file, env
):
    arn = create_stream(kinesis, 1)
    put_many(kinesis, arn, [("k", {"n": i, "kind": "a" if i % 2 else "b"}) for i in range(10)])
    cfg = stream_mapping(
        arn,
        record_file,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"data": {"kind": ["a"]}})}]},
    )
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 10, 30)
    assert sorted(v["n"] for v in invoked_values(record_file)) == [1, 3, 5, 7, 9]
    assert rt.metric("lambda_filtered_out_events_total") == 5


def test_a_killed_worker_s_shards_move_at_once_inside_the_pod(
    kinesis, runtime_factory, record_file, env
):
    arn = create_stream(kinesis, 4)
    cfg = stream_mapping(arn, record_file, BatchSize=5)
    # A long failover: the shards may only move this fast because the supervisor frees
    # the dead worker's leases.
    rt = runtime_factory(cfg, workers=2, env={**env, "ESM_LEASE_FAILOVER_SECONDS": "60"}).start()
    data = Path(env["ESM_DATA_DIR"])
    # Balanced: each worker holds two shards (one asked the other for a hand-off).
    wait_until(lambda: sorted(owners(sqlite_leases(data)).values()) == [2, 2], 30)
    put_many(kinesis, arn, [(f"k{i}", {"n": i}) for i in range(40)])
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 40, 30)
    victim_owner = sorted(owners(sqlite_leases(data)))[0]
    victim = worker_pid(rt.logs(), victim_owner.split("/")[1] + "/" + victim_owner.split("/")[2])
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    put_many(kinesis, arn, [(f"k{i}", {"n": i}) for i in range(40, 80)])
    wait_until(lambda: len({v["n"] for v in invoked_values(record_file)}) == 80, 30)
    assert time.monotonic() - killed_at < 20, "moved without waiting for lease expiry"
    assert "freed the shard leases of an ended worker" in rt.logs()
    wait_until(lambda: sum(owners(sqlite_leases(data)).values()) == 4, 30)
    assert victim_owner not in owners(sqlite_leases(data))
    ns = [v["n"] for v in invoked_values(record_file)]
    assert sorted(set(ns)) == list(range(80)), "nothing lost"


def test_enhanced_fan_out_consumer_reads_with_subscribe_to_shard(
    kinesis, runtime_factory, record_file, env
):
    arn = create_stream(kinesis, 2)
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="esm")["Consumer"]
    wait_until(
        lambda: (
            kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])[
                "ConsumerDescription"
            ]["ConsumerStatus"]
            == "ACTIVE"
        ),
        20,
    )
    put_many(kinesis, arn, [(f"k{i % 4}", {"n": i}) for i in range(20)])
    # A long poll interval: only pushed records can arrive this fast.
    cfg = stream_mapping(consumer["ConsumerARN"], record_file, BatchSize=50)
    rt = runtime_factory(cfg, env={**env, "ESM_STREAM_POLL_INTERVAL_SECONDS": "30"}).start()
    wait_until(lambda: rt.metric("lambda_committed_events_total") == 20, 30)
    sent = time.monotonic()
    put(kinesis, arn, [("k0", {"n": 20})])
    wait_until(lambda: len(invoked_values(record_file)) == 21, 10)
    assert time.monotonic() - sent < 5
    for inv in starts(record_file):
        for r in inv["event"]["Records"]:
            assert r["eventSourceARN"] == arn  # the stream's ARN, not the consumer's
    ns = sorted(v["n"] for v in invoked_values(record_file))
    assert ns == list(range(21))
    assert rt.stop() == 0
