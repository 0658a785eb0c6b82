"""The mapping API's EventSourceMappingConfiguration against the AWS-recorded API snapshot:
the same fields, per source, with the same defaults."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.api.shapes import Status, configuration
from runtime.config.loader import build_config
from runtime.config.settings import Settings

STATUS = Status("Creating", 1764000000.123)


def mapping(fields: dict[str, Any]) -> Any:
    config = build_config(
        {
            "functions": {"fn": {"Handler": "handlers.orders.handler"}},
            "eventSourceMappings": [{"FunctionName": "fn", **fields}],
        },
        "t.yaml",
        Settings(account_id="111111111111", region="us-east-1"),
        import_handlers=False,
    )
    return config.mappings[0]


# Field sets of the recorded create responses (test_lambda_api.esm_subset.snapshot.json).
SQS_KEYS = {"BatchSize", "EventSourceArn", "EventSourceMappingArn", "FunctionArn",
            "FunctionResponseTypes", "LastModified", "MaximumBatchingWindowInSeconds", "State",
            "StateTransitionReason", "UUID"}  # fmt: skip
STREAM_KEYS = {"BatchSize", "BisectBatchOnFunctionError", "DestinationConfig", "EventSourceArn",
               "EventSourceMappingArn", "FunctionArn", "FunctionResponseTypes", "LastModified",
               "LastProcessingResult", "MaximumBatchingWindowInSeconds",
               "MaximumRecordAgeInSeconds", "MaximumRetryAttempts", "ParallelizationFactor",
               "StartingPosition", "State", "StateTransitionReason", "TumblingWindowInSeconds",
               "UUID"}  # fmt: skip
KAFKA_KEYS = {"BatchSize", "FunctionArn", "LastModified", "LastProcessingResult",
              "SelfManagedEventSource", "SelfManagedKafkaEventSourceConfig",
              "SourceAccessConfigurations", "StartingPosition", "State", "StateTransitionReason",
              "Topics", "UUID"}  # fmt: skip


def test_sqs_create_response_has_the_recorded_fields() -> None:
    m = mapping({"EventSourceArn": "arn:aws:sqs:us-east-1:111111111111:q"})
    got = configuration(m, STATUS)
    assert set(got) == SQS_KEYS
    assert got["BatchSize"] == 10 and got["MaximumBatchingWindowInSeconds"] == 0
    assert got["StateTransitionReason"] == "USER_INITIATED" and got["State"] == "Creating"
    assert got["FunctionResponseTypes"] == []
    assert got["FunctionArn"] == "arn:aws:lambda:us-east-1:111111111111:function:fn"
    assert got["EventSourceMappingArn"] == (
        f"arn:aws:lambda:us-east-1:111111111111:event-source-mapping:{m.uuid}"
    )


def test_stream_create_response_spells_out_the_recorded_defaults() -> None:
    arn = "arn:aws:dynamodb:us-east-1:111111111111:table/t/stream/2025-01-01T00:00:00.000"
    got = configuration(mapping({"EventSourceArn": arn, "StartingPosition": "LATEST"}), STATUS)
    assert set(got) == STREAM_KEYS
    # The recorded "response-with-empty-filters" values.
    assert {k: got[k] for k in STREAM_KEYS - {"UUID", "EventSourceMappingArn", "FunctionArn",
                                              "EventSourceArn", "LastModified"}} == {
        "BatchSize": 100,
        "BisectBatchOnFunctionError": False,
        "DestinationConfig": {"OnFailure": {}},
        "FunctionResponseTypes": [],
        "LastProcessingResult": "No records processed",
        "MaximumBatchingWindowInSeconds": 0,
        "MaximumRecordAgeInSeconds": -1,
        "MaximumRetryAttempts": -1,
        "ParallelizationFactor": 1,
        "StartingPosition": "LATEST",
        "State": "Creating",
        "StateTransitionReason": "User action",
        "TumblingWindowInSeconds": 0,
    }  # fmt: skip


def test_stream_settings_and_destination_are_echoed() -> None:
    got = configuration(
        mapping(
            {
                "EventSourceArn": "arn:aws:kinesis:us-east-1:111111111111:stream/s",
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 1,
                "MaximumBatchingWindowInSeconds": 1,
                "MaximumRetryAttempts": 1,
                "DestinationConfig": {
                    "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:111111111111:d"}
                },
            }
        ),
        Status("Enabled", 1.0),
    )
    assert got["DestinationConfig"] == {
        "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:111111111111:d"}
    }
    assert (got["BatchSize"], got["MaximumRetryAttempts"]) == (1, 1)
    assert got["MaximumBatchingWindowInSeconds"] == 1 and got["State"] == "Enabled"


def test_self_managed_kafka_create_response_has_the_recorded_fields() -> None:
    m = mapping(
        {
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka:1000"]}},
            "Topics": ["topic"],
            "SourceAccessConfigurations": [
                {
                    "Type": "BASIC_AUTH",
                    "URI": "arn:aws:secretsmanager:us-east-1:111111111111:secret:s",
                }
            ],
        }
    )
    got = configuration(m, STATUS)
    assert set(got) == KAFKA_KEYS
    assert got["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": m.uuid}
    assert got["StartingPosition"] == "TRIM_HORIZON" and got["BatchSize"] == 100
    assert got["Topics"] == ["topic"]
    assert got["SourceAccessConfigurations"][0]["Type"] == "BASIC_AUTH"


@pytest.mark.parametrize("state", ["Creating", "Enabled", "Updating", "Deleting", "Disabled"])
def test_the_state_is_what_the_status_says(state: str) -> None:
    m = mapping({"EventSourceArn": "arn:aws:sqs:us-east-1:111111111111:q"})
    assert configuration(m, Status(state, 2.0))["State"] == state
