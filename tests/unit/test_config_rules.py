"""Cross-field and per-source rules (rules.py, loader.py), defaults and whole-file reporting.

Messages are asserted exactly; where Lambda has its own wording (esm-spec §1.2) the test
checks that wording.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.config.loader import ConfigError, build_config, duplicate_mapping_message
from runtime.config.resolved import RuntimeConfig, derive_mapping_uuid
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind, parse_event_source_arn

HANDLER = "handlers.orders.handler"
ACCOUNT = "123456789012"
SQS_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"
FIFO_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders.fifo"
KINESIS_ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders"
DDB_ARN = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders/stream/2024-01-01T00:00:00.000"
MSK_ARN = f"arn:aws:kafka:us-east-1:{ACCOUNT}:cluster/orders/0a1b2c3d-4e5f-6789-abcd-ef01234567-1"
DLQ_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders-dlq"
KAFKA_SOURCE = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker:9092"]}}
M0 = "eventSourceMappings[0]"

WINDOW_RULE = (
    "MaximumBatchingWindowInSeconds: Maximum batch window in seconds must be greater than 0 if "
    "maximum batch size is greater than 10"
)
STARTING_POSITION_NULL = (
    "StartingPosition: 1 validation error detected: Value null at 'startingPosition' failed to "
    "satisfy constraint: Member must not be null."
)

BASES: dict[str, dict[str, Any]] = {
    "sqs": {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
    "fifo": {"FunctionName": "fn", "EventSourceArn": FIFO_ARN},
    # BatchSize 10: see test_stream_mapping_with_default_batch_size_is_valid (xfail).
    "kinesis": {
        "FunctionName": "fn",
        "EventSourceArn": KINESIS_ARN,
        "StartingPosition": "LATEST",
        "BatchSize": 10,
    },
    "dynamodb": {
        "FunctionName": "fn",
        "EventSourceArn": DDB_ARN,
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 10,
    },
    "kafka": {"FunctionName": "fn", "SelfManagedEventSource": KAFKA_SOURCE, "Topics": ["orders"]},
    "msk": {"FunctionName": "fn", "EventSourceArn": MSK_ARN, "Topics": ["orders"]},
}


# What a valid mapping of each source yields: every source loads.
BASELINE: dict[str, list[str]] = {
    "sqs": [],
    "fifo": [],
    "kinesis": [],
    "dynamodb": [],
    "kafka": [],
    "msk": [],
}


def build(raw: Any, *, import_handlers: bool = False, **settings: Any) -> RuntimeConfig:
    return build_config(raw, "test.yaml", Settings(**settings), import_handlers=import_handlers)


def problems_of(raw: Any, *, import_handlers: bool = False) -> list[str]:
    try:
        build(raw, import_handlers=import_handlers)
    except ConfigError as exc:
        assert exc.problems
        return exc.problems
    return []


def doc(*mappings: dict[str, Any], functions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "functions": functions if functions is not None else {"fn": {"Handler": HANDLER}},
        "eventSourceMappings": list(mappings),
    }


def mapping_problems(source: str, **fields: Any) -> list[str]:
    return problems_of(doc({**BASES[source], **fields}))


def only_mapping(raw: dict[str, Any]) -> Any:
    (mapping,) = build(raw).mappings
    return mapping


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """build_config(import_handlers=True) exports each function's Environment to os.environ."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


# --------------------------------------------------------------------------------------------
# BatchSize and batching window
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"BatchSize": 11},
        {"BatchSize": 11, "MaximumBatchingWindowInSeconds": 0},
        {"BatchSize": 10000},
        {"BatchSize": 10000, "MaximumBatchingWindowInSeconds": 0},
    ],
    ids=repr,
)
def test_sqs_batch_above_10_needs_a_window(fields: dict[str, Any]) -> None:
    assert mapping_problems("sqs", **fields) == [f"{M0}.{WINDOW_RULE}"]


@pytest.mark.parametrize(
    "fields",
    [
        {"BatchSize": 10},
        {"BatchSize": 10, "MaximumBatchingWindowInSeconds": 0},
        {"BatchSize": 11, "MaximumBatchingWindowInSeconds": 1},
        {"BatchSize": 10000, "MaximumBatchingWindowInSeconds": 300},
        {"MaximumBatchingWindowInSeconds": 0},
    ],
    ids=repr,
)
def test_sqs_batch_window_combinations_that_are_valid(fields: dict[str, Any]) -> None:
    assert mapping_problems("sqs", **fields) == []


@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_stream_batch_above_10_needs_no_window(source: str) -> None:
    # Lambda enforces the window rule for SQS only (its stream defaults are 100 and 0).
    assert mapping_problems(source, BatchSize=11) == BASELINE[source]
    assert (
        mapping_problems(source, BatchSize=11, MaximumBatchingWindowInSeconds=1)
        == (BASELINE[source])
    )


@pytest.mark.parametrize("source", ["kafka", "msk"])
def test_kafka_batch_above_10_needs_no_window(source: str) -> None:
    assert mapping_problems(source, BatchSize=10000) == BASELINE[source]


@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_stream_mapping_with_default_batch_size_is_valid(source: str) -> None:
    base = {k: v for k, v in BASES[source].items() if k != "BatchSize"}
    assert problems_of(doc(base)) == BASELINE[source]


def test_fifo_batch_size_at_most_10() -> None:
    assert mapping_problems("fifo", BatchSize=10) == []
    assert mapping_problems("fifo", BatchSize=11) == [
        f"{M0}.BatchSize: must be at most 10 for FIFO queues (got 11)"
    ]
    # Even with a window (which FIFO also refuses), the generic > 10 rule is not reported.
    assert mapping_problems("fifo", BatchSize=10000) == [
        f"{M0}.BatchSize: must be at most 10 for FIFO queues (got 10000)"
    ]


@pytest.mark.parametrize("window", [1, 300])
def test_fifo_refuses_a_batching_window(window: int) -> None:
    assert mapping_problems("fifo", MaximumBatchingWindowInSeconds=window) == [
        f"{M0}.MaximumBatchingWindowInSeconds: batching window is not supported for FIFO queues"
    ]


def test_fifo_accepts_an_explicit_zero_window() -> None:
    mapping = only_mapping(doc({**BASES["fifo"], "MaximumBatchingWindowInSeconds": 0}))
    assert mapping.source.fifo is True
    assert mapping.batching_window_seconds == 0.0


def test_fifo_with_large_batch_and_window_reports_both() -> None:
    assert mapping_problems("fifo", BatchSize=20, MaximumBatchingWindowInSeconds=5) == [
        f"{M0}.BatchSize: must be at most 10 for FIFO queues (got 20)",
        f"{M0}.MaximumBatchingWindowInSeconds: batching window is not supported for FIFO queues",
    ]


# --------------------------------------------------------------------------------------------
# MaximumRecordAgeInSeconds, ScalingConfig, DestinationConfig
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["kinesis", "dynamodb", "kafka", "msk"])
@pytest.mark.parametrize("age", [0, 59])
def test_record_age_0_to_59_is_rejected_for_every_source_that_has_it(source: str, age: int) -> None:
    assert mapping_problems(source, MaximumRecordAgeInSeconds=age) == [
        *BASELINE[source],
        f"{M0}.MaximumRecordAgeInSeconds: must be -1 (infinite) or between 60 and 604800 "
        f"(got {age})",
    ]


@pytest.mark.parametrize("age", [-1, 60])
def test_record_age_minus_1_and_60_are_valid(age: int) -> None:
    assert mapping_problems("kinesis", MaximumRecordAgeInSeconds=age) == BASELINE["kinesis"]


def test_scaling_config_and_provisioned_pollers_are_exclusive() -> None:
    assert mapping_problems(
        "sqs",
        ScalingConfig={"MaximumConcurrency": 5},
        ProvisionedPollerConfig={"MinimumPollers": 2, "MaximumPollers": 10},
    ) == [
        f"{M0}.ScalingConfig: cannot be combined with ProvisionedPollerConfig on the same mapping"
    ]


def test_scaling_config_alone_and_provisioned_pollers_alone_are_valid() -> None:
    assert mapping_problems("sqs", ScalingConfig={"MaximumConcurrency": 5}) == []
    assert mapping_problems("sqs", ProvisionedPollerConfig={"MinimumPollers": 2}) == []


ON_SUCCESS = (
    "DestinationConfig.OnSuccess: Unsupported OnSuccess parameter for event source mappings "
    "(only OnFailure is supported)"
)


@pytest.mark.parametrize("source", ["kinesis", "dynamodb", "kafka", "msk"])
def test_on_success_destination_is_rejected(source: str) -> None:
    dest = {"OnSuccess": {"Destination": DLQ_ARN}, "OnFailure": {"Destination": DLQ_ARN}}
    assert mapping_problems(source, DestinationConfig=dest) == [
        *BASELINE[source],
        f"{M0}.{ON_SUCCESS}",
    ]


@pytest.mark.parametrize(
    "dest",
    [
        {"OnFailure": {"Destination": DLQ_ARN}},
        {"OnSuccess": {"Destination": ""}},
        {"OnSuccess": {}},
        {},
    ],
    ids=repr,
)
def test_on_failure_only_or_empty_on_success_is_valid(dest: dict[str, Any]) -> None:
    assert mapping_problems("kinesis", DestinationConfig=dest) == BASELINE["kinesis"]


# --------------------------------------------------------------------------------------------
# Fields that do not apply to the source
# --------------------------------------------------------------------------------------------


def unsupported(name: str) -> str:
    return f"{M0}.{name}: Unsupported {name} parameter for given event source mapping type."


NOT_FOR_SQS = [
    ("ParallelizationFactor", 2, []),
    ("StartingPosition", "LATEST", []),
    ("DestinationConfig", {"OnFailure": {"Destination": DLQ_ARN}}, []),
    ("MaximumRecordAgeInSeconds", 60, []),
    ("BisectBatchOnFunctionError", False, []),
    ("MaximumRetryAttempts", 2, []),
    ("TumblingWindowInSeconds", 60, []),
    ("Topics", ["orders"], []),
    ("Queues", ["orders"], []),
    ("SourceAccessConfigurations", [{"Type": "BASIC_AUTH", "URI": "env://KAFKA_SECRET"}], []),
    ("SelfManagedKafkaEventSourceConfig", {"ConsumerGroupId": "g"}, []),
    ("AmazonManagedKafkaEventSourceConfig", {"ConsumerGroupId": "g"}, []),
    ("DocumentDBEventSourceConfig", {"DatabaseName": "db"}, []),
    ("LoggingConfig", {"SystemLogLevel": "INFO"}, []),
    (
        "StartingPositionTimestamp",
        1.7e9,
        [f"{M0}.StartingPositionTimestamp: only valid with StartingPosition AT_TIMESTAMP"],
    ),
]


@pytest.mark.parametrize(("field", "value", "more"), NOT_FOR_SQS, ids=[f[0] for f in NOT_FOR_SQS])
def test_fields_not_applicable_to_sqs_are_rejected(field: str, value: Any, more: list[str]) -> None:
    assert mapping_problems("sqs", **{field: value}) == [unsupported(field), *more]


@pytest.mark.parametrize(
    "fields",
    [
        {"Enabled": False},
        {"UUID": "abcdef01-2345-6789-abcd-ef0123456789"},
        {"FilterCriteria": {"Filters": [{"Pattern": "{}"}]}},
        {"KMSKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k"},
        {"MetricsConfig": {"Metrics": ["EventCount"]}},
        {"FunctionResponseTypes": ["ReportBatchItemFailures"]},
        {"Tags": {"team": "orders"}},
        {"ScalingConfig": {"MaximumConcurrency": 2}},
        {"ProvisionedPollerConfig": {"MinimumPollers": 2, "MaximumPollers": 20}},
    ],
    ids=repr,
)
def test_fields_applicable_to_sqs_are_accepted(fields: dict[str, Any]) -> None:
    assert mapping_problems("sqs", **fields) == []


def test_several_unsupported_fields_are_all_reported_in_sorted_order() -> None:
    assert mapping_problems(
        "sqs", TumblingWindowInSeconds=60, BisectBatchOnFunctionError=True, ParallelizationFactor=2
    ) == [
        unsupported("BisectBatchOnFunctionError"),
        unsupported("ParallelizationFactor"),
        unsupported("TumblingWindowInSeconds"),
    ]


@pytest.mark.parametrize(
    ("source", "field", "value"),
    [
        ("kinesis", "ScalingConfig", {"MaximumConcurrency": 2}),
        ("kinesis", "Topics", ["orders"]),
        ("dynamodb", "ProvisionedPollerConfig", {"MinimumPollers": 1}),
        ("kafka", "ParallelizationFactor", 2),
        ("kafka", "TumblingWindowInSeconds", 60),
        ("kafka", "ScalingConfig", {"MaximumConcurrency": 2}),
        ("kafka", "AmazonManagedKafkaEventSourceConfig", {"ConsumerGroupId": "g"}),
        ("msk", "SelfManagedKafkaEventSourceConfig", {"ConsumerGroupId": "g"}),
    ],
    ids=repr,
)
def test_fields_not_applicable_to_other_sources_are_rejected(
    source: str, field: str, value: Any
) -> None:
    assert mapping_problems(source, **{field: value}) == [*BASELINE[source], unsupported(field)]


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("kinesis", {"ParallelizationFactor": 10, "TumblingWindowInSeconds": 900}),
        ("dynamodb", {"BisectBatchOnFunctionError": True, "MaximumRetryAttempts": 5}),
        ("kafka", {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": "env://S"}]}),
        ("kafka", {"SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g"}}),
        ("msk", {"AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g"}}),
        ("msk", {"ProvisionedPollerConfig": {"MinimumPollers": 1}, "LoggingConfig": {}}),
    ],
    ids=repr,
)
def test_fields_applicable_to_other_sources_are_accepted(
    source: str, fields: dict[str, Any]
) -> None:
    assert mapping_problems(source, **fields) == BASELINE[source]


# --------------------------------------------------------------------------------------------
# Event sources: recognition and support
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        "orders",
        "arn:aws:s3:::orders",
        f"arn:aws:sns:us-east-1:{ACCOUNT}:orders",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders/x",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:my.queue",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:",
        "arn:aws:sqs:us-east-1:12345:orders",
        f"arn:aws:kinesis:us-east-1:{ACCOUNT}:orders",
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders",
        f"arn:aws:kafka:us-east-1:{ACCOUNT}:topic/orders/x",
        f"arn:aws:mq:us-east-1:{ACCOUNT}:broker:orders:b-1",
        f"ARN:AWS:SQS:us-east-1:{ACCOUNT}:orders",
    ],
)
def test_unrecognized_event_sources(arn: str) -> None:
    assert mapping_problems("sqs", EventSourceArn=arn) == [
        f"{M0}.EventSourceArn: Unrecognized event source. ({arn!r})"
    ]


@pytest.mark.parametrize(
    ("arn", "kind", "name", "fifo"),
    [
        (SQS_ARN, SourceKind.SQS, "orders", False),
        (FIFO_ARN, SourceKind.SQS, "orders.fifo", True),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:" + "q" * 75, SourceKind.SQS, "q" * 75, False),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:" + "q" * 75 + ".fifo", SourceKind.SQS, None, True),
        (f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:Orders_1-a", SourceKind.SQS, "Orders_1-a", False),
    ],
    ids=repr,
)
def test_sqs_arns_are_recognized(arn: str, kind: SourceKind, name: str | None, fifo: bool) -> None:
    mapping = only_mapping(doc({"FunctionName": "fn", "EventSourceArn": arn}))
    assert mapping.source.kind is kind
    assert mapping.source.arn == arn
    assert mapping.source.name == (name or arn.rsplit(":", 1)[1])
    assert mapping.source.fifo is fifo
    assert mapping.source.account == ACCOUNT


@pytest.mark.parametrize("length", [76, 80])
def test_standard_queue_names_up_to_80_characters_are_recognized(length: int) -> None:
    arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:" + "q" * length
    assert problems_of(doc({"FunctionName": "fn", "EventSourceArn": arn})) == []


def test_sqs_arn_without_region_is_rejected() -> None:
    arn = f"arn:aws:sqs::{ACCOUNT}:orders"
    problems = problems_of(doc({"FunctionName": "fn", "EventSourceArn": arn}))
    assert [p for p in problems if p.startswith(f"{M0}.EventSourceArn: ")]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("kinesis", "kinesis"),
        ("dynamodb", "dynamodb"),
        ("kafka", "kafka"),
        ("msk", "msk"),
    ],
)
def test_every_source_kind_loads(source: str, kind: str) -> None:
    assert mapping_problems(source) == []


@pytest.mark.parametrize(
    ("arn", "kind"),
    [
        (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders/consumer/c:1700000000", "kinesis"),
        (f"arn:aws:kafka:us-east-1:{ACCOUNT}:vpc-connection/{ACCOUNT}/orders/x-1", "msk"),
    ],
)
def test_other_recognized_arn_forms(arn: str, kind: str) -> None:
    fields: dict[str, Any] = {"EventSourceArn": arn}
    if kind == "kinesis":
        fields["StartingPosition"] = "LATEST"
        fields["BatchSize"] = 10
    else:
        fields["Topics"] = ["orders"]
    assert problems_of(doc({"FunctionName": "fn", **fields})) == []


def test_event_source_is_required() -> None:
    assert problems_of(doc({"FunctionName": "fn"})) == [
        f"{M0}.EventSourceArn: required (or SelfManagedEventSource for Kafka)"
    ]
    assert problems_of(doc({"FunctionName": "fn", "EventSourceArn": ""})) == [
        f"{M0}.EventSourceArn: required (or SelfManagedEventSource for Kafka)"
    ]


def test_event_source_arn_and_self_managed_source_are_exclusive() -> None:
    assert mapping_problems("kafka", EventSourceArn=SQS_ARN) == [
        f"{M0}.EventSourceArn: give either EventSourceArn or SelfManagedEventSource, not both"
    ]


def test_self_managed_kafka_needs_bootstrap_servers_and_a_topic() -> None:
    assert mapping_problems("kafka", SelfManagedEventSource={"Endpoints": {}}) == [
        f"{M0}.SelfManagedEventSource.Endpoints: KAFKA_BOOTSTRAP_SERVERS is required"
    ]
    base = {k: v for k, v in BASES["kafka"].items() if k != "Topics"}
    assert problems_of(doc(base)) == [
        f"{M0}.Topics: required for a Kafka event source (exactly one topic)"
    ]


# --------------------------------------------------------------------------------------------
# StartingPosition
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_starting_position_is_required_for_streams(source: str) -> None:
    base = {k: v for k, v in BASES[source].items() if k != "StartingPosition"}
    assert problems_of(doc(base)) == [*BASELINE[source], f"{M0}.{STARTING_POSITION_NULL}"]


@pytest.mark.parametrize("source", ["kafka", "msk"])
def test_starting_position_is_optional_for_kafka(source: str) -> None:
    assert mapping_problems(source) == BASELINE[source]
    assert mapping_problems(source, StartingPosition="LATEST") == BASELINE[source]


def test_at_timestamp_is_refused_for_dynamodb() -> None:
    assert mapping_problems(
        "dynamodb", StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1.7e9
    ) == [
        *BASELINE["dynamodb"],
        f"{M0}.StartingPosition: Unsupported starting position for arn type: {DDB_ARN}",
    ]


@pytest.mark.parametrize("source", ["kinesis", "kafka", "msk"])
def test_at_timestamp_with_a_past_timestamp_is_valid(source: str) -> None:
    assert (
        mapping_problems(source, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1.7e9)
        == BASELINE[source]
    )


def test_at_timestamp_needs_a_timestamp() -> None:
    assert mapping_problems("kinesis", StartingPosition="AT_TIMESTAMP") == [
        *BASELINE["kinesis"],
        f"{M0}.StartingPositionTimestamp: required with AT_TIMESTAMP",
    ]


def test_timestamp_cannot_be_in_the_future() -> None:
    future = time.time() + 3600
    assert mapping_problems(
        "kinesis", StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=future
    ) == [*BASELINE["kinesis"], f"{M0}.StartingPositionTimestamp: cannot be in the future"]


@pytest.mark.parametrize("position", ["LATEST", "TRIM_HORIZON"])
def test_timestamp_only_with_at_timestamp(position: str) -> None:
    assert mapping_problems(
        "kinesis", StartingPosition=position, StartingPositionTimestamp=1.7e9
    ) == [
        *BASELINE["kinesis"],
        f"{M0}.StartingPositionTimestamp: only valid with StartingPosition AT_TIMESTAMP",
    ]


# --------------------------------------------------------------------------------------------
# FilterCriteria
# --------------------------------------------------------------------------------------------


def filters(*patterns: str) -> dict[str, Any]:
    return {"Filters": [{"Pattern": p} for p in patterns]}


def test_five_filters_are_allowed_and_kept_in_order() -> None:
    patterns = [f'{{"body": {{"n": [{i}]}}}}' for i in range(5)]
    mapping = only_mapping(doc({**BASES["sqs"], "FilterCriteria": filters(*patterns)}))
    assert mapping.filter_patterns == tuple(patterns)


def test_more_than_five_filters_are_rejected() -> None:
    assert mapping_problems("sqs", FilterCriteria=filters(*["{}"] * 6)) == [
        f"{M0}.FilterCriteria.Filters: at most 5 filters are allowed (got 6; "
        "ESM_MAX_FILTERS raises the limit up to 10)"
    ]


@pytest.mark.parametrize(
    ("pattern", "detail"),
    [
        ("not json", "Expecting value: line 1 column 1 (char 0)"),
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ('{"body": ', "Expecting value: line 1 column 10 (char 9)"),
        ("{'body': 1}", "Expecting property name enclosed in double quotes: line 1 column 2"),
    ],
    ids=repr,
)
def test_a_pattern_that_is_not_json_is_rejected(pattern: str, detail: str) -> None:
    problems = mapping_problems("sqs", FilterCriteria=filters('{"a": [1]}', pattern))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{M0}.FilterCriteria.Filters[1].Pattern: Invalid filter pattern definition. ({detail}"
    )


def test_every_bad_pattern_and_the_count_are_reported_together() -> None:
    problems = mapping_problems("sqs", FilterCriteria=filters("x", "{}", "{}", "{}", "{}", "y"))
    assert len(problems) == 3
    assert problems[0] == (
        f"{M0}.FilterCriteria.Filters: at most 5 filters are allowed (got 6; "
        "ESM_MAX_FILTERS raises the limit up to 10)"
    )
    assert problems[1].startswith(f"{M0}.FilterCriteria.Filters[0].Pattern: Invalid filter")
    assert problems[2].startswith(f"{M0}.FilterCriteria.Filters[5].Pattern: Invalid filter")


# --------------------------------------------------------------------------------------------
# FunctionName resolution
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "fn",
        "fn:$LATEST",
        "fn:prod",
        "fn:7",
        f"{ACCOUNT}:function:fn",
        f"{ACCOUNT}:function:fn:prod",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn:$LATEST",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn:live",
        f"arn:aws-cn:lambda:cn-north-1:{ACCOUNT}:function:fn",
    ],
)
def test_function_name_forms_resolve_to_the_function(reference: str) -> None:
    by_name = only_mapping(doc({**BASES["sqs"]}))
    mapping = only_mapping(doc({**BASES["sqs"], "FunctionName": reference}))
    assert mapping.function.name == "fn"
    assert mapping.uuid == by_name.uuid
    assert mapping.raw.function_name == reference


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("payments", "payments"),
        ("FN", "FN"),
        ("payments:prod", "payments"),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:payments", "payments"),
        (f"{ACCOUNT}:function:payments", "payments"),
    ],
)
def test_unknown_function_does_not_exist(reference: str, name: str) -> None:
    assert mapping_problems("sqs", FunctionName=reference) == [
        f"{M0}.FunctionName: Function does not exist ({name!r} is not in functions)"
    ]


def test_unknown_function_is_reported_with_the_other_problems_of_the_mapping() -> None:
    assert mapping_problems("sqs", FunctionName="payments", BatchSize=50) == [
        f"{M0}.{WINDOW_RULE}",
        f"{M0}.FunctionName: Function does not exist ('payments' is not in functions)",
    ]


@pytest.mark.parametrize(
    "function",
    [{"Handler": "orders"}, {"Timeout": 3}, {"Handlr": HANDLER}],
    ids=["malformed", "missing", "misspelled"],
)
def test_invalid_function_is_not_reported_missing(function: dict[str, Any]) -> None:
    problems = problems_of(doc({**BASES["sqs"]}, functions={"fn": function}))
    assert problems, "the function is invalid"
    assert all(p.startswith("functions.fn.") for p in problems), problems


def test_function_with_an_invalid_optional_field_is_kept_for_its_mappings() -> None:
    problems = problems_of(
        doc({**BASES["sqs"]}, functions={"fn": {"Handler": HANDLER, "Timeout": 0}})
    )
    assert problems == ["functions.fn.Timeout: Input should be greater than or equal to 1 (got 0)"]


# --------------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------------

UUID_A = "abcdef01-2345-6789-abcd-ef0123456789"


def test_duplicate_function_and_source_is_rejected() -> None:
    raw = doc(
        {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
        {"FunctionName": "fn", "EventSourceArn": SQS_ARN, "BatchSize": 5},
    )
    first = derive_mapping_uuid("fn", parse_event_source_arn(SQS_ARN))
    # Lambda's own text (ResourceConflictException, recorded for SQS), with where the first
    # mapping is.
    assert problems_of(raw) == [
        f'eventSourceMappings[1]: An event source mapping with SQS arn (" {SQS_ARN} ") and '
        f'function (" fn ") already exists. Please update or delete the existing mapping with '
        f"UUID {first} (eventSourceMappings[0])"
    ]


def test_duplicate_kafka_mapping_uses_lambdas_recorded_text() -> None:
    """The text of the AWS-recorded snapshot (test_create_event_source_self_managed)."""
    source = {
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka:1000"]}},
        "Topics": ["topic"],
    }
    raw = doc({"FunctionName": "fn", **source}, {"FunctionName": "fn", **source})
    first = build(doc({"FunctionName": "fn", **source})).mappings[0]
    assert problems_of(raw) == [
        f'eventSourceMappings[1]: An event source mapping with event source ("kafka:1000"), '
        f'function ("{first.function.arn}"), topics ("topic") already exists. Please update or '
        f"delete the existing mapping with UUID {first.uuid} (eventSourceMappings[0])"
    ]


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s",
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/t/stream/2024",
    ],
    ids=["kinesis", "dynamodb"],
)
def test_duplicate_stream_mapping_text_is_lambdas(arn: str) -> None:
    """The texts of the AWS-recorded snapshots (test_duplicate_event_source_mappings for
    Kinesis and DynamoDB Streams); their sources are validated by the next issue's work."""
    sqs_mapping = only_mapping(doc({"FunctionName": "fn", "EventSourceArn": SQS_ARN}))
    text = duplicate_mapping_message(parse_event_source_arn(arn), sqs_mapping.function, UUID_A)
    assert text == (
        f'The event source arn (" {arn} ") and function (" fn ") provided mapping already '
        f"exists. Please update or delete the existing mapping with UUID {UUID_A}"
    )


def test_duplicate_is_detected_through_a_function_arn() -> None:
    raw = doc(
        {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
        {"FunctionName": "fn", "EventSourceArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:other"},
        {
            "FunctionName": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn",
            "EventSourceArn": SQS_ARN,
        },
    )
    first = derive_mapping_uuid("fn", parse_event_source_arn(SQS_ARN))
    assert problems_of(raw) == [
        f'eventSourceMappings[2]: An event source mapping with SQS arn (" {SQS_ARN} ") and '
        f'function (" fn ") already exists. Please update or delete the existing mapping with '
        f"UUID {first} (eventSourceMappings[0])"
    ]


def test_same_source_for_two_functions_and_two_sources_for_one_function_are_valid() -> None:
    functions = {"fn": {"Handler": HANDLER}, "audit": {"Handler": HANDLER}}
    raw = doc(
        {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
        {"FunctionName": "audit", "EventSourceArn": SQS_ARN},
        {"FunctionName": "fn", "EventSourceArn": FIFO_ARN},
        functions=functions,
    )
    config = build(raw)
    assert [m.label for m in config.mappings] == [
        f"fn <- {SQS_ARN}",
        f"audit <- {SQS_ARN}",
        f"fn <- {FIFO_ARN}",
    ]
    assert len({m.uuid for m in config.mappings}) == 3


def test_duplicate_explicit_uuid_is_rejected_case_insensitively() -> None:
    raw = doc(
        {"FunctionName": "fn", "EventSourceArn": SQS_ARN, "UUID": UUID_A},
        {"FunctionName": "fn", "EventSourceArn": FIFO_ARN, "UUID": UUID_A.upper()},
    )
    assert problems_of(raw) == [
        f"eventSourceMappings[1].UUID: {UUID_A} is already used by eventSourceMappings[0]"
    ]


def test_explicit_uuid_equal_to_a_derived_uuid_is_rejected() -> None:
    derived = only_mapping(doc({"FunctionName": "fn", "EventSourceArn": SQS_ARN})).uuid
    raw = doc(
        {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
        {"FunctionName": "fn", "EventSourceArn": FIFO_ARN, "UUID": derived.upper()},
    )
    assert problems_of(raw) == [
        f"eventSourceMappings[1].UUID: {derived} is already used by eventSourceMappings[0]"
    ]


# --------------------------------------------------------------------------------------------
# Environment variables
# --------------------------------------------------------------------------------------------


def env_function(**variables: str) -> dict[str, Any]:
    return {"Handler": HANDLER, "Environment": {"Variables": variables}}


def test_functions_may_give_one_variable_different_values() -> None:
    """Each function runs in worker processes of its own, as on Lambda."""
    functions = {"a": env_function(STAGE="prod", A="1"), "b": env_function(STAGE="dev", B="2")}
    config = build({"functions": functions})
    assert config.functions["a"].environment == {"STAGE": "prod", "A": "1"}
    assert config.functions["b"].environment == {"STAGE": "dev", "B": "2"}


@pytest.mark.parametrize(
    "name",
    [
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "_HANDLER",
        "ESM_WORKERS",
        # They would redirect the runtime's own AWS and Secrets Manager clients.
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CA_BUNDLE",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "NO_PROXY",
        # They change where the runtime's clients look for instance credentials.
        "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
        "AWS_EC2_METADATA_V1_DISABLED",
    ],
)
def test_reserved_variables_are_refused(name: str) -> None:
    assert problems_of({"functions": {"a": env_function(**{name: "x"})}}) == [
        f"functions.a.Environment.Variables.{name}: reserved (Lambda's runtime variables, ESM_* "
        "settings and the variables that configure the runtime's own AWS clients and proxies "
        "cannot be set by a function)"
    ]


def test_a_variable_lambda_lets_functions_set_is_accepted() -> None:
    """``AWS_LAMBDA_EXEC_WRAPPER`` is not reserved on Lambda: a function may set it."""
    assert problems_of({"functions": {"a": env_function(AWS_LAMBDA_EXEC_WRAPPER="/w")}}) == []


def test_importing_a_handler_leaves_the_process_environment_alone(
    handler_module: Callable[[str], str],
) -> None:
    """``validate`` imports every handler in one process: no function's variables may leak
    into the runtime's environment or another function's import."""
    key = f"CFGTEST_{uuid.uuid4().hex.upper()}"
    module = handler_module(
        f"import os\nVALUE = os.environ.get('{key}')\ndef handler(event, context):\n    pass\n"
    )
    env = {"Environment": {"Variables": {key: "from-config"}}}
    assert handler_problems(f"{module}.handler", **env) == []
    assert sys.modules[module].VALUE == "from-config"
    assert key not in os.environ


def test_environment_variable_names_are_case_sensitive() -> None:
    functions = {"a": env_function(stage="prod"), "b": env_function(STAGE="dev")}
    assert problems_of({"functions": functions}) == []


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def handler_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], str]]:
    """Write a throwaway module under tmp_path and return its (unique) import name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(source: str) -> str:
        name = f"esm_cfg_test_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)


def handler_problems(handler: str, **function: Any) -> list[str]:
    return problems_of(
        {"functions": {"fn": {"Handler": handler, **function}}}, import_handlers=True
    )


def test_importable_handler_loads(handler_module: Callable[[str], str]) -> None:
    module = handler_module("def handler(event, context):\n    return event\n")
    config = build({"functions": {"fn": {"Handler": f"{module}.handler"}}}, import_handlers=True)
    assert config.functions["fn"].handler == f"{module}.handler"


def test_repo_handler_loads_with_import() -> None:
    assert handler_problems(HANDLER) == []


def test_handler_module_that_does_not_exist() -> None:
    module = f"esm_cfg_missing_{uuid.uuid4().hex}"
    assert handler_problems(f"{module}.handler") == [
        f"functions.fn.Handler: Runtime.ImportModuleError: Unable to import module '{module}': "
        f"ModuleNotFoundError: No module named '{module}'"
    ]


def test_handler_module_that_fails_at_import(handler_module: Callable[[str], str]) -> None:
    module = handler_module("raise RuntimeError('no database')\ndef handler(e, c):\n    pass\n")
    assert handler_problems(f"{module}.handler") == [
        f"functions.fn.Handler: Runtime.ImportModuleError: Unable to import module '{module}': "
        "RuntimeError: no database"
    ]


def test_handler_module_with_a_syntax_error(handler_module: Callable[[str], str]) -> None:
    module = handler_module("def handler(event, context)\n    pass\n")
    (problem,) = handler_problems(f"{module}.handler")
    assert problem.startswith(
        f"functions.fn.Handler: Runtime.ImportModuleError: Unable to import module '{module}': "
        "SyntaxError: "
    )


def test_handler_attribute_missing(handler_module: Callable[[str], str]) -> None:
    module = handler_module("def other(event, context):\n    pass\n")
    assert handler_problems(f"{module}.handler") == [
        f"functions.fn.Handler: Runtime.HandlerNotFound: Handler 'handler' missing on module "
        f"'{module}'"
    ]


def test_handler_attribute_not_callable(handler_module: Callable[[str], str]) -> None:
    module = handler_module("handler = {'not': 'callable'}\n")
    assert handler_problems(f"{module}.handler") == [
        f"functions.fn.Handler: Runtime.HandlerNotFound: Handler 'handler' on module "
        f"'{module}' is not callable"
    ]


def test_handler_in_a_package_submodule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"esm_cfg_pkg_{uuid.uuid4().hex}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "orders.py").write_text("async def handler(event, context):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert handler_problems(f"{package}.orders.handler") == []
        assert handler_problems(f"{package}.orders.missing") == [
            f"functions.fn.Handler: Runtime.HandlerNotFound: Handler 'missing' missing on module "
            f"'{package}.orders'"
        ]
    finally:
        for name in (package, f"{package}.orders"):
            sys.modules.pop(name, None)


def test_environment_is_set_before_handlers_are_imported(
    handler_module: Callable[[str], str],
) -> None:
    key = f"CFGTEST_{uuid.uuid4().hex.upper()}"
    module = handler_module(
        f"import os\nVALUE = os.environ['{key}']\ndef handler(event, context):\n    pass\n"
    )
    env = {"Environment": {"Variables": {key: "from-config"}}}
    assert handler_problems(f"{module}.handler", **env) == []
    assert sys.modules[module].VALUE == "from-config"


def test_handlers_are_not_imported_when_import_handlers_is_false() -> None:
    module = f"esm_cfg_missing_{uuid.uuid4().hex}"
    config = build({"functions": {"fn": {"Handler": f"{module}.handler"}}}, import_handlers=False)
    assert config.functions["fn"].handler == f"{module}.handler"


def test_every_handler_problem_is_listed(handler_module: Callable[[str], str]) -> None:
    missing_attr = handler_module("x = 1\n")
    missing_module = f"esm_cfg_missing_{uuid.uuid4().hex}"
    functions = {
        "a": {"Handler": f"{missing_module}.handler"},
        "b": {"Handler": HANDLER},
        "c": {"Handler": f"{missing_attr}.handler"},
    }
    assert problems_of({"functions": functions}, import_handlers=True) == [
        f"functions.a.Handler: Runtime.ImportModuleError: Unable to import module "
        f"'{missing_module}': ModuleNotFoundError: No module named '{missing_module}'",
        f"functions.c.Handler: Runtime.HandlerNotFound: Handler 'handler' missing on module "
        f"'{missing_attr}'",
    ]


# --------------------------------------------------------------------------------------------
# Defaults and the resolved Mapping
# --------------------------------------------------------------------------------------------


def test_sqs_defaults_are_applied() -> None:
    mapping = only_mapping(doc({"FunctionName": "fn", "EventSourceArn": SQS_ARN}))
    assert mapping.batch_size == 10
    assert mapping.batching_window_seconds == 0.0
    assert isinstance(mapping.batching_window_seconds, float)
    assert mapping.enabled is True
    assert mapping.maximum_concurrency is None
    assert mapping.report_batch_item_failures is False
    assert mapping.filter_patterns == ()
    assert mapping.index == 0
    assert mapping.source.kind is SourceKind.SQS
    assert mapping.source.name == "orders"
    assert mapping.source.region == "us-east-1"
    assert mapping.source.account == ACCOUNT
    assert mapping.source.fifo is False
    assert mapping.label == f"fn <- {SQS_ARN}"


def test_explicit_values_are_kept() -> None:
    mapping = only_mapping(
        doc(
            {
                "FunctionName": "fn",
                "EventSourceArn": SQS_ARN,
                "BatchSize": 250,
                "MaximumBatchingWindowInSeconds": 7,
                "Enabled": False,
                "ScalingConfig": {"MaximumConcurrency": 42},
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"a": [1]}}'}]},
            }
        )
    )
    assert mapping.batch_size == 250
    assert mapping.batching_window_seconds == 7.0
    assert mapping.enabled is False
    assert mapping.maximum_concurrency == 42
    assert mapping.report_batch_item_failures is True
    assert mapping.filter_patterns == ('{"body": {"a": [1]}}',)


def test_explicit_small_batch_is_kept() -> None:
    mapping = only_mapping(doc({**BASES["sqs"], "BatchSize": 1}))
    assert mapping.batch_size == 1


def test_empty_scaling_config_means_no_cap() -> None:
    mapping = only_mapping(doc({**BASES["sqs"], "ScalingConfig": {}}))
    assert mapping.maximum_concurrency is None


def test_function_defaults_and_arn() -> None:
    raw = doc({**BASES["sqs"]})
    config = build(raw, region="eu-west-3", account_id="111122223333")
    fn = config.functions["fn"]
    assert (fn.name, fn.handler, fn.timeout_seconds, fn.memory_size) == ("fn", HANDLER, 3, 128)
    assert fn.environment == {}
    assert fn.reserved_concurrency is None
    assert fn.arn == "arn:aws:lambda:eu-west-3:111122223333:function:fn"
    assert config.mappings[0].function is fn


def test_mappings_keep_their_order_and_index() -> None:
    arns = [f"arn:aws:sqs:us-east-1:{ACCOUNT}:q{i}" for i in range(4)]
    config = build(doc(*({"FunctionName": "fn", "EventSourceArn": a} for a in arns)))
    assert [m.source.arn for m in config.mappings] == arns
    assert [m.index for m in config.mappings] == [0, 1, 2, 3]


def test_derived_uuid_is_stable_and_pinned() -> None:
    # Derived UUIDs name metric series and Kafka consumer groups: they must never change.
    first = only_mapping(doc({**BASES["sqs"]}))
    second = only_mapping(doc({**BASES["sqs"], "BatchSize": 5, "Enabled": False}))
    assert first.uuid == second.uuid == "c20fc31b-ea91-5eaa-847c-117f75cf2393"
    assert uuid.UUID(first.uuid).version == 5


def test_derived_uuid_depends_on_function_and_source() -> None:
    functions = {"fn": {"Handler": HANDLER}, "audit": {"Handler": HANDLER}}
    config = build(
        doc(
            {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
            {"FunctionName": "audit", "EventSourceArn": SQS_ARN},
            {"FunctionName": "fn", "EventSourceArn": FIFO_ARN},
            functions=functions,
        )
    )
    uuids = [m.uuid for m in config.mappings]
    assert len(set(uuids)) == 3
    assert all(u == u.lower() and uuid.UUID(u).version == 5 for u in uuids)


def test_derived_uuid_does_not_depend_on_settings() -> None:
    raw = doc({**BASES["sqs"]})
    a = build(raw, region="us-east-1", account_id="000000000000").mappings[0].uuid
    b = build(raw, region="eu-west-1", account_id="111122223333").mappings[0].uuid
    assert a == b


def test_explicit_uuid_is_lower_cased_and_used() -> None:
    mapping = only_mapping(doc({**BASES["sqs"], "UUID": UUID_A.upper()}))
    assert mapping.uuid == UUID_A


# --------------------------------------------------------------------------------------------
# Every problem of a file at once
# --------------------------------------------------------------------------------------------


def test_all_problems_of_a_file_are_listed_at_once() -> None:
    missing_module = f"esm_cfg_missing_{uuid.uuid4().hex}"
    raw = {
        "functions": {
            "orders": {
                "Handler": HANDLER,
                "Timeout": 0,
                "Colour": "blue",
                "Environment": {"Variables": {"STAGE": "prod"}},
            },
            "billing": {
                "Handler": HANDLER,
                "MemorySize": 64,
                "Environment": {"Variables": {"STAGE": "dev"}},
            },
            "ghost": {"Handler": f"{missing_module}.handler"},
            "bad name": {"Handler": HANDLER},
        },
        "eventSourceMappings": [
            # Unknown field AND a cross-field problem in the same mapping.
            {"FunctionName": "orders", "EventSourceArn": SQS_ARN, "BatchSize": 50, "Colour": "x"},
            {"FunctionName": "shipping", "EventSourceArn": SQS_ARN},
            {"FunctionName": "orders", "EventSourceArn": "arn:aws:s3:::orders"},
            {
                "FunctionName": "billing",
                "EventSourceArn": FIFO_ARN,
                "BatchSize": 20,
                "MaximumBatchingWindowInSeconds": 5,
            },
            {
                "FunctionName": "billing",
                "EventSourceArn": SQS_ARN,
                "ParallelizationFactor": 2,
                "ScalingConfig": {"MaximumConcurrency": 1},
                "FilterCriteria": {"Filters": [{"Pattern": "{}"}, {"Pattern": "nope"}]},
            },
            {"FunctionName": "ghost", "EventSourceArn": DLQ_ARN},
            {
                "FunctionName": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:ghost",
                "EventSourceArn": DLQ_ARN,
            },
        ],
        "Globals": {},
    }
    expected = [
        "Globals: unknown field (expected functions, eventSourceMappings)",
        "functions.orders.Timeout: Input should be greater than or equal to 1 (got 0)",
        "functions.orders.Colour: unknown field",
        "functions.billing.MemorySize: Input should be greater than or equal to 128 (got 64)",
        "functions.bad name: function names are 1-64 letters, digits, '-' or '_'",
        f"functions.ghost.Handler: Runtime.ImportModuleError: Unable to import module "
        f"'{missing_module}': ModuleNotFoundError: No module named '{missing_module}'",
        "eventSourceMappings[0].Colour: unknown field",
        f"eventSourceMappings[0].{WINDOW_RULE}",
        "eventSourceMappings[1].FunctionName: Function does not exist ('shipping' is not in "
        "functions)",
        "eventSourceMappings[2].EventSourceArn: Unrecognized event source. ('arn:aws:s3:::orders')",
        "eventSourceMappings[3].BatchSize: must be at most 10 for FIFO queues (got 20)",
        "eventSourceMappings[3].MaximumBatchingWindowInSeconds: batching window is not "
        "supported for FIFO queues",
        "eventSourceMappings[4].ScalingConfig.MaximumConcurrency: Input should be greater than or "
        "equal to 2 (got 1)",
        "eventSourceMappings[4].ParallelizationFactor: Unsupported ParallelizationFactor "
        "parameter for given event source mapping type.",
        "eventSourceMappings[4].FilterCriteria.Filters[1].Pattern: Invalid filter pattern "
        "definition. (Expecting value: line 1 column 1 (char 0))",
        f'eventSourceMappings[6]: An event source mapping with SQS arn (" {DLQ_ARN} ") and '
        f'function (" ghost ") already exists. Please update or delete the existing mapping with '
        f"UUID {derive_mapping_uuid('ghost', parse_event_source_arn(DLQ_ARN))} "
        "(eventSourceMappings[5])",
    ]
    with pytest.raises(ConfigError) as exc_info:
        build(raw, import_handlers=True)
    assert sorted(exc_info.value.problems) == sorted(expected)
    assert len(exc_info.value.problems) == len(expected)
    # The message lists them too, one per line.
    text = str(exc_info.value)
    assert text.startswith(f"test.yaml: {len(expected)} problem(s)\n")
    assert all(f"\n  - {p}" in text for p in expected)


def test_a_bad_function_name_key_does_not_hide_cross_field_problems() -> None:
    raw = doc({"Functionname": "fn", "EventSourceArn": SQS_ARN, "BatchSize": 50})
    assert f"{M0}.{WINDOW_RULE}" in problems_of(raw)


@pytest.mark.parametrize(
    ("source", "fields", "where"),
    [
        ("sqs", {"EventSourceArn": "a" * 10001}, "EventSourceArn"),
        ("kafka", {"Topics": ["t" * 250]}, "Topics"),
        (
            "kafka",
            {"SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker"]}}},
            "SelfManagedEventSource",
        ),
        ("kinesis", {"StartingPosition": "latest"}, "StartingPosition"),
    ],
    ids=["EventSourceArn", "Topics", "SelfManagedEventSource", "StartingPosition"],
)
def test_an_invalid_field_is_not_also_reported_missing(
    source: str, fields: dict[str, Any], where: str
) -> None:
    problems = mapping_problems(source, **fields)
    own = [p for p in problems if p.startswith(f"{M0}.{where}")]
    assert len(own) == 1, problems
    assert not any("required" in p or "must not be null" in p for p in problems), problems
