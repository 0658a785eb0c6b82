"""The command line users drive: ``invoke`` (samples, recorded events, records fetched from a
real source without acknowledging them) and ``mappings`` against a running runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.api import KEY_ID, SECRET, api_env
from tests.support.aws import CREDENTIALS, REGION, Queue, wait_until
from tests.support.aws import client as aws_client
from tests.support.emulator import REPO, free_port
from tests.support.kafka import committed, create_topic, produce
from tests.support.streams import create_stream, put

pytestmark = pytest.mark.integration

HANDLER = "tests.handlers.first_fails.handler"


def esm(*args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO,
        env={**__import__("os").environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"esm-runtime {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done


def config_file(tmp_path: Path, mappings: list[dict[str, Any]]) -> Path:
    path = tmp_path / "invoke.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "functions": {"fn": {"Handler": HANDLER, "Timeout": 5}},
                "eventSourceMappings": mappings,
            }
        )
    )
    return path


def invoke_json(config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = esm("invoke", str(config), "fn", *args, "--output", "json", env=env).stdout
    return json.loads(out)


def test_invoke_every_sample_and_explain_the_answer(tmp_path):
    stream = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
    dest = "arn:aws:sqs:us-east-1:000000000000:failed"
    config = config_file(tmp_path, [{
        "FunctionName": "fn", "EventSourceArn": stream, "StartingPosition": "LATEST",
        "FunctionResponseTypes": ["ReportBatchItemFailures"], "MaximumRetryAttempts": 2,
        "DestinationConfig": {"OnFailure": {"Destination": dest}},
    }])  # fmt: skip
    sqs = invoke_json(config, "--sample", "sqs")
    assert sqs["outcome"] == "partial" and sqs["records"] == 2
    assert sqs["failed"] == ["059f36b4-87a3-44ab-83d2-661975830a7d"]
    assert sqs["actions"][0] == "delete 1 message(s) from the queue"
    assert sqs["actions"][1].startswith("leave 1 message(s) in the queue")
    assert sqs["mapping"] is None and sqs["notes"]  # no SQS mapping: Lambda's defaults

    kinesis = invoke_json(config, "--sample", "kinesis")
    first = "49590338271490256608559692538361571095921575989136588898"
    second = "49590338271490256608559692540925702759324208523137515618"
    # The handler names the first record; the second, later in the same shard, comes back too.
    assert kinesis["outcome"] == "partial" and kinesis["failed"] == [first, second]
    assert kinesis["mapping"] is not None and not kinesis["notes"]
    assert kinesis["actions"] == [
        f"retry from sequence number {first} (the lowest failed record) and after",
        f"after 2 retries, send the batch's description to {dest}, then read on",
    ]
    # The first record fails; in a stream or partition, so does every later one of it.
    for sample, failed in (("sqs-fifo", 1), ("dynamodb", 2), ("kafka", 1), ("msk", 1)):
        got = invoke_json(config, "--sample", sample)
        assert got["outcome"] == "partial" and len(got["failed"]) == failed, (sample, got)
    kafka = invoke_json(config, "--sample", "kafka")
    assert kafka["failed"] == [{"partition": "mytopic-0", "offset": 15}]

    # A recorded event from a file, and a handler error: the whole batch is retried.
    event = json.loads((REPO / "runtime/samples/kinesis.json").read_text())
    for r in event["Records"]:
        r["kinesis"]["data"] = "cmFpc2U="  # "raise"
    recorded = tmp_path / "event.json"
    recorded.write_text(json.dumps(event))
    failed = invoke_json(config, "--event", str(recorded))
    assert failed["outcome"] == "failure"
    assert failed["error"] == {"errorType": "ValueError", "errorMessage": "asked to raise"}
    assert failed["actions"][0] == "retry the whole batch"

    # FIFO: a failed message holds back the rest of its message group, not other groups.
    fifo = json.loads((REPO / "runtime/samples/sqs-fifo.json").read_text())
    one = fifo["Records"][0]
    fifo["Records"] = [
        {**one, "messageId": f"m{i}", "attributes": {**one["attributes"], "MessageGroupId": g}}
        for i, g in enumerate(["a", "a", "b"])
    ]
    fifo_file = tmp_path / "fifo.json"
    fifo_file.write_text(json.dumps(fifo))
    got = invoke_json(config, "--event", str(fifo_file))
    assert got["failed"] == ["m0", "m1"]
    assert got["actions"][0] == "delete 1 message(s) from the queue"
    assert "message group" in got["actions"][2]

    text = esm("invoke", str(config), "fn", "--sample", "sqs").stdout
    assert "Outcome: partial" in text and "The runtime would:" in text

    bad = esm("invoke", str(config), "nope", "--sample", "sqs", check=False)
    assert bad.returncode == 2 and "no function 'nope'" in bad.stderr


def test_invoke_applies_the_mapping_s_filters_first(tmp_path):
    config = config_file(tmp_path, [{
        "FunctionName": "fn", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q",
        "FilterCriteria": {"Filters": [{"Pattern": json.dumps({"body": {"keep": [True]}})}]},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }])  # fmt: skip
    event = json.loads((REPO / "runtime/samples/sqs.json").read_text())
    event["Records"][0]["body"] = json.dumps({"keep": True})
    event["Records"][1]["body"] = json.dumps({"keep": False})
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    got = invoke_json(config, "--event", str(path))
    assert got["records"] == 1 and got["filteredOut"] == 1
    assert got["actions"][0] == "delete 1 message(s) that the filters dropped"
    event["Records"][0]["body"] = "not json"
    path.write_text(json.dumps(event))
    none_left = esm("invoke", str(config), "fn", "--event", str(path))
    assert "filters dropped all 2 record(s): no invocation" in none_left.stderr


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": REGION,
        "ESM_AWS_ENDPOINT_URL": endpoint,
    }


def test_invoke_from_a_queue_and_a_stream_acknowledges_nothing(sqs, aws_endpoint, tmp_path):
    q = Queue.create(sqs)
    ids = q.send({"n": i} for i in range(3))
    kinesis = aws_client("kinesis", aws_endpoint)
    stream = create_stream(kinesis, 1)
    put(kinesis, stream, [("k", {"n": 1}), ("k", {"n": 2})])
    config = config_file(tmp_path, [
        {"FunctionName": "fn", "EventSourceArn": q.arn},
        {"FunctionName": "fn", "EventSourceArn": stream, "StartingPosition": "TRIM_HORIZON",
         "FunctionResponseTypes": ["ReportBatchItemFailures"]},
    ])  # fmt: skip
    env = aws_env(aws_endpoint)
    from runtime.config.loader import load_config
    from runtime.config.settings import Settings

    loaded = load_config(config, Settings(account_id="000000000000"), import_handlers=False)
    queue_uuid, stream_uuid = (m.uuid for m in loaded.mappings)

    got = invoke_json(config, "--from-source", "--mapping", queue_uuid, env=env)
    # Without ReportBatchItemFailures the answer is a success: all three would be deleted...
    assert got["records"] == 3 and got["outcome"] == "success"
    assert got["actions"] == ["delete 3 message(s) from the queue"]
    # ...but invoke itself deleted nothing.
    wait_until(lambda: q.total() == 3, 10, what="every message still in the queue")
    assert {m["MessageId"] for m in q.drain(0.5)} == set(ids)

    got = invoke_json(config, "--from-source", "--mapping", stream_uuid, env=env)
    assert got["records"] == 2 and got["outcome"] == "partial"

    ambiguous = esm("invoke", str(config), "fn", "--from-source", env=env, check=False)
    assert ambiguous.returncode == 2 and "--mapping" in ambiguous.stderr


def test_invoke_from_a_topic_commits_nothing(kafka_bootstrap, tmp_path):
    topic = create_topic(kafka_bootstrap, 2)
    produce(kafka_bootstrap, topic, [{"n": i} for i in range(6)], partitions=2)
    config = config_file(tmp_path, [{
        "FunctionName": "fn", "Topics": [topic], "StartingPosition": "TRIM_HORIZON",
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_bootstrap]}},
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "invoke-group"},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }])  # fmt: skip
    got = invoke_json(config, "--from-source", "--max-records", "4")
    assert got["records"] == 4 and got["outcome"] == "partial"
    assert committed(kafka_bootstrap, "invoke-group", topic, 2) == {0: -1001, 1: -1001}


def test_mappings_command_against_a_running_runtime(runtime_factory, sqs, tmp_path, record_file):
    port = free_port()
    rt = runtime_factory(
        {"functions": {"fn": {"Handler": "tests.handlers.behave.handler", "Timeout": 5}},
         "eventSourceMappings": []},
        env=api_env(tmp_path / "data", port),
    ).start()  # fmt: skip
    env = {
        "ESM_API_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    q = Queue.create(sqs)

    def cli(*args: str) -> Any:
        return json.loads(esm("mappings", "--output", "json", *args, env=env).stdout)

    created = cli("create", "--function-name", "fn", "--event-source-arn", q.arn,
                  "--batch-size", "4")  # fmt: skip
    uuid = created["UUID"]
    assert created["State"] == "Creating" and created["BatchSize"] == 4
    wait_until(lambda: cli("get", uuid)["State"] == "Enabled", 30)
    assert [m["UUID"] for m in cli("list")["EventSourceMappings"]] == [uuid]
    assert cli("list", "--function-name", "other")["EventSourceMappings"] == []
    table = esm("mappings", "--output", "table", "list", env=env).stdout
    assert table.splitlines()[0].split() == [
        "UUID", "State", "Function", "Source", "BatchSize", "LastProcessingResult",
    ]  # fmt: skip
    assert uuid in table and q.arn in table
    assert cli("disable", uuid)["State"] == "Disabling"
    wait_until(lambda: cli("get", uuid)["State"] == "Disabled", 30)
    assert cli("enable", uuid)["State"] == "Enabling"
    wait_until(lambda: cli("get", uuid)["State"] == "Enabled", 30)
    spec = tmp_path / "update.yaml"
    spec.write_text("BatchSize: 9\nFunctionResponseTypes: [ReportBatchItemFailures]\n")
    assert cli("update", uuid, "--file", str(spec))["State"] == "Updating"
    got = wait_until(lambda: (m := cli("get", uuid))["State"] == "Enabled" and m, 30)
    assert got["BatchSize"] == 9 and got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert cli("delete", uuid)["State"] == "Deleting"
    wait_until(lambda: cli("list")["EventSourceMappings"] == [], 30)
    missing = esm("mappings", "get", uuid, env=env, check=False)
    assert missing.returncode == 1
    assert "ResourceNotFoundException: The resource you requested does not exist." in missing.stderr
    assert rt.stop() == 0
