"""The YAML model of functions and event source mappings.

Field names, types and ranges are the Lambda API's own (CreateEventSourceMapping and
CreateFunction), so a mapping can be pasted from CloudFormation, SAM or
``aws lambda get-event-source-mapping`` output. Only per-field rules live here; rules that
involve several fields or the kind of event source are in :mod:`runtime.config.rules`, so that
one broken field does not hide the other problems of the same file.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

_STRICT = ConfigDict(extra="forbid", frozen=True)

# YAML says what it means: ``true`` is not a batch size and ``"5"`` is not a number.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]


class _LambdaShape(BaseModel):
    """Base for shapes written in the Lambda API's PascalCase."""

    model_config = _STRICT


class StartingPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class FunctionResponseType(StrEnum):
    REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"


class SourceAccessType(StrEnum):
    BASIC_AUTH = "BASIC_AUTH"
    VPC_SUBNET = "VPC_SUBNET"
    VPC_SECURITY_GROUP = "VPC_SECURITY_GROUP"
    SASL_SCRAM_512_AUTH = "SASL_SCRAM_512_AUTH"
    SASL_SCRAM_256_AUTH = "SASL_SCRAM_256_AUTH"
    VIRTUAL_HOST = "VIRTUAL_HOST"
    CLIENT_CERTIFICATE_TLS_AUTH = "CLIENT_CERTIFICATE_TLS_AUTH"
    SERVER_ROOT_CA_CERTIFICATE = "SERVER_ROOT_CA_CERTIFICATE"
    OAUTHBEARER_AUTH = "OAUTHBEARER_AUTH"
    OAUTHBEARER_SCOPE = "OAUTHBEARER_SCOPE"
    OAUTHBEARER_AUDIENCE = "OAUTHBEARER_AUDIENCE"
    OAUTHBEARER_LOGICAL_CLUSTER = "OAUTHBEARER_LOGICAL_CLUSTER"
    OAUTHBEARER_IDENTITY_POOL = "OAUTHBEARER_IDENTITY_POOL"
    IAM_AUTH = "IAM_AUTH"
    IAM_OAUTHBEARER_AUTH = "IAM_OAUTHBEARER_AUTH"


class Filter(_LambdaShape):
    pattern: Annotated[str, StringConstraints(max_length=4096)] = Field(alias="Pattern")


class FilterCriteria(_LambdaShape):
    filters: list[Filter] = Field(default_factory=list, alias="Filters")


class ScalingConfig(_LambdaShape):
    maximum_concurrency: Annotated[Int, Field(ge=2, le=1000)] | None = Field(
        default=None, alias="MaximumConcurrency"
    )


class ProvisionedPollerConfig(_LambdaShape):
    minimum_pollers: Annotated[Int, Field(ge=1, le=200)] | None = Field(
        default=None, alias="MinimumPollers"
    )
    maximum_pollers: Annotated[Int, Field(ge=1, le=10000)] | None = Field(
        default=None, alias="MaximumPollers"
    )
    poller_group_name: (
        Annotated[str, StringConstraints(max_length=128, pattern=r"^[a-zA-Z0-9_-]*$")] | None
    ) = Field(default=None, alias="PollerGroupName")


class Destination(_LambdaShape):
    destination: Annotated[str, StringConstraints(max_length=350)] | None = Field(
        default=None, alias="Destination"
    )


class DestinationConfig(_LambdaShape):
    on_success: Destination | None = Field(default=None, alias="OnSuccess")
    on_failure: Destination | None = Field(default=None, alias="OnFailure")


class MetricsConfig(_LambdaShape):
    metrics: Annotated[
        list[Literal["EventCount", "ErrorCount", "KafkaMetrics"]], Field(max_length=3)
    ] = Field(default_factory=list, alias="Metrics")


class LoggingConfig(_LambdaShape):
    system_log_level: Literal["DEBUG", "INFO", "WARN"] | None = Field(
        default=None, alias="SystemLogLevel"
    )


class SourceAccessConfiguration(_LambdaShape):
    type: SourceAccessType = Field(alias="Type")
    uri: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(alias="URI")


class SelfManagedEventSource(_LambdaShape):
    endpoints: dict[
        Literal["KAFKA_BOOTSTRAP_SERVERS"],
        Annotated[
            list[
                Annotated[
                    str,
                    StringConstraints(min_length=1, max_length=300, pattern=r"^[^:\s]+:\d{1,5}$"),
                ]
            ],
            Field(min_length=1, max_length=10),
        ],
    ] = Field(alias="Endpoints")


class SchemaRegistryConfig(_LambdaShape):
    schema_registry_uri: str | None = Field(default=None, alias="SchemaRegistryURI")
    event_record_format: Literal["JSON", "SOURCE"] | None = Field(
        default=None, alias="EventRecordFormat"
    )
    access_configs: list[dict[str, str]] | None = Field(default=None, alias="AccessConfigs")
    schema_validation_configs: list[dict[str, str]] | None = Field(
        default=None, alias="SchemaValidationConfigs"
    )


class KafkaEventSourceConfig(_LambdaShape):
    consumer_group_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = (
        Field(default=None, alias="ConsumerGroupId")
    )
    schema_registry_config: SchemaRegistryConfig | None = Field(
        default=None, alias="SchemaRegistryConfig"
    )
    consumption_mode: Literal["Stream", "Queue"] | None = Field(
        default=None, alias="ConsumptionMode"
    )


class EventSourceMappingConfig(_LambdaShape):
    """One event source mapping, as CreateEventSourceMapping takes it.

    ``UUID`` is not a create parameter in Lambda; here it may be given to pin the mapping's
    identity (metrics labels, Kafka consumer group). Without it the UUID is derived from the
    function and the event source so it is stable across restarts and identical in every process.
    """

    function_name: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        alias="FunctionName"
    )
    event_source_arn: Annotated[str, StringConstraints(max_length=10000)] | None = Field(
        default=None, alias="EventSourceArn"
    )
    uuid: (
        Annotated[
            str,
            StringConstraints(
                pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
            ),
        ]
        | None
    ) = Field(default=None, alias="UUID")
    enabled: Bool = Field(default=True, alias="Enabled")
    batch_size: Annotated[Int, Field(ge=1, le=10000)] | None = Field(
        default=None, alias="BatchSize"
    )
    maximum_batching_window_in_seconds: Annotated[Int, Field(ge=0, le=300)] | None = Field(
        default=None, alias="MaximumBatchingWindowInSeconds"
    )
    parallelization_factor: Annotated[Int, Field(ge=1, le=10)] | None = Field(
        default=None, alias="ParallelizationFactor"
    )
    starting_position: StartingPosition | None = Field(default=None, alias="StartingPosition")
    starting_position_timestamp: float | None = Field(
        default=None, alias="StartingPositionTimestamp"
    )
    filter_criteria: FilterCriteria | None = Field(default=None, alias="FilterCriteria")
    kms_key_arn: Annotated[str, StringConstraints(max_length=10000)] | None = Field(
        default=None, alias="KMSKeyArn"
    )
    metrics_config: MetricsConfig | None = Field(default=None, alias="MetricsConfig")
    logging_config: LoggingConfig | None = Field(default=None, alias="LoggingConfig")
    scaling_config: ScalingConfig | None = Field(default=None, alias="ScalingConfig")
    provisioned_poller_config: ProvisionedPollerConfig | None = Field(
        default=None, alias="ProvisionedPollerConfig"
    )
    destination_config: DestinationConfig | None = Field(default=None, alias="DestinationConfig")
    maximum_record_age_in_seconds: Annotated[Int, Field(ge=-1, le=604800)] | None = Field(
        default=None, alias="MaximumRecordAgeInSeconds"
    )
    bisect_batch_on_function_error: Bool | None = Field(
        default=None, alias="BisectBatchOnFunctionError"
    )
    maximum_retry_attempts: Annotated[Int, Field(ge=-1, le=10000)] | None = Field(
        default=None, alias="MaximumRetryAttempts"
    )
    tumbling_window_in_seconds: Annotated[Int, Field(ge=0, le=900)] | None = Field(
        default=None, alias="TumblingWindowInSeconds"
    )
    function_response_types: Annotated[list[FunctionResponseType], Field(max_length=1)] = Field(
        default_factory=list, alias="FunctionResponseTypes"
    )
    topics: (
        Annotated[
            list[
                Annotated[
                    str,
                    StringConstraints(
                        min_length=1, max_length=249, pattern=r"^[^.]([a-zA-Z0-9\-_.]+)$"
                    ),
                ]
            ],
            Field(min_length=1, max_length=1),
        ]
        | None
    ) = Field(default=None, alias="Topics")
    queues: Annotated[list[str], Field(min_length=1, max_length=1)] | None = Field(
        default=None, alias="Queues"
    )
    source_access_configurations: (
        Annotated[list[SourceAccessConfiguration], Field(max_length=23)] | None
    ) = Field(default=None, alias="SourceAccessConfigurations")
    self_managed_event_source: SelfManagedEventSource | None = Field(
        default=None, alias="SelfManagedEventSource"
    )
    self_managed_kafka_event_source_config: KafkaEventSourceConfig | None = Field(
        default=None, alias="SelfManagedKafkaEventSourceConfig"
    )
    amazon_managed_kafka_event_source_config: KafkaEventSourceConfig | None = Field(
        default=None, alias="AmazonManagedKafkaEventSourceConfig"
    )
    document_db_event_source_config: dict[str, Any] | None = Field(
        default=None, alias="DocumentDBEventSourceConfig"
    )
    tags: dict[str, str] | None = Field(default=None, alias="Tags")
    # Runtime extension (not a Lambda field): SQS only. Lambda deletes messages that match no
    # filter; "Keep" makes them visible again after 1 s instead, for other consumers.
    filtered_out_messages: Literal["Delete", "Keep"] | None = Field(
        default=None, alias="FilteredOutMessages"
    )

    @property
    def reports_batch_item_failures(self) -> bool:
        return FunctionResponseType.REPORT_BATCH_ITEM_FAILURES in self.function_response_types


class EnvironmentConfig(_LambdaShape):
    variables: dict[str, str] = Field(default_factory=dict, alias="Variables")


class FunctionConfig(_LambdaShape):
    """A function, with CreateFunction's names for what matters to a self-hosted runtime.

    ``Handler`` is a dotted path ``package.module.function`` (Lambda's ``module.function`` form,
    with the package spelled out). ``MemorySize`` is reported to the handler through the context
    object only; it is not enforced.
    """

    handler: Annotated[
        str,
        StringConstraints(
            min_length=3,
            max_length=256,
            pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
        ),
    ] = Field(alias="Handler")
    timeout: Annotated[Int, Field(ge=1, le=900)] = Field(default=3, alias="Timeout")
    memory_size: Annotated[Int, Field(ge=128, le=10240)] = Field(default=128, alias="MemorySize")
    environment: EnvironmentConfig | None = Field(default=None, alias="Environment")
    reserved_concurrent_executions: Annotated[Int, Field(ge=0, le=100000)] | None = Field(
        default=None, alias="ReservedConcurrentExecutions"
    )
    description: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, alias="Description"
    )
    role: (
        Annotated[str, StringConstraints(pattern=r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/.+$")] | None
    ) = Field(default=None, alias="Role")
    # Runtime extension (not a Lambda field): worker processes of this function per pod.
    workers: Annotated[Int, Field(ge=1, le=256)] | None = Field(default=None, alias="Workers")
