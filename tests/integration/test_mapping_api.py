"""The mapping API against a running runtime, through the real boto3 client and AWS CLI:
lifecycle and states, errors with Lambda's types and messages, tags, persistence, and what a
change does to the records in flight."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from botocore.exceptions import ClientError

from tests.support.api import SECRET, api_env, aws_cli, lambda_client, raw_request
from tests.support.aws import Queue, wait_until
from tests.support.aws import client as aws_client
from tests.support.config import BEHAVE
from tests.support.emulator import free_port
from tests.support.records import read_invocations, starts
from tests.support.snapshots import mismatches, recorded_api
from tests.support.streams import (
    STREAM_ENV,
    STREAM_HANDLER,
    create_stream,
    create_table_with_stream,
    put,
)

pytestmark = pytest.mark.integration

ACCOUNT = "000000000000"


def functions(record_file: Path, **more: Any) -> dict[str, Any]:
    return {
        "fn": {
            "Handler": BEHAVE,
            "Timeout": 5,
            "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
        },
        **more,
    }


def start_api_runtime(
    runtime_factory: Any, tmp_path: Path, record_file: Path, mappings: list[Any] | None = None,
    **env: str,
) -> tuple[Any, Any, int]:  # fmt: skip
    port = free_port()
    rt = runtime_factory(
        {"functions": functions(record_file), "eventSourceMappings": mappings or []},
        env=api_env(tmp_path / "data", port, **env),
    ).start()
    return rt, lambda_client(port), port


def wait_state(client: Any, uuid: str, state: str, timeout: float = 30) -> dict[str, Any]:
    """The mapping once it shows ``state``."""
    return wait_until(
        lambda: (got := client.get_event_source_mapping(UUID=uuid))["State"] == state and got,
        timeout,
        what=f"mapping {uuid} {state}",
    )


def error_of(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    e = info.value.response
    return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]


def test_sqs_mapping_lifecycle(sqs, runtime_factory, tmp_path, record_file):
    q = Queue.create(sqs)
    rt, client, _ = start_api_runtime(runtime_factory, tmp_path, record_file)
    assert client.list_event_source_mappings()["EventSourceMappings"] == []

    created = client.create_event_source_mapping(FunctionName="fn", EventSourceArn=q.arn)
    uuid = created["UUID"]
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating"
    assert created["StateTransitionReason"] == "USER_INITIATED"
    assert created["EventSourceMappingArn"] == (
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:{uuid}"
    )
    began = time.monotonic()
    wait_state(client, uuid, "Enabled")
    print(f"figure: Creating -> Enabled in {time.monotonic() - began:.2f} s")
    ids = q.send({"n": i} for i in range(20))
    wait_until(lambda: q.total() == 0, 30, what="queue to empty")
    seen = {m for inv in read_invocations(record_file) for m in inv.message_ids}
    assert seen == set(ids)

    updated = client.update_event_source_mapping(UUID=uuid, BatchSize=5)
    assert updated["State"] == "Updating" and updated["BatchSize"] == 10  # old values
    got = wait_state(client, uuid, "Enabled")
    assert got["BatchSize"] == 5

    deleted = client.delete_event_source_mapping(UUID=uuid)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202 and deleted["State"] == "Deleting"
    wait_until(
        lambda: not client.list_event_source_mappings()["EventSourceMappings"], 30,
        what="mapping to go",
    )  # fmt: skip
    code, message, status = error_of(client.get_event_source_mapping, UUID=uuid)
    assert (code, message, status) == (
        "ResourceNotFoundException", "The resource you requested does not exist.", 404,
    )  # fmt: skip
    assert rt.stop() == 0


# ---------------------------------------------------------------- recorded shapes and errors


@pytest.fixture
def api(runtime_factory, tmp_path, record_file):
    """A runtime with the API on and no mappings: (runtime, boto3 client, port)."""
    return start_api_runtime(runtime_factory, tmp_path, record_file)


def assert_recorded(got: Any, case: str, key: str) -> None:
    problems = mismatches(got, recorded_api(case, key), ACCOUNT)
    assert not problems, f"{case}/{key}:\n" + "\n".join(problems)


def client_error(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response


def test_sqs_create_matches_the_recorded_response(api, sqs):
    _, client, _ = api
    q = Queue.create(sqs)
    got = client.create_event_source_mapping(FunctionName="fn", EventSourceArn=q.arn)
    assert_recorded(got, "test_function_name_variations", "name_only_create_esm")
    got = client.create_event_source_mapping(
        FunctionName="fn:1", EventSourceArn=Queue.create(sqs).arn
    )
    assert_recorded(got, "test_function_name_variations", "partial_arn_version_create_esm")


def test_stream_lifecycle_matches_the_recorded_responses(api, sqs, aws_endpoint):
    _, client, _ = api
    ddb = aws_client("dynamodb", aws_endpoint)
    _, stream_arn = create_table_with_stream(ddb, "NEW_IMAGE")
    dest = Queue.create(sqs, "dest")
    created = client.create_event_source_mapping(
        FunctionName="fn",
        EventSourceArn=stream_arn,
        BatchSize=1,
        StartingPosition="TRIM_HORIZON",
        MaximumBatchingWindowInSeconds=1,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": dest.arn}},
    )
    case = "test_event_source_mapping_lifecycle"
    assert_recorded(created, case, "create_response")
    uuid = created["UUID"]
    assert_recorded(wait_state(client, uuid, "Enabled"), case, "get_response")
    assert_recorded(client.delete_event_source_mapping(UUID=uuid), case, "delete_response")


def test_errors_match_the_recorded_ones(api, sqs, aws_endpoint):
    _, client, _ = api
    missing = "00000000-0000-0000-0000-000000000000"
    case = "test_event_source_mapping_exceptions"
    for call, key in (
        (client.get_event_source_mapping, "get_unknown_uuid"),
        (client.delete_event_source_mapping, "delete_unknown_uuid"),
        (client.update_event_source_mapping, "update_unknown_uuid"),
    ):
        assert_recorded(client_error(call, UUID=missing), case, key)
    assert_recorded(
        client_error(client.create_event_source_mapping, FunctionName="fn"),
        case, "create_no_event_source_arn",
    )  # fmt: skip
    q = Queue.create(sqs)
    assert_recorded(
        client_error(client.create_event_source_mapping, FunctionName="no-such-function",
                     EventSourceArn=q.arn),
        case, "create_unknown_params",
    )  # fmt: skip
    assert_recorded(
        client_error(client.create_event_source_mapping, FunctionName="fn", EventSourceArn=q.arn,
                     DestinationConfig={"OnFailure": {"Destination": q.arn}}),
        case, "destination_config_failure",
    )  # fmt: skip

    kinesis = aws_client("kinesis", aws_endpoint)
    stream = create_stream(kinesis, 1)
    case = "test_create_event_source_validation_kinesis"
    assert_recorded(
        client_error(client.create_event_source_mapping, FunctionName="fn", EventSourceArn=stream),
        case, "no_starting_position",
    )  # fmt: skip
    assert_recorded(
        client_error(client.create_event_source_mapping, FunctionName="fn", EventSourceArn=stream,
                     StartingPosition="invalid"),
        case, "invalid_starting_position",
    )  # fmt: skip
    ddb = aws_client("dynamodb", aws_endpoint)
    _, table_stream = create_table_with_stream(ddb)
    assert_recorded(
        client_error(client.create_event_source_mapping, FunctionName="fn",
                     EventSourceArn=table_stream, StartingPosition="AT_TIMESTAMP",
                     StartingPositionTimestamp=time.time() - 60),
        "test_create_event_source_validation", "incompatible_starting_position",
    )  # fmt: skip
    # None of these left anything behind.
    assert client.list_event_source_mappings()["EventSourceMappings"] == []


def test_self_managed_kafka_defaults_and_duplicates_match_the_recorded_ones(api):
    _, client, _ = api
    secret = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:kafka-login"

    def create(servers: list[str], **extra: Any) -> Any:
        return client.create_event_source_mapping(
            FunctionName="fn",
            Topics=extra.pop("Topics", ["topic"]),
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": servers}},
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": secret}],
            Enabled=False,  # no such brokers: the shapes are the point here
            **extra,
        )

    case = "test_create_event_source_self_managed"
    default = create(["kafka:1000"])
    assert_recorded(default, case, "event-source-mapping-default")
    assert default["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == default["UUID"]
    values = create(
        ["kafka:1000"], Topics=["topic_2"], BatchSize=1, StartingPosition="LATEST",
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "random_id"},
    )  # fmt: skip
    assert_recorded(values, case, "event-source-mapping-values")
    assert values["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == "random_id"
    dup = client_error(create, servers=["kafka:1000"])
    assert_recorded(dup, case, "duplicate-source")
    assert default["UUID"] in dup["Error"]["Message"]
    create(["kafka:1000", "kafka:2000"])
    assert_recorded(client_error(create, servers=["kafka:1000", "kafka:2000"]), case,
                    "multiple-duplicate-source")  # fmt: skip


def test_tags_match_the_recorded_lifecycle_and_errors(api, sqs):
    _, client, _ = api
    q = Queue.create(sqs)
    created = client.create_event_source_mapping(
        FunctionName="fn", EventSourceArn=q.arn, Tags={"testtag": "on-create"}
    )
    arn = created["EventSourceMappingArn"]
    assert client.list_tags(Resource=arn)["Tags"] == {"testtag": "on-create"}
    client.untag_resource(Resource=arn, TagKeys=["testtag"])
    case = "test_tag_lifecycle[event_source_mapping]"
    steps = [
        ("tag_single", client.tag_resource, {"Tags": {"A": "tag-a"}}),
        ("tag_multiple", client.tag_resource, {"Tags": {"B": "tag-b", "C": "tag-c"}}),
        ("tag_overlap", client.tag_resource, {"Tags": {"C": "tag-c-newsuffix", "D": "tag-d"}}),
        ("untag_single", client.untag_resource, {"TagKeys": ["A"]}),
        ("untag_multiple", client.untag_resource, {"TagKeys": ["B", "C"]}),
        ("untag_nonexisting", client.untag_resource, {"TagKeys": ["F"]}),
        ("untag_existing_and_nonexisting", client.untag_resource, {"TagKeys": ["D", "F"]}),
    ]
    for name, call, kwargs in steps:
        answer = call(Resource=arn, **kwargs)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204, name
        assert_recorded(client.list_tags(Resource=arn), case, f"{name}_response_listtags")

    case = "test_tag_exceptions[event_source_mapping]"
    gone = arn.rsplit(":", 1)[0] + ":11111111-2222-3333-4444-555555555555"
    assert_recorded(client_error(client.tag_resource, Resource=gone, Tags={"A": "a"}), case,
                    "not_found_exception_tag")  # fmt: skip
    assert_recorded(client_error(client.untag_resource, Resource=gone, TagKeys=["A"]), case,
                    "not_found_exception_untag")  # fmt: skip
    assert_recorded(client_error(client.list_tags, Resource=gone), case, "not_found_exception_list")
    assert_recorded(client_error(client.list_tags, Resource=arn + ":alias"), case,
                    "aliased_arn_exception")  # fmt: skip
    bad = arn.replace("event-source-mapping", "foobar")
    assert_recorded(client_error(client.list_tags, Resource=bad), case, "invalid_arn_exception")


# ---------------------------------------------------------------- authentication


def test_unsigned_wrongly_signed_and_expired_requests_are_refused(api, sqs):
    rt, client, port = api
    q = Queue.create(sqs)
    body = json.dumps({"FunctionName": "fn", "EventSourceArn": q.arn}).encode()
    path = "/2015-03-31/event-source-mappings"
    cases = {
        "missing header": raw_request(port, "POST", path, body, sign=False),
        "wrong secret": raw_request(port, "POST", path, body, secret="not-the-secret"),
        "expired date": raw_request(port, "POST", path, body, amz_date="20261204T000000Z"),
    }
    for name, (status, headers, answer) in cases.items():
        assert status == 403, (name, status, answer)
        assert headers.get("x-amzn-ErrorType"), name
        assert "message" in answer, name
    assert "Signature expired" in cases["expired date"][2]["message"]
    assert cases["wrong secret"][2]["message"].startswith("The request signature we calculated")
    # boto3 with an unknown key: the same refusal, as a ClientError.
    stranger = lambda_client(port, key="AKIAUNKNOWNKEY000000")
    err = client_error(stranger.list_event_source_mappings)
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    # Nothing was created, and the refusals are logged without the secret.
    assert client.list_event_source_mappings()["EventSourceMappings"] == []
    status, _, _ = raw_request(port, "POST", path, body, amz_date=time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime()))  # fmt: skip
    assert status == 202  # the same request, correctly signed now, is accepted
    logs = rt.logs()
    assert logs.count("mapping API request refused") >= 4
    assert SECRET not in logs and "not-the-secret" not in logs


# ---------------------------------------------------------------- the AWS CLI


def test_the_aws_cli_manages_mappings(api, sqs):
    _, client, port = api
    q = Queue.create(sqs)
    created = aws_cli(port, "create-event-source-mapping", "--function-name", "fn",
                      "--event-source-arn", q.arn, "--batch-size", "5")  # fmt: skip
    uuid = created["UUID"]
    assert created["State"] == "Creating" and created["BatchSize"] == 5
    wait_state(client, uuid, "Enabled")
    listed = aws_cli(port, "list-event-source-mappings", "--function-name", "fn")
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [uuid]
    assert aws_cli(port, "get-event-source-mapping", "--uuid", uuid)["State"] == "Enabled"
    disabled = aws_cli(port, "update-event-source-mapping", "--uuid", uuid, "--no-enabled")
    assert disabled["State"] == "Disabling"
    wait_state(client, uuid, "Disabled")
    aws_cli(port, "tag-resource", "--resource", created["EventSourceMappingArn"], "--tags",
            "team=orders")  # fmt: skip
    assert aws_cli(port, "list-tags", "--resource", created["EventSourceMappingArn"])["Tags"] == {
        "team": "orders"
    }
    assert aws_cli(port, "delete-event-source-mapping", "--uuid", uuid)["State"] == "Deleting"
    wait_until(lambda: not client.list_event_source_mappings()["EventSourceMappings"], 30)
    failed = aws_cli(port, "get-event-source-mapping", "--uuid", uuid, check=False)
    assert failed.returncode != 0 and "ResourceNotFoundException" in failed.stderr


# ---------------------------------------------------------------- the file and the store


def test_mappings_survive_a_restart_and_the_file_wins(runtime_factory, sqs, tmp_path, record_file):
    declared_q, stored_q = Queue.create(sqs), Queue.create(sqs)
    declared = {"FunctionName": "fn", "EventSourceArn": declared_q.arn}
    rt, client, port = start_api_runtime(runtime_factory, tmp_path, record_file, [declared])
    [shown] = client.list_event_source_mappings()["EventSourceMappings"]
    assert shown["State"] == "Enabled" and shown["EventSourceArn"] == declared_q.arn
    err = client_error(client.update_event_source_mapping, UUID=shown["UUID"], BatchSize=3)
    assert err["Error"]["Code"] == "ResourceConflictException"
    assert "declared in the configuration file" in err["Error"]["Message"]
    assert client_error(client.delete_event_source_mapping, UUID=shown["UUID"])["Error"][
        "Code"] == "ResourceConflictException"  # fmt: skip
    dup = client_error(client.create_event_source_mapping, FunctionName="fn",
                       EventSourceArn=declared_q.arn)  # fmt: skip
    assert dup["Error"]["Code"] == "ResourceConflictException"
    assert shown["UUID"] in dup["Error"]["Message"]

    uuid = client.create_event_source_mapping(FunctionName="fn", EventSourceArn=stored_q.arn,
                                              BatchSize=7)["UUID"]  # fmt: skip
    wait_state(client, uuid, "Enabled")
    assert rt.stop() == 0

    # Restarted with the same data directory: the stored mapping is back and runs.
    rt2 = runtime_factory(
        {"functions": functions(record_file), "eventSourceMappings": [declared]},
        env=api_env(tmp_path / "data", port),
    ).start()
    got = client.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Enabled" and got["BatchSize"] == 7
    [sid] = stored_q.send([{"n": 1}])
    wait_until(lambda: any(sid in i.message_ids for i in read_invocations(record_file)), 30,
               what="the stored mapping to run after the restart")  # fmt: skip
    assert rt2.stop() == 0

    # The file now declares the stored mapping's source and function itself: the file wins,
    # the stored one is shown Disabled with the reason, and nothing was deleted.
    rt3 = runtime_factory(
        {"functions": functions(record_file),
         "eventSourceMappings": [declared, {"FunctionName": "fn", "EventSourceArn": stored_q.arn}]},
        env=api_env(tmp_path / "data", port),
    ).start()  # fmt: skip
    got = client.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Disabled"
    assert got["LastProcessingResult"].startswith("PROBLEM: ")
    assert "already exists" in got["LastProcessingResult"]
    assert len(client.list_event_source_mappings()["EventSourceMappings"]) == 3
    assert rt3.stop() == 0


# ---------------------------------------------------------------- changes under load


def test_disable_under_load_stops_soon_loses_nothing_and_enable_resumes(api, sqs, record_file):
    _, client, _ = api
    q = Queue.create(sqs)
    ids = q.send({"n": i, "sleep": 0.3} for i in range(300))
    uuid = client.create_event_source_mapping(
        FunctionName="fn", EventSourceArn=q.arn, ScalingConfig={"MaximumConcurrency": 2}
    )["UUID"]
    wait_until(lambda: len(read_invocations(record_file)) >= 6, 30, what="some batches")
    asked = time.time()
    assert client.update_event_source_mapping(UUID=uuid, Enabled=False)["State"] == "Disabling"
    wait_state(client, uuid, "Disabled")
    settled = time.time()
    time.sleep(2)
    invocations = read_invocations(record_file)
    last_start = max(i.started for i in invocations)
    assert last_start < settled, "an invocation started after the mapping was Disabled"
    assert settled - asked < 10, f"disabling took {settled - asked:.1f} s"
    print(f"figure: disable under load: last invocation began {last_start - asked:.2f} s after "
          f"the call, Disabled after {settled - asked:.2f} s")  # fmt: skip
    assert all(i.outcome == "returned" for i in invocations), "a batch was cut short"
    done = {m for i in invocations for m in i.message_ids}
    assert len(done) < len(ids), "everything was processed before the mapping was disabled"
    wait_until(lambda: q.total() == len(ids) - len(done), 30, what="the rest to stay queued")

    assert client.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    wait_state(client, uuid, "Enabled")
    wait_until(lambda: q.total() == 0, 120, what="the queue to empty after enabling")
    seen = {m for i in read_invocations(record_file) for m in i.message_ids}
    assert seen == set(ids)


def test_delete_drains_the_batch_in_flight_first(api, sqs, record_file):
    _, client, _ = api
    q = Queue.create(sqs)
    uuid = client.create_event_source_mapping(FunctionName="fn", EventSourceArn=q.arn)["UUID"]
    wait_state(client, uuid, "Enabled")
    [_slow] = q.send([{"sleep": 3}])
    wait_until(lambda: read_invocations(record_file), 30, what="the batch to start")
    assert client.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    assert client.get_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    wait_until(lambda: not client.list_event_source_mappings()["EventSourceMappings"], 30)
    gone = time.time()
    [inv] = read_invocations(record_file)
    assert inv.outcome == "returned" and inv.ended is not None and inv.ended < gone
    assert q.total() == 0  # deleted after its success, not returned to the queue
    q.send([{"n": 2}])
    time.sleep(2)
    assert len(read_invocations(record_file)) == 1  # nothing runs the deleted mapping


# ---------------------------------------------------------------- several pods


def share(rt: Any, uuid: str) -> float:
    return rt.metric("esm_worker_mapping_share", event_source_mapping_uuid=uuid)


def test_pods_sharing_a_dynamodb_store_converge(runtime_factory, sqs, tmp_path, record_file):
    table = f"esm-mappings-{uuid4().hex[:8]}"
    store = {"ESM_MAPPING_STORE": "dynamodb", "ESM_MAPPING_TABLE": table}
    pods = []
    # Pod b syncs slowly: a change must not settle (Enabled, Disabled, gone) before b applied it.
    for name, sync in (("a", "0.5"), ("b", "3")):
        port = free_port()
        rt = runtime_factory(
            {"functions": functions(record_file), "eventSourceMappings": []},
            env=api_env(tmp_path / f"data-{name}", port, ESM_POD_NAME=name,
                        ESM_MAPPING_SYNC_SECONDS=sync, **store),
        ).start()  # fmt: skip
        pods.append((rt, lambda_client(port)))
    (rt_a, a), (rt_b, b) = pods
    q = Queue.create(sqs)
    uuid = a.create_event_source_mapping(FunctionName="fn", EventSourceArn=q.arn)["UUID"]
    began = time.monotonic()
    wait_state(a, uuid, "Enabled")
    settled = time.monotonic() - began
    assert share(rt_b, uuid) > 0, "Enabled before pod b ran it"
    assert share(rt_a, uuid) > 0
    print(f"figure: Enabled on both pods {settled:.2f} s after Create (pod b syncs every 3 s)")
    ids = q.send({"n": i} for i in range(40))
    wait_until(lambda: q.total() == 0, 30)
    assert {m for i in read_invocations(record_file) for m in i.message_ids} == set(ids)

    # Disabled (through pod b) means that neither pod runs it any more.
    b.update_event_source_mapping(UUID=uuid, Enabled=False)
    wait_state(a, uuid, "Disabled")
    assert share(rt_a, uuid) == 0 and share(rt_b, uuid) == 0
    b.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_state(b, uuid, "Enabled")
    assert share(rt_a, uuid) > 0 and share(rt_b, uuid) > 0

    # Gone (deleted through pod a) means the same.
    a.delete_event_source_mapping(UUID=uuid)
    wait_until(lambda: not a.list_event_source_mappings()["EventSourceMappings"], 30)
    assert share(rt_a, uuid) == 0 and share(rt_b, uuid) == 0, "deleted while a pod ran it"

    # A pod that stops cleanly is not waited for.
    assert rt_b.stop() == 0
    uuid2 = a.create_event_source_mapping(FunctionName="fn", EventSourceArn=q.arn)["UUID"]
    wait_state(a, uuid2, "Enabled", timeout=10)


def test_a_stored_mapping_whose_broker_is_unreachable_stays_enabled_with_the_problem(
    runtime_factory, sqs, tmp_path, record_file
):
    """As on Lambda: the mapping is Enabled and LastProcessingResult says PROBLEM: Connection
    error; its workers retry the broker while the function's other mapping keeps running."""
    declared_q = Queue.create(sqs)
    rt, client, _ = start_api_runtime(
        runtime_factory, tmp_path, record_file,
        [{"FunctionName": "fn", "EventSourceArn": declared_q.arn}],
    )  # fmt: skip
    closed = f"127.0.0.1:{free_port()}"  # no broker there
    bad = client.create_event_source_mapping(
        FunctionName="fn",
        Topics=["orders"],
        SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [closed]}},
        StartingPosition="TRIM_HORIZON",
    )["UUID"]
    got = wait_until(
        lambda: (
            (m := client.get_event_source_mapping(UUID=bad))["State"] == "Enabled"
            and m["LastProcessingResult"].startswith("PROBLEM: Connection error.")
            and m
        ),
        90, what="the unreachable mapping to show Enabled with the problem",
    )  # fmt: skip
    assert f"cannot reach Kafka at {closed}" in got["LastProcessingResult"]
    # The function's other mapping kept running, and the pod stayed ready.
    [sid] = declared_q.send([{"n": 1}])
    wait_until(lambda: any(sid in i.message_ids for i in read_invocations(record_file)), 30)
    status, text = rt.get("/readyz")
    assert status == 200 and bad in text
    assert "event source unreachable; the mapping stays enabled and is retried" in rt.logs()
    client.delete_event_source_mapping(UUID=bad)
    wait_until(lambda: len(client.list_event_source_mappings()["EventSourceMappings"]) == 1, 60)
    assert bad not in rt.get("/readyz")[1]


def test_a_stream_mapping_disabled_then_enabled_resumes_from_its_checkpoint(
    runtime_factory, tmp_path, record_file, aws_endpoint
):
    kinesis = aws_client("kinesis", aws_endpoint)
    stream = create_stream(kinesis, 2)
    port = free_port()
    rt = runtime_factory(
        {"functions": {"fn": {"Handler": STREAM_HANDLER, "Timeout": 5,
                              "Environment": {"Variables": {"RECORD_FILE": str(record_file)}}}},
         "eventSourceMappings": []},
        env={**STREAM_ENV, **api_env(tmp_path / "data", port)},
    ).start()  # fmt: skip
    client = lambda_client(port)
    uuid = client.create_event_source_mapping(
        FunctionName="fn", EventSourceArn=stream, StartingPosition="TRIM_HORIZON", BatchSize=10
    )["UUID"]
    assert wait_state(client, uuid, "Enabled")["LastProcessingResult"] == "No records processed"
    put(kinesis, stream, [(f"k{i}", {"n": i}) for i in range(20)])

    def sequences() -> list[str]:
        return [q for inv in starts(record_file) for q in inv["sequences"]]

    wait_until(lambda: len(sequences()) == 20, 30, what="the first 20 records")
    wait_until(
        lambda: client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK", 15
    )
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    wait_state(client, uuid, "Disabled")
    put(kinesis, stream, [(f"k{i}", {"n": i}) for i in range(20, 30)])
    time.sleep(2)
    assert len(sequences()) == 20, "records were read while the mapping was disabled"
    client.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_state(client, uuid, "Enabled")
    wait_until(lambda: len(sequences()) >= 30, 30, what="the 10 records put while disabled")
    time.sleep(1)
    seen = sequences()
    assert len(seen) == len(set(seen)) == 30, "a record was read again: not from the checkpoint"

    # A failing batch shows as Lambda shows it.
    put(kinesis, stream, [("k-bad", {"fail_times": 2})])
    wait_until(
        lambda: (
            client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"]
            == "PROBLEM: Function call failed"
        ),
        30,
    )
    assert rt.stop() == 0


def test_updates_are_refused_while_creating_and_for_create_only_fields(
    runtime_factory, sqs, tmp_path, record_file
):
    table = f"esm-mappings-{uuid4().hex[:8]}"
    store = {"ESM_MAPPING_STORE": "dynamodb", "ESM_MAPPING_TABLE": table}
    clients = []
    for name, sync in (("a", "0.5"), ("b", "4")):  # b keeps a new mapping Creating for a while
        port = free_port()
        runtime_factory(
            {"functions": functions(record_file), "eventSourceMappings": []},
            env=api_env(tmp_path / f"data-{name}", port, ESM_POD_NAME=name,
                        ESM_MAPPING_SYNC_SECONDS=sync, **store),
        ).start()  # fmt: skip
        clients.append((lambda_client(port), port))
    (a, port), _ = clients
    q = Queue.create(sqs)
    uuid = a.create_event_source_mapping(FunctionName="fn", EventSourceArn=q.arn)["UUID"]
    err = client_error(a.update_event_source_mapping, UUID=uuid, BatchSize=3)
    assert err["Error"]["Code"] == "ResourceInUseException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    wait_state(a, uuid, "Enabled")
    path = f"/2015-03-31/event-source-mappings/{uuid}"
    for field, value in (("EventSourceArn", q.arn), ("StartingPosition", "LATEST"),
                         ("Topics", ["t"])):  # fmt: skip
        status, headers, body = raw_request(port, "PUT", path, json.dumps({field: value}).encode())
        assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidParameterValueException"
        assert body["message"].startswith(f"{field}: cannot be changed"), body
    assert a.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"
