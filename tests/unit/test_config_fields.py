"""Per-field ranges, enums and shapes of the configuration file (esm-spec §1.2, Appendix A).

Everything goes through the public entry point ``build_config`` and asserts on the exact
problem lines of ``ConfigError.problems``. Valid boundary values must load; values just
beyond a boundary must yield exactly the expected problem and nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime.config.loader import ConfigError, build_config
from runtime.config.resolved import RuntimeConfig
from runtime.config.settings import Settings

HANDLER = "handlers.orders.handler"
SQS_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
MSK_ARN = (
    "arn:aws:kafka:us-east-1:123456789012:cluster/orders/0a1b2c3d-4e5f-6789-abcd-ef0123456789-1"
)
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:orders-dlq"
M0 = "eventSourceMappings[0]"
FN = "functions.fn"

BASES: dict[str, dict[str, Any]] = {
    "sqs": {"FunctionName": "fn", "EventSourceArn": SQS_ARN},
    # BatchSize 10 keeps Kinesis clear of the window rule (see the xfail in test_config_rules).
    "kinesis": {
        "FunctionName": "fn",
        "EventSourceArn": KINESIS_ARN,
        "StartingPosition": "LATEST",
        "BatchSize": 10,
    },
    "kafka": {
        "FunctionName": "fn",
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker:9092"]}},
        "Topics": ["orders"],
    },
    "msk": {"FunctionName": "fn", "EventSourceArn": MSK_ARN, "Topics": ["orders"]},
}


# What a valid mapping of each source yields: every source loads.
BASELINE: dict[str, list[str]] = {
    "sqs": [],
    "kinesis": [],
    "kafka": [],
    "msk": [],
}


def build(raw: Any) -> RuntimeConfig:
    return build_config(raw, "test.yaml", Settings(), import_handlers=False)


def problems_of(raw: Any) -> list[str]:
    try:
        build(raw)
    except ConfigError as exc:
        assert exc.path == "test.yaml"
        assert exc.problems, "ConfigError without problems"
        return exc.problems
    return []


def doc(
    mapping: dict[str, Any] | None = None, function: dict[str, Any] | None = None
) -> dict[str, Any]:
    raw: dict[str, Any] = {"functions": {"fn": {"Handler": HANDLER, **(function or {})}}}
    if mapping is not None:
        raw["eventSourceMappings"] = [mapping]
    return raw


def mapping_problems(source: str, **fields: Any) -> list[str]:
    return problems_of(doc({**BASES[source], **fields}))


def function_problems(**fields: Any) -> list[str]:
    return problems_of(doc(function=fields))


def json_pattern(length: int) -> str:
    """A valid JSON filter pattern of exactly ``length`` characters."""
    head, tail = '{"body": ["', '"]}'
    pattern = head + "x" * (length - len(head) - len(tail)) + tail
    assert len(pattern) == length
    return pattern


def test_bases_are_valid() -> None:
    for source, expected in BASELINE.items():
        assert mapping_problems(source) == expected, source


# --------------------------------------------------------------------------------------------
# Event source mapping: numeric ranges
# --------------------------------------------------------------------------------------------

VALID_MAPPING_VALUES = [
    ("sqs", {"BatchSize": 1}),
    ("sqs", {"BatchSize": 10}),
    ("sqs", {"BatchSize": 10000, "MaximumBatchingWindowInSeconds": 1}),
    ("sqs", {"MaximumBatchingWindowInSeconds": 0}),
    ("sqs", {"MaximumBatchingWindowInSeconds": 300}),
    ("kinesis", {"ParallelizationFactor": 1}),
    ("kinesis", {"ParallelizationFactor": 10}),
    ("kinesis", {"MaximumRecordAgeInSeconds": -1}),
    ("kinesis", {"MaximumRecordAgeInSeconds": 60}),
    ("kinesis", {"MaximumRecordAgeInSeconds": 604800}),
    ("kinesis", {"MaximumRetryAttempts": -1}),
    ("kinesis", {"MaximumRetryAttempts": 0}),
    ("kinesis", {"MaximumRetryAttempts": 10000}),
    ("kinesis", {"TumblingWindowInSeconds": 0}),
    ("kinesis", {"TumblingWindowInSeconds": 900}),
    ("sqs", {"ScalingConfig": {"MaximumConcurrency": 2}}),
    ("sqs", {"ScalingConfig": {"MaximumConcurrency": 1000}}),
    ("sqs", {"ScalingConfig": {}}),
    ("sqs", {"FilterCriteria": {"Filters": [{"Pattern": json_pattern(4096)}]}}),
    ("sqs", {"FilterCriteria": {"Filters": []}}),
    ("sqs", {"FunctionResponseTypes": []}),
    ("sqs", {"FunctionResponseTypes": ["ReportBatchItemFailures"]}),
    ("kafka", {"Topics": ["a" * 249]}),
    ("kafka", {"Topics": ["orders.v2-EU_1"]}),
    (
        "kafka",
        {
            "SourceAccessConfigurations": [
                {"Type": "VPC_SUBNET", "URI": f"subnet:subnet-{i}"} for i in range(23)
            ]
        },
    ),
    ("kafka", {"SourceAccessConfigurations": []}),
    ("kafka", {"SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "s" * 200}]}),
    ("sqs", {"MetricsConfig": {"Metrics": ["EventCount"]}}),
    ("kafka", {"MetricsConfig": {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]}}),
    ("kafka", {"ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 1}}),
    ("kafka", {"ProvisionedPollerConfig": {"MinimumPollers": 200, "MaximumPollers": 10000}}),
    ("kafka", {"ProvisionedPollerConfig": {"PollerGroupName": "g" * 128}}),
    ("kafka", {"LoggingConfig": {"SystemLogLevel": "WARN"}}),
    ("kafka", {"StartingPosition": "TRIM_HORIZON"}),
    (
        "kinesis",
        {
            "DestinationConfig": {
                "OnFailure": {"Destination": "arn:aws:sns:us-east-1:123456789012:" + "t" * 256}
            }
        },
    ),
    ("kinesis", {"StartingPosition": "TRIM_HORIZON"}),
    ("kinesis", {"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": 1.7e9}),
    ("sqs", {"Enabled": False}),
    ("sqs", {"UUID": "abcdef01-2345-6789-abcd-ef0123456789"}),
    ("sqs", {"UUID": "ABCDEF01-2345-6789-ABCD-EF0123456789"}),
    ("sqs", {"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k", "Tags": {"team": "a"}}),
]


@pytest.mark.parametrize(("source", "fields"), VALID_MAPPING_VALUES, ids=repr)
def test_valid_boundary_values_load(source: str, fields: dict[str, Any]) -> None:
    assert mapping_problems(source, **fields) == BASELINE[source]


def test_valid_sqs_boundaries_resolve_to_the_given_values() -> None:
    config = build(doc({**BASES["sqs"], "BatchSize": 10000, "MaximumBatchingWindowInSeconds": 300}))
    (mapping,) = config.mappings
    assert mapping.batch_size == 10000
    assert mapping.batching_window_seconds == 300.0


GE = "Input should be greater than or equal to"
LE = "Input should be less than or equal to"

INVALID_MAPPING_VALUES = [
    # (source, fields, location after "eventSourceMappings[0].", message)
    ("sqs", {"BatchSize": 0}, "BatchSize", f"{GE} 1 (got 0)"),
    ("sqs", {"BatchSize": -1}, "BatchSize", f"{GE} 1 (got -1)"),
    ("sqs", {"BatchSize": 10001}, "BatchSize", f"{LE} 10000 (got 10001)"),
    (
        "sqs",
        {"BatchSize": "ten"},
        "BatchSize",
        "Input should be a valid integer (got 'ten')",
    ),
    (
        "sqs",
        {"BatchSize": 2.5},
        "BatchSize",
        "Input should be a valid integer (got 2.5)",
    ),
    (
        "sqs",
        {"MaximumBatchingWindowInSeconds": -1},
        "MaximumBatchingWindowInSeconds",
        f"{GE} 0 (got -1)",
    ),
    (
        "sqs",
        {"MaximumBatchingWindowInSeconds": 301},
        "MaximumBatchingWindowInSeconds",
        f"{LE} 300 (got 301)",
    ),
    (
        "sqs",
        {"MaximumBatchingWindowInSeconds": 0.5},
        "MaximumBatchingWindowInSeconds",
        "Input should be a valid integer (got 0.5)",
    ),
    ("kinesis", {"ParallelizationFactor": 0}, "ParallelizationFactor", f"{GE} 1 (got 0)"),
    ("kinesis", {"ParallelizationFactor": 11}, "ParallelizationFactor", f"{LE} 10 (got 11)"),
    (
        "kinesis",
        {"MaximumRecordAgeInSeconds": -2},
        "MaximumRecordAgeInSeconds",
        f"{GE} -1 (got -2)",
    ),
    (
        "kinesis",
        {"MaximumRecordAgeInSeconds": 604801},
        "MaximumRecordAgeInSeconds",
        f"{LE} 604800 (got 604801)",
    ),
    ("kinesis", {"MaximumRetryAttempts": -2}, "MaximumRetryAttempts", f"{GE} -1 (got -2)"),
    ("kinesis", {"MaximumRetryAttempts": 10001}, "MaximumRetryAttempts", f"{LE} 10000 (got 10001)"),
    ("kinesis", {"TumblingWindowInSeconds": -1}, "TumblingWindowInSeconds", f"{GE} 0 (got -1)"),
    ("kinesis", {"TumblingWindowInSeconds": 901}, "TumblingWindowInSeconds", f"{LE} 900 (got 901)"),
    (
        "sqs",
        {"ScalingConfig": {"MaximumConcurrency": 1}},
        "ScalingConfig.MaximumConcurrency",
        f"{GE} 2 (got 1)",
    ),
    (
        "sqs",
        {"ScalingConfig": {"MaximumConcurrency": 1001}},
        "ScalingConfig.MaximumConcurrency",
        f"{LE} 1000 (got 1001)",
    ),
    (
        "sqs",
        {"FunctionResponseTypes": ["ReportBatchItemFailures", "ReportBatchItemFailures"]},
        "FunctionResponseTypes",
        "List should have at most 1 item after validation, not 2",
    ),
    (
        "sqs",
        {"FunctionResponseTypes": ["BatchItemFailures"]},
        "FunctionResponseTypes[0]",
        "Input should be 'ReportBatchItemFailures' (got 'BatchItemFailures')",
    ),
    (
        "sqs",
        {"FunctionResponseTypes": ["reportbatchitemfailures"]},
        "FunctionResponseTypes[0]",
        "Input should be 'ReportBatchItemFailures' (got 'reportbatchitemfailures')",
    ),
    (
        "sqs",
        {"FunctionResponseTypes": "ReportBatchItemFailures"},
        "FunctionResponseTypes",
        "Input should be a valid list (got 'ReportBatchItemFailures')",
    ),
    (
        "kafka",
        {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": "u"}] * 24},
        "SourceAccessConfigurations",
        "List should have at most 23 items after validation, not 24",
    ),
    (
        "kafka",
        {"SourceAccessConfigurations": [{"Type": "SASL_PLAIN", "URI": "u"}]},
        "SourceAccessConfigurations[0].Type",
        "Input should be 'BASIC_AUTH', 'VPC_SUBNET', 'VPC_SECURITY_GROUP', 'SASL_SCRAM_512_AUTH', "
        "'SASL_SCRAM_256_AUTH', 'VIRTUAL_HOST', 'CLIENT_CERTIFICATE_TLS_AUTH', "
        "'SERVER_ROOT_CA_CERTIFICATE', 'OAUTHBEARER_AUTH', 'OAUTHBEARER_SCOPE', "
        "'OAUTHBEARER_AUDIENCE', 'OAUTHBEARER_LOGICAL_CLUSTER', 'OAUTHBEARER_IDENTITY_POOL', "
        "'IAM_AUTH' or 'IAM_OAUTHBEARER_AUTH' (got 'SASL_PLAIN')",
    ),
    (
        "kafka",
        {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": ""}]},
        "SourceAccessConfigurations[0].URI",
        "String should have at least 1 character (got '')",
    ),
    (
        "kafka",
        {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH"}]},
        "SourceAccessConfigurations[0].URI",
        "Field required",
    ),
    (
        "kafka",
        {"StartingPosition": "latest"},
        "StartingPosition",
        "Input should be 'TRIM_HORIZON', 'LATEST' or 'AT_TIMESTAMP' (got 'latest')",
    ),
    (
        "kafka",
        {"LoggingConfig": {"SystemLogLevel": "ERROR"}},
        "LoggingConfig.SystemLogLevel",
        "Input should be 'DEBUG', 'INFO' or 'WARN' (got 'ERROR')",
    ),
    (
        "kafka",
        {"SelfManagedKafkaEventSourceConfig": {"ConsumptionMode": "Batch"}},
        "SelfManagedKafkaEventSourceConfig.ConsumptionMode",
        "Input should be 'Stream' or 'Queue' (got 'Batch')",
    ),
    (
        "kafka",
        {"SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": ""}},
        "SelfManagedKafkaEventSourceConfig.ConsumerGroupId",
        "String should have at least 1 character (got '')",
    ),
    (
        "kafka",
        {
            "SelfManagedKafkaEventSourceConfig": {
                "SchemaRegistryConfig": {"EventRecordFormat": "AVRO"}
            }
        },
        "SelfManagedKafkaEventSourceConfig.SchemaRegistryConfig.EventRecordFormat",
        "Input should be 'JSON' or 'SOURCE' (got 'AVRO')",
    ),
    (
        "kafka",
        {"MetricsConfig": {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics", "EventCount"]}},
        "MetricsConfig.Metrics",
        "List should have at most 3 items after validation, not 4",
    ),
    (
        "sqs",
        {"MetricsConfig": {"Metrics": ["Throughput"]}},
        "MetricsConfig.Metrics[0]",
        "Input should be 'EventCount', 'ErrorCount' or 'KafkaMetrics' (got 'Throughput')",
    ),
    (
        "kafka",
        {"ProvisionedPollerConfig": {"MinimumPollers": 0}},
        "ProvisionedPollerConfig.MinimumPollers",
        f"{GE} 1 (got 0)",
    ),
    (
        "kafka",
        {"ProvisionedPollerConfig": {"MinimumPollers": 201}},
        "ProvisionedPollerConfig.MinimumPollers",
        f"{LE} 200 (got 201)",
    ),
    (
        "kafka",
        {"ProvisionedPollerConfig": {"MaximumPollers": 0}},
        "ProvisionedPollerConfig.MaximumPollers",
        f"{GE} 1 (got 0)",
    ),
    (
        "kafka",
        {"ProvisionedPollerConfig": {"MaximumPollers": 10001}},
        "ProvisionedPollerConfig.MaximumPollers",
        f"{LE} 10000 (got 10001)",
    ),
    (
        "kafka",
        {"ProvisionedPollerConfig": {"PollerGroupName": "my group"}},
        "ProvisionedPollerConfig.PollerGroupName",
        "String should match pattern '^[a-zA-Z0-9_-]*$' (got 'my group')",
    ),
    (
        "sqs",
        {"Enabled": "sometimes"},
        "Enabled",
        "Input should be a valid boolean (got 'sometimes')",
    ),
    (
        "kinesis",
        {"BisectBatchOnFunctionError": "perhaps"},
        "BisectBatchOnFunctionError",
        "Input should be a valid boolean (got 'perhaps')",
    ),
    ("sqs", {"Tags": {"team": 7}}, "Tags.team", "Input should be a valid string (got 7)"),
    (
        "sqs",
        {"UUID": "not-a-uuid"},
        "UUID",
        "String should match pattern '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
        "[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' (got 'not-a-uuid')",
    ),
    (
        "sqs",
        {"UUID": "abcdef0123456789abcdef0123456789"},
        "UUID",
        "String should match pattern '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
        "[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' (got 'abcdef0123456789abcdef0123456789')",
    ),
]


@pytest.mark.parametrize(("source", "fields", "where", "message"), INVALID_MAPPING_VALUES, ids=repr)
def test_values_beyond_a_boundary_are_rejected(
    source: str, fields: dict[str, Any], where: str, message: str
) -> None:
    # The field's own problem first, then what the rest of the mapping yields: a bad field
    # must neither hide the other checks nor add follow-on problems.
    assert mapping_problems(source, **fields) == [f"{M0}.{where}: {message}", *BASELINE[source]]


@pytest.mark.parametrize("age", [0, 1, 30, 59])
def test_maximum_record_age_between_0_and_59_is_rejected(age: int) -> None:
    assert mapping_problems("kinesis", MaximumRecordAgeInSeconds=age) == [
        *BASELINE["kinesis"],
        f"{M0}.MaximumRecordAgeInSeconds: must be -1 (infinite) or between 60 and 604800 "
        f"(got {age})",
    ]


def test_filter_pattern_longer_than_4096_characters_is_rejected() -> None:
    problems = mapping_problems(
        "sqs", FilterCriteria={"Filters": [{"Pattern": json_pattern(4097)}]}
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{M0}.FilterCriteria.Filters[0].Pattern: String should have at most 4096 characters (got '"
    )


def test_filter_pattern_is_required_in_a_filter() -> None:
    assert mapping_problems("sqs", FilterCriteria={"Filters": [{}]}) == [
        f"{M0}.FilterCriteria.Filters[0].Pattern: Field required"
    ]


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        ([], "Topics: List should have at least 1 item after validation, not 0"),
        (["orders", "payments"], "Topics: List should have at most 1 item after validation, not 2"),
        (
            [".hidden"],
            "Topics[0]: String should match pattern '^[^.]([a-zA-Z0-9\\-_.]+)$' (got '.hidden')",
        ),
        (["t" * 250], "Topics[0]: String should have at most 249 characters (got 'tttt"),
    ],
    ids=["none", "two", "leading-dot", "too-long"],
)
def test_topics_must_be_exactly_one_valid_topic(topics: list[str], message: str) -> None:
    problems = mapping_problems("kafka", Topics=topics)
    # Only the first line is the field's own; what follows is covered in test_config_rules.
    assert problems[0].startswith(f"{M0}.{message}")


def test_source_access_configuration_uri_longer_than_200_characters_is_rejected() -> None:
    problems = mapping_problems(
        "kafka", SourceAccessConfigurations=[{"Type": "VPC_SUBNET", "URI": "s" * 201}]
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{M0}.SourceAccessConfigurations[0].URI: String should have at most 200 characters "
        "(got 'sss"
    )


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        (["broker"], "[0]: String should match pattern '^[^:\\s]+:\\d{1,5}$' (got 'broker')"),
        (["broker:123456"], "[0]: String should match pattern"),
        ([], ": List should have at least 1 item after validation, not 0"),
        ([f"b{i}:9092" for i in range(11)], ": List should have at most 10 items"),
    ],
    ids=["no-port", "port-too-long", "empty", "eleven"],
)
def test_self_managed_kafka_bootstrap_servers(servers: list[str], message: str) -> None:
    problems = mapping_problems(
        "kafka", SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": servers}}
    )
    assert problems[0].startswith(
        f"{M0}.SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS{message}"
    )


def test_ten_bootstrap_servers_are_allowed() -> None:
    servers = [f"b{i}.example.com:9092" for i in range(10)]
    problems = mapping_problems(
        "kafka", SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": servers}}
    )
    assert problems == BASELINE["kafka"]


@pytest.mark.parametrize(
    ("field", "limit"),
    [("EventSourceArn", 10000), ("KMSKeyArn", 10000)],
)
def test_arn_fields_longer_than_10000_characters_are_rejected(field: str, limit: int) -> None:
    problems = mapping_problems("sqs", **{field: "a" * (limit + 1)})
    # An over-long EventSourceArn is also reported missing: see the xfail in test_config_rules.
    assert problems[0].startswith(
        f"{M0}.{field}: String should have at most {limit} characters (got 'aaa"
    )


def test_on_failure_destination_longer_than_350_characters_is_rejected() -> None:
    problems = mapping_problems(
        "kinesis", DestinationConfig={"OnFailure": {"Destination": "d" * 351}}
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{M0}.DestinationConfig.OnFailure.Destination: String should have at most 350 "
        "characters (got 'ddd"
    )


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (doc({**BASES["sqs"], "BatchSize": True}), f"{M0}.BatchSize"),
        (doc(function={"Timeout": True}), f"{FN}.Timeout"),
    ],
    ids=["BatchSize", "Timeout"],
)
def test_booleans_are_not_integers(raw: dict[str, Any], where: str) -> None:
    problems = problems_of(raw)
    assert [p for p in problems if p.startswith(f"{where}: ")], problems


@pytest.mark.parametrize("field", ["MinimumPollers", "MaximumPollers"])
def test_sqs_provisioned_pollers_start_at_2(field: str) -> None:
    problems = mapping_problems("sqs", ProvisionedPollerConfig={field: 1})
    assert [p for p in problems if p.startswith(f"{M0}.ProvisionedPollerConfig.{field}: ")]


# --------------------------------------------------------------------------------------------
# Unknown fields at every level
# --------------------------------------------------------------------------------------------

UNKNOWN_MAPPING_FIELDS = [
    ("sqs", {"Colour": "blue"}, "Colour"),
    ("sqs", {"batchSize": 10}, "batchSize"),
    ("sqs", {"Batchsize": 10}, "Batchsize"),
    ("sqs", {"ScalingConfig": {"MaximumConcurrency": 2, "Minimum": 1}}, "ScalingConfig.Minimum"),
    ("sqs", {"FilterCriteria": {"Filters": [], "Extra": 1}}, "FilterCriteria.Extra"),
    (
        "sqs",
        {"FilterCriteria": {"Filters": [{"Pattern": "{}", "Extra": 1}]}},
        "FilterCriteria.Filters[0].Extra",
    ),
    (
        "sqs",
        {"FilterCriteria": {"Filters": [{"Pattern": "{}"}, {"pattern": "{}", "Pattern": "{}"}]}},
        "FilterCriteria.Filters[1].pattern",
    ),
    ("sqs", {"MetricsConfig": {"Metrics": [], "Extra": 1}}, "MetricsConfig.Extra"),
    ("sqs", {"ProvisionedPollerConfig": {"Extra": 1}}, "ProvisionedPollerConfig.Extra"),
    ("kinesis", {"DestinationConfig": {"OnError": {}}}, "DestinationConfig.OnError"),
    (
        "kinesis",
        {"DestinationConfig": {"OnFailure": {"Destination": DLQ_ARN, "Type": "sqs"}}},
        "DestinationConfig.OnFailure.Type",
    ),
    ("kafka", {"LoggingConfig": {"Level": "INFO"}}, "LoggingConfig.Level"),
    (
        "kafka",
        {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": "u", "Extra": 1}]},
        "SourceAccessConfigurations[0].Extra",
    ),
    (
        "kafka",
        {"SelfManagedKafkaEventSourceConfig": {"GroupId": "g"}},
        "SelfManagedKafkaEventSourceConfig.GroupId",
    ),
    (
        "kafka",
        {"SelfManagedKafkaEventSourceConfig": {"SchemaRegistryConfig": {"Uri": "x"}}},
        "SelfManagedKafkaEventSourceConfig.SchemaRegistryConfig.Uri",
    ),
    (
        "msk",
        {"AmazonManagedKafkaEventSourceConfig": {"GroupId": "g"}},
        "AmazonManagedKafkaEventSourceConfig.GroupId",
    ),
]


@pytest.mark.parametrize(("source", "fields", "where"), UNKNOWN_MAPPING_FIELDS, ids=repr)
def test_unknown_mapping_fields_are_rejected(
    source: str, fields: dict[str, Any], where: str
) -> None:
    assert mapping_problems(source, **fields) == [f"{M0}.{where}: unknown field", *BASELINE[source]]


def test_unknown_field_in_self_managed_event_source_is_rejected() -> None:
    source = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker:9092"]}, "Extra": 1}
    problems = mapping_problems("kafka", SelfManagedEventSource=source)
    assert problems[0] == f"{M0}.SelfManagedEventSource.Extra: unknown field"


def test_unknown_endpoint_kind_is_rejected() -> None:
    source = {"Endpoints": {"BOOTSTRAP": ["broker:9092"]}}
    problems = mapping_problems("kafka", SelfManagedEventSource=source)
    assert problems[0].startswith(f"{M0}.SelfManagedEventSource.Endpoints.BOOTSTRAP")
    assert problems[0].endswith(": Input should be 'KAFKA_BOOTSTRAP_SERVERS' (got 'BOOTSTRAP')")


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"Runtime": "python3.12"}, "Runtime"),
        ({"timeOut": 3}, "timeOut"),
        ({"Environment": {"Variables": {}, "Secrets": {}}}, "Environment.Secrets"),
    ],
    ids=repr,
)
def test_unknown_function_fields_are_rejected(fields: dict[str, Any], where: str) -> None:
    assert function_problems(**fields) == [f"{FN}.{where}: unknown field"]


def test_unknown_top_level_fields_are_rejected_in_sorted_order() -> None:
    raw = {**doc(), "zones": [], "Functions": {}, "eventSourceMapping": []}
    assert problems_of(raw) == [
        "Functions: unknown field (expected functions, eventSourceMappings)",
        "eventSourceMapping: unknown field (expected functions, eventSourceMappings)",
        "zones: unknown field (expected functions, eventSourceMappings)",
    ]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (
            {
                "functions": {"fn": {"Handler": HANDLER}},
                "eventSourceMappings": [
                    {"FunctionName": "fn", "EventSourceArn": SQS_ARN, "batch_size": 5}
                ],
            },
            f"{M0}.batch_size",
        ),
        ({"functions": {"fn": {"handler": HANDLER}}}, f"{FN}.handler"),
        ({"functions": {"fn": {"Handler": HANDLER, "memory_size": 512}}}, f"{FN}.memory_size"),
        (
            {"functions": {"fn": {"Handler": HANDLER, "Environment": {"variables": {"A": "1"}}}}},
            f"{FN}.Environment.variables",
        ),
    ],
    ids=["batch_size", "handler", "memory_size", "variables"],
)
def test_python_field_names_are_not_accepted_as_keys(raw: dict[str, Any], where: str) -> None:
    assert f"{where}: unknown field" in problems_of(raw)


# --------------------------------------------------------------------------------------------
# Document shape
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}, {"functions": None, "eventSourceMappings": None}])
def test_empty_documents_load(raw: Any) -> None:
    config = build(raw)
    assert config.functions == {}
    assert config.mappings == ()


@pytest.mark.parametrize("raw", [[], "functions", 42])
def test_top_level_must_be_a_mapping(raw: Any) -> None:
    with pytest.raises(ConfigError) as exc_info:
        build(raw)
    assert exc_info.value.problems == [
        "top level must be a mapping with functions and eventSourceMappings"
    ]


def test_functions_must_be_a_mapping_and_mappings_a_list() -> None:
    raw = {"functions": ["fn"], "eventSourceMappings": {"FunctionName": "fn"}}
    assert problems_of(raw) == [
        "functions: must be a mapping of function name to definition",
        "eventSourceMappings: must be a list",
    ]


@pytest.mark.parametrize(
    ("body", "prefix"),
    [
        (
            None,
            f"{FN}: Input should be a valid dictionary or instance of FunctionConfig (got None)",
        ),
        ("handlers.orders.handler", f"{FN}: Input should be a valid dictionary or instance of "),
        ({}, f"{FN}.Handler: Field required"),
        ({"Timeout": 3}, f"{FN}.Handler: Field required"),
    ],
    ids=["null", "string", "empty", "no-handler"],
)
def test_function_body_must_be_a_definition_with_a_handler(body: Any, prefix: str) -> None:
    problems = problems_of({"functions": {"fn": body}})
    assert len(problems) == 1
    assert problems[0].startswith(prefix)


@pytest.mark.parametrize("body", [None, "fn", 3, []])
def test_mapping_must_be_a_definition(body: Any) -> None:
    problems = problems_of({**doc(), "eventSourceMappings": [body]})
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{M0}: Input should be a valid dictionary or instance of EventSourceMappingConfig"
    )


# --------------------------------------------------------------------------------------------
# FunctionConfig
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "attribute", "value"),
    [
        ({"Timeout": 1}, "timeout_seconds", 1),
        ({"Timeout": 900}, "timeout_seconds", 900),
        ({}, "timeout_seconds", 3),
        ({"MemorySize": 128}, "memory_size", 128),
        ({"MemorySize": 10240}, "memory_size", 10240),
        ({}, "memory_size", 128),
        ({"ReservedConcurrentExecutions": 0}, "reserved_concurrency", 0),
        ({}, "reserved_concurrency", None),
        ({"Description": "d" * 256}, "name", "fn"),
        ({"Environment": {"Variables": {"A": "1"}}}, "environment", {"A": "1"}),
        ({"Environment": {}}, "environment", {}),
        ({}, "environment", {}),
    ],
    ids=repr,
)
def test_valid_function_values_load(fields: dict[str, Any], attribute: str, value: Any) -> None:
    config = build(doc(function=fields))
    assert getattr(config.functions["fn"], attribute) == value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Timeout": 0}, f"Timeout: {GE} 1 (got 0)"),
        ({"Timeout": 901}, f"Timeout: {LE} 900 (got 901)"),
        ({"Timeout": "3s"}, "Timeout: Input should be a valid integer"),
        ({"MemorySize": 127}, f"MemorySize: {GE} 128 (got 127)"),
        ({"MemorySize": 10241}, f"MemorySize: {LE} 10240 (got 10241)"),
        ({"ReservedConcurrentExecutions": -1}, f"ReservedConcurrentExecutions: {GE} 0 (got -1)"),
        ({"Description": "d" * 257}, "Description: String should have at most 256 characters"),
        (
            {"Environment": {"Variables": {"A": 1}}},
            "Environment.Variables.A: Input should be a valid string (got 1)",
        ),
        (
            {"Environment": {"Variables": ["A=1"]}},
            "Environment.Variables: Input should be a valid dictionary",
        ),
    ],
    ids=repr,
)
def test_invalid_function_values_are_rejected(fields: dict[str, Any], message: str) -> None:
    problems = function_problems(**fields)
    assert len(problems) == 1
    assert problems[0].startswith(f"{FN}.{message}")


HANDLER_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)+$"


@pytest.mark.parametrize(
    "handler",
    ["a.b", "_m._f", "pkg.sub.module.handler", "A1.B2", "m." + "h" * 254],
)
def test_valid_handler_paths(handler: str) -> None:
    assert len(handler) <= 256
    assert build(doc(function={"Handler": handler})).functions["fn"].handler == handler


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("handler", f"String should match pattern '{HANDLER_PATTERN}' (got 'handler')"),
        ("ab", "String should have at least 3 characters (got 'ab')"),
        ("1mod.fn", f"String should match pattern '{HANDLER_PATTERN}' (got '1mod.fn')"),
        ("mod.my-fn", f"String should match pattern '{HANDLER_PATTERN}' (got 'mod.my-fn')"),
        ("mod..fn", f"String should match pattern '{HANDLER_PATTERN}' (got 'mod..fn')"),
        ("mod.fn.", f"String should match pattern '{HANDLER_PATTERN}' (got 'mod.fn.')"),
        ("dir/mod.fn", f"String should match pattern '{HANDLER_PATTERN}' (got 'dir/mod.fn')"),
        ("m." + "h" * 255, "String should have at most 256 characters (got 'm.hhh"),
        (7, "Input should be a valid string (got 7)"),
    ],
    ids=repr,
)
def test_invalid_handler_paths(handler: Any, message: str) -> None:
    problems = function_problems(Handler=handler)
    assert len(problems) == 1
    assert problems[0].startswith(f"{FN}.Handler: {message}")


# --------------------------------------------------------------------------------------------
# Function names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["f", "orders", "Orders-2_v", "0", "a" * 64])
def test_valid_function_names(name: str) -> None:
    raw = {
        "functions": {name: {"Handler": HANDLER}},
        "eventSourceMappings": [{"FunctionName": name, "EventSourceArn": SQS_ARN}],
    }
    config = build(raw)
    assert list(config.functions) == [name]
    assert config.mappings[0].function.name == name


@pytest.mark.parametrize("name", ["a" * 65, "my.fn", "my fn", "", "fn:prod", "fn$", "é", 123])
def test_invalid_function_names(name: Any) -> None:
    assert problems_of({"functions": {name: {"Handler": HANDLER}}}) == [
        f"functions.{name}: function names are 1-64 letters, digits, '-' or '_'"
    ]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("", "String should have at least 1 character (got '')"),
        ("f" * 257, "String should have at most 256 characters (got 'fff"),
        ("f" * 65, f"not a function name or ARN ('{'f' * 65}')"),
        ("my.fn", "not a function name or ARN ('my.fn')"),
        ("fn/prod", "not a function name or ARN ('fn/prod')"),
        ("fn:", "not a function name or ARN ('fn:')"),
        (
            "arn:aws:lambda:us-east-1:1234:function:fn",
            "not a function name or ARN ('arn:aws:lambda:us-east-1:1234:function:fn')",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:function:fn",
            "not a function name or ARN ('arn:aws:states:us-east-1:123456789012:function:fn')",
        ),
        (42, "Input should be a valid string (got 42)"),
    ],
    ids=repr,
)
def test_invalid_function_name_references(reference: Any, message: str) -> None:
    problems = mapping_problems("sqs", FunctionName=reference)
    assert len(problems) == 1
    assert problems[0].startswith(f"{M0}.FunctionName: {message}")


def test_function_name_is_required_in_a_mapping() -> None:
    assert problems_of({**doc(), "eventSourceMappings": [{"EventSourceArn": SQS_ARN}]}) == [
        f"{M0}.FunctionName: Field required"
    ]


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
    ],
)
def test_function_arns_keep_the_regions_partition(region: str, partition: str) -> None:
    """ARNs (context.invoked_function_arn, failure records) name the region's partition, as
    AWS writes them (recorded ARNs are arn:<partition>:lambda:...)."""
    raw = {
        "functions": {"fn": {"Handler": "handlers.orders.handler"}},
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": f"arn:{partition}:sqs:{region}:123456789012:q"}
        ],
    }
    config = build_config(raw, "t.yaml", Settings(region=region), import_handlers=False)
    fn = config.functions["fn"]
    assert fn.arn == f"arn:{partition}:lambda:{region}:000000000000:function:fn"
    # The source's own ARN is kept as configured.
    assert config.mappings[0].source.arn == f"arn:{partition}:sqs:{region}:123456789012:q"
