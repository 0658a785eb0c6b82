"""The five sources of the fault suite, each made fresh per scenario on the real servers:
numbered records with an ordering key, and the mapping that reads them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.aws import Queue
from tests.support.aws import client as aws_client
from tests.support.kafka import KAFKA_ENV, create_topic, produce
from tests.support.streams import STREAM_ENV, create_stream, create_table_with_stream, put_many

HANDLER = "tests.chaos.recorder.handler"
KEYS = 8  # ordering keys (message groups, partition keys, item keys)
# The supervisor restarts killed workers quickly, whatever their count of recent crashes.
RESTART_ENV = {
    "ESM_WORKER_RESTART_BACKOFF_SECONDS": "0.2",
    "ESM_WORKER_RESTART_BACKOFF_MAX_SECONDS": "1",
}


@dataclass
class Source:
    name: str
    ordered: bool
    mapping: dict[str, Any]
    produce: Callable[[range], None]  # numbered records, in order
    env: dict[str, str]

    @property
    def leased(self) -> bool:
        """Read through shard leases (which pods share through a DynamoDB lease table)."""
        return self.name in ("kinesis", "dynamodb")

    def pod_env(self, pod: str) -> dict[str, str]:
        """The environment of one pod of a deployment reading this source."""
        env = {**self.env, "ESM_POD_NAME": pod}
        if self.leased:
            env |= {"ESM_LEASE_STORE": "dynamodb", "ESM_LEASE_TABLE": f"leases-{self.tag}"}
        return env

    @property
    def tag(self) -> str:
        return str(abs(hash(json.dumps(self.mapping, sort_keys=True))))[:10]


def config(source: Source, record_file: Path, timeout: int = 2) -> dict[str, Any]:
    return {
        "functions": {
            "fn": {
                "Handler": HANDLER,
                "Timeout": timeout,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
            }
        },
        "eventSourceMappings": [{"FunctionName": "fn", **source.mapping}],
    }


def body(n: int) -> dict[str, Any]:
    return {"n": n, "key": f"k{n % KEYS}"}


def make(name: str, *, sqs: Any, aws_endpoint: str, kafka_bootstrap: str | None) -> Source:
    if name == "sqs":
        q = Queue.create(sqs, "chaos", visibility_timeout=2)
        return Source(
            name,
            False,
            {"EventSourceArn": q.arn, "BatchSize": 10},
            lambda numbers: (q.send(body(n) for n in numbers), None)[1],
            {},
        )
    if name == "sqs-fifo":
        q = Queue.create(sqs, "chaos", visibility_timeout=2, fifo=True)

        def send_fifo(numbers: range) -> None:
            q.send_fifo((f"k{n % KEYS}", body(n)) for n in numbers)

        return Source(name, True, {"EventSourceArn": q.arn, "BatchSize": 10}, send_fifo, {})
    if name == "kafka":
        assert kafka_bootstrap is not None
        topic = create_topic(kafka_bootstrap, 4)

        def send_kafka(numbers: range) -> None:
            for p in range(4):  # partition n % 4, so each partition's numbers increase
                values = [body(n) for n in numbers if n % 4 == p]
                produce(kafka_bootstrap, topic, values, partition=p)

        return Source(
            name,
            True,
            {
                "SelfManagedEventSource": {
                    "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_bootstrap]}
                },
                "Topics": [topic],
                "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"g-{topic}"},
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 10,
                "MaximumBatchingWindowInSeconds": 0,
            },
            send_kafka,
            dict(KAFKA_ENV),
        )
    if name == "kinesis":
        kinesis = aws_client("kinesis", aws_endpoint)
        stream = create_stream(kinesis, 2, "chaos")

        def send_kinesis(numbers: range) -> None:
            put_many(kinesis, stream, [(f"k{n % KEYS}", body(n)) for n in numbers])

        return Source(
            name,
            True,
            {"EventSourceArn": stream, "StartingPosition": "TRIM_HORIZON", "BatchSize": 10},
            send_kinesis,
            dict(STREAM_ENV),
        )
    if name == "dynamodb":
        ddb = aws_client("dynamodb", aws_endpoint)
        table, stream = create_table_with_stream(ddb, "NEW_IMAGE")

        def send_ddb(numbers: range) -> None:
            for n in numbers:
                item = {"id": {"S": f"k{n % KEYS}"}, "body": {"S": json.dumps(body(n))}}
                ddb.put_item(TableName=table, Item=item)

        return Source(
            name,
            True,
            {"EventSourceArn": stream, "StartingPosition": "TRIM_HORIZON", "BatchSize": 10},
            send_ddb,
            dict(STREAM_ENV),
        )
    raise ValueError(name)


SOURCES = ["sqs", "sqs-fifo", "kafka", "kinesis", "dynamodb"]
