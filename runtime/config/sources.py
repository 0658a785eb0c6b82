"""What kind of event source a mapping points at, and the per-source data the pipeline uses.

Sources differ in data, not in code paths: default batch size and window, the largest batch,
whether a batch above 10 needs a window, and which API fields apply. Everything that varies by
source and is not broker code belongs in :data:`TRAITS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class SourceKind(StrEnum):
    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    KAFKA = "kafka"  # self-managed Apache Kafka
    MSK = "msk"  # Amazon MSK


@dataclass(frozen=True, slots=True)
class EventSource:
    """A parsed event source: the ARN's parts, or the Kafka bootstrap servers and topic."""

    kind: SourceKind
    arn: str | None
    partition: str
    region: str | None
    account: str | None
    name: str
    fifo: bool = False

    @property
    def identity(self) -> str:
        """A stable string that names the source (used to derive mapping UUIDs)."""
        return self.arn if self.arn is not None else f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class SourceTraits:
    default_batch_size: int
    default_window_seconds: float
    # "BatchSize > 10 needs a window >= 1": enforced by Lambda for SQS only. The docs also name
    # streams, but Lambda's own stream defaults (BatchSize 100, window 0) and recorded create
    # outputs (BatchSize 500, window 0) show it does not apply there.
    window_required_above_10: bool
    # API fields (PascalCase) that Lambda accepts for this source, beyond the common ones.
    fields: frozenset[str]


_COMMON_FIELDS = frozenset(
    {
        "FunctionName",
        "EventSourceArn",
        "UUID",
        "Enabled",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "FilterCriteria",
        "KMSKeyArn",
        "MetricsConfig",
        "FunctionResponseTypes",
        "Tags",
    }
)
_STREAM_FIELDS = frozenset(
    {
        "ParallelizationFactor",
        "StartingPosition",
        "StartingPositionTimestamp",
        "DestinationConfig",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "MaximumRetryAttempts",
        "TumblingWindowInSeconds",
    }
)
_KAFKA_FIELDS = frozenset(
    {
        "StartingPosition",
        "StartingPositionTimestamp",
        "DestinationConfig",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "MaximumRetryAttempts",
        "Topics",
        "SourceAccessConfigurations",
        "ProvisionedPollerConfig",
        "LoggingConfig",
    }
)

TRAITS: dict[SourceKind, SourceTraits] = {
    SourceKind.SQS: SourceTraits(
        default_batch_size=10,
        default_window_seconds=0.0,
        window_required_above_10=True,
        fields=_COMMON_FIELDS | {"ScalingConfig", "ProvisionedPollerConfig", "FilteredOutMessages"},
    ),
    SourceKind.KINESIS: SourceTraits(
        default_batch_size=100,
        default_window_seconds=0.0,
        window_required_above_10=False,
        fields=_COMMON_FIELDS | _STREAM_FIELDS,
    ),
    SourceKind.DYNAMODB: SourceTraits(
        default_batch_size=100,
        default_window_seconds=0.0,
        window_required_above_10=False,
        fields=_COMMON_FIELDS | _STREAM_FIELDS,
    ),
    SourceKind.KAFKA: SourceTraits(
        default_batch_size=100,
        default_window_seconds=0.5,
        window_required_above_10=False,
        fields=_COMMON_FIELDS
        | _KAFKA_FIELDS
        | {"SelfManagedEventSource", "SelfManagedKafkaEventSourceConfig"},
    ),
    SourceKind.MSK: SourceTraits(
        default_batch_size=100,
        default_window_seconds=0.5,
        window_required_above_10=False,
        fields=_COMMON_FIELDS | _KAFKA_FIELDS | {"AmazonManagedKafkaEventSourceConfig"},
    ),
}


SQS_FIFO_MAX_BATCH_SIZE = 10

# Standard queues: up to 80 characters; FIFO: up to 75 before the ".fifo" suffix.
_SQS_QUEUE_NAME = r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo"
_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z-]*):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):"
    r"(?P<account>\d{12}|):(?P<resource>.+)$"
)


class UnrecognizedEventSource(ValueError):
    """Raised with Lambda's own message for an ARN it does not know."""

    def __init__(self) -> None:
        super().__init__("Unrecognized event source.")


def parse_event_source_arn(arn: str) -> EventSource:
    """Parse an SQS, Kinesis, DynamoDB Streams or MSK ARN."""
    m = _ARN.match(arn)
    if m is None:
        raise UnrecognizedEventSource()
    service, resource = m["service"], m["resource"]
    kind: SourceKind
    if service == "sqs" and re.fullmatch(
        r"[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo", resource
    ):
        kind, name = SourceKind.SQS, resource
    elif service == "kinesis" and resource.startswith("stream/"):
        kind, name = SourceKind.KINESIS, resource.split("/")[1]
    elif service == "dynamodb" and re.fullmatch(r"table/[^/]+/stream/.+", resource):
        kind, name = SourceKind.DYNAMODB, resource.split("/")[1]
    elif service == "kafka" and resource.startswith(("cluster/", "vpc-connection/")):
        kind, name = SourceKind.MSK, resource.split("/")[1]
    else:
        raise UnrecognizedEventSource()
    return EventSource(
        kind=kind,
        arn=arn,
        partition=m["partition"],
        region=m["region"] or None,
        account=m["account"] or None,
        name=name,
        fifo=kind is SourceKind.SQS and name.endswith(".fifo"),
    )


def self_managed_kafka_source(bootstrap_servers: list[str], topic: str) -> EventSource:
    return EventSource(
        kind=SourceKind.KAFKA,
        arn=None,
        partition="aws",
        region=None,
        account=None,
        name=f"{','.join(bootstrap_servers)}/{topic}",
    )
