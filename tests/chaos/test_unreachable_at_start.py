"""A broker or queue that does not answer when the pod starts is not a configuration error:
the runtime starts, keeps the mapping enabled, retries it with back-off, says so on /readyz, in
its logs and in ``esm_event_source_unreachable``, and recovers alone once the source answers.
A configuration error (a queue that does not exist) still fails at once, naming the mapping."""

from __future__ import annotations

import time

import pytest

from tests.chaos.invariants import completed_numbers, read
from tests.chaos.sources import HANDLER
from tests.chaos.test_faults import report
from tests.support.aws import Queue, wait_until
from tests.support.kafka import KAFKA_ENV, create_topic, produce
from tests.support.netfault import ProxiedTansu, TcpProxy

pytestmark = pytest.mark.integration

FAST_RETRY = {"ESM_SOURCE_RETRY_SECONDS": "0.5", "ESM_SOURCE_RETRY_MAX_SECONDS": "2"}


def function(record_file):
    return {
        "Handler": HANDLER,
        "Timeout": 2,
        "Environment": {"Variables": {"RECORD_FILE": str(record_file), "CHAOS_SLEEP": "0"}},
    }


def test_an_unreachable_kafka_broker_waits_while_the_other_mappings_run(
    sqs, runtime_factory, record_file, tmp_path
):
    broker = ProxiedTansu(tmp_path).start()
    try:
        topic = create_topic(broker.bootstrap, 1)
        broker.proxy.cut()  # the broker is down (as far as the runtime can tell)
        q = Queue.create(sqs, "up")
        cfg = {
            "functions": {"fn": function(record_file)},
            "eventSourceMappings": [
                {"FunctionName": "fn", "EventSourceArn": q.arn, "BatchSize": 10},
                {
                    "FunctionName": "fn",
                    "SelfManagedEventSource": {
                        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [broker.bootstrap]}
                    },
                    "Topics": [topic],
                    "StartingPosition": "TRIM_HORIZON",
                    "MaximumBatchingWindowInSeconds": 0,
                },
            ],
        }
        env = {**KAFKA_ENV, **FAST_RETRY, "ESM_KAFKA_SESSION_TIMEOUT_MS": "6000"}
        began = time.monotonic()
        rt = runtime_factory(cfg, env=env).start(timeout=60)
        started = time.monotonic() - began
        # Ready: the SQS mapping of the same function runs meanwhile.
        status, text = rt.get("/readyz")
        assert status == 200 and "unreachable" in text and "cannot reach Kafka" in text, text
        q.send([{"n": 0, "key": "sqs"}])
        wait_until(lambda: 0 in completed_numbers(read(record_file)), 30, what="SQS served")
        kafka_uuid = next(
            dict(labels)["event_source_mapping_uuid"]
            for (name, labels), value in rt.metrics().items()
            if name == "esm_event_source_unreachable" and value == 1
        )
        assert kafka_uuid in text
        assert "event source unreachable; the mapping stays enabled and is retried" in rt.logs()
        # librdkafka's own complaints come as log lines like every other, not raw "%3|..."
        lines = rt.logs().splitlines()
        assert not [x for x in lines if x.startswith("%")], "raw librdkafka output"
        assert any('"logger": "librdkafka"' in x and "FAIL" in x for x in lines)
        time.sleep(3)  # a few retries with back-off: still running, nothing crash-loops
        assert rt.proc is not None and rt.proc.poll() is None
        assert rt.metric("esm_worker_restarts_total") == 0
        # The broker comes back: the mapping starts by itself and reads the topic.
        broker.proxy.restore()
        back = time.monotonic()
        produce(broker.bootstrap, topic, [{"n": n, "key": "p"} for n in range(1, 11)])
        wait_until(
            lambda: set(range(11)) <= set(completed_numbers(read(record_file))),
            60, what="the topic read once the broker answers",
        )  # fmt: skip
        recovered = time.monotonic() - back
        assert rt.metric("esm_event_source_unreachable", event_source_mapping_uuid=kafka_uuid) == 0
        assert "unreachable" not in rt.get("/readyz")[1]
        print(f"ready {started:.2f} s after start with the broker down; "
              f"records read {recovered:.2f} s after it came back")  # fmt: skip
        report("broker unreachable at start", "kafka", {
            "produced": 11, "lost": 0, "duplicates": 0, "order_violations": 0, "overlaps": 0,
            "kills": "broker down at start", "max_recovery_s": round(recovered, 2),
        })  # fmt: skip
        assert rt.stop() == 0
    finally:
        broker.stop()


def test_an_unreachable_sqs_endpoint_is_waited_for(sqs, aws_endpoint, runtime_factory, record_file):
    q = Queue.create(sqs, "later")
    port = int(aws_endpoint.rsplit(":", 1)[1])
    proxy = TcpProxy(port).start()
    try:
        proxy.cut()
        cfg = {
            "functions": {"fn": function(record_file)},
            "eventSourceMappings": [{"FunctionName": "fn", "EventSourceArn": q.arn}],
        }
        rt = runtime_factory(cfg, env=FAST_RETRY)
        rt.env["ESM_AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
        rt.start(timeout=60)
        status, text = rt.get("/readyz")
        assert status == 200 and "cannot reach queue" in text, text
        q.send([{"n": 0, "key": "a"}])
        time.sleep(2)
        assert not completed_numbers(read(record_file))
        proxy.restore()
        back = time.monotonic()
        wait_until(lambda: 0 in completed_numbers(read(record_file)), 60, what="SQS read")
        report("broker unreachable at start", "sqs", {
            "produced": 1, "lost": 0, "duplicates": 0, "order_violations": 0, "overlaps": 0,
            "kills": "endpoint down at start",
            "max_recovery_s": round(time.monotonic() - back, 2),
        })  # fmt: skip
        assert rt.stop() == 0
    finally:
        proxy.stop()


def test_a_queue_that_does_not_exist_still_fails_at_once(sqs, runtime_factory, record_file):
    q = Queue.create(sqs, "gone")
    sqs.delete_queue(QueueUrl=q.url)
    cfg = {
        "functions": {"fn": function(record_file)},
        "eventSourceMappings": [{"FunctionName": "fn", "EventSourceArn": q.arn}],
    }
    rt = runtime_factory(cfg).start(wait_ready=False)
    assert rt.proc is not None
    assert rt.proc.wait(30) == 2
    assert "eventSourceMappings[0]" in rt.logs() and "does not exist" in rt.logs()
