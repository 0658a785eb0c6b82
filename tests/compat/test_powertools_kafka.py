"""A Powertools batch handler for Kafka events runs unchanged, with Lambda's partial failures."""

from __future__ import annotations

import json

import pytest

from tests.support.aws import wait_until
from tests.support.kafka import KAFKA_ENV, committed, create_topic, kafka_mapping, produce

pytestmark = pytest.mark.integration


def test_powertools_kafka_batch_processor(kafka_bootstrap, runtime_factory, tmp_path):
    record_file = tmp_path / "kafka.jsonl"
    topic = create_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, [{"i": 0}, {"i": 1, "fail": True}, {"i": 2}], partition=0)
    cfg = kafka_mapping(
        kafka_bootstrap,
        topic,
        record_file,
        handler="tests.compat.powertools_handlers.kafka_handler",
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        MaximumRetryAttempts=1,
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": f"g-{topic}"},
        function={
            "Environment": {
                "Variables": {"RECORD_FILE": str(record_file), "POWERTOOLS_TRACE_DISABLED": "true"}
            }
        },
    )
    rt = runtime_factory(cfg, env=KAFKA_ENV).start()
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic, 1) == {0: 3}, 30)
    seen = [json.loads(x)["offset"] for x in record_file.read_text().splitlines()]
    # Powertools reported offset 1 ({"partition": "topic-0", "offset": 1}); the runtime retried
    # from there (offsets 1 and 2, once: MaximumRetryAttempts 1), then gave the rest up.
    assert seen == [0, 1, 2, 1, 2]
    assert rt.metric("lambda_failed_invoke_events_total") == 2 + 2
    assert rt.metric("lambda_dropped_events_total") == 2
    assert rt.stop() == 0
