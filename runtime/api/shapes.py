"""``EventSourceMappingConfiguration``: what the mapping API answers for a mapping, field for
field as Lambda does (esm-spec §1.3, and the AWS-recorded API snapshot).

Which fields appear depends on the source, as recorded: SQS mappings show the batching fields
and ``FunctionResponseTypes``; Kinesis and DynamoDB mappings add the stream fields with their
defaults spelled out (``MaximumRetryAttempts: -1``, ``ParallelizationFactor: 1``,
``DestinationConfig: {"OnFailure": {}}`` when none is set...) and ``LastProcessingResult``;
self-managed Kafka mappings show ``Topics``, ``SelfManagedEventSource``, the consumer group
(the UUID by default) and ``SourceAccessConfigurations``. ``StateTransitionReason`` is
``USER_INITIATED`` for SQS and Kafka and ``User action`` for streams, as AWS writes them.
``Enabled``, ``FunctionName`` and ``Tags`` are never echoed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.config.loader import function_qualifier_of
from runtime.config.resolved import Mapping, partition_of
from runtime.config.sources import SourceKind

NO_RECORDS = "No records processed"
STATES = ("Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting")


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # one of STATES
    last_modified: float  # epoch seconds
    last_processing_result: str = NO_RECORDS
    reason: str | None = None  # None: the source's usual wording of a user's change


def mapping_arn(m: Mapping) -> str:
    f = m.function
    return (
        f"arn:{partition_of(f.region)}:lambda:{f.region}:{f.account}:event-source-mapping:{m.uuid}"
    )


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True) if model is not None else None


def configuration(m: Mapping, status: Status) -> dict[str, Any]:
    raw = m.raw
    kind = m.source.kind
    streams = kind in (SourceKind.KINESIS, SourceKind.DYNAMODB)
    kafka = kind in (SourceKind.KAFKA, SourceKind.MSK)
    out: dict[str, Any] = {"UUID": m.uuid, "BatchSize": m.batch_size}
    if not kafka:
        out["MaximumBatchingWindowInSeconds"] = int(m.batching_window_seconds)
    elif raw.maximum_batching_window_in_seconds is not None:
        out["MaximumBatchingWindowInSeconds"] = raw.maximum_batching_window_in_seconds
    if streams:
        out["ParallelizationFactor"] = raw.parallelization_factor or 1
    if m.source.arn is not None:
        out["EventSourceArn"] = m.source.arn
    if raw.filter_criteria is not None and raw.filter_criteria.filters:
        out["FilterCriteria"] = _dump(raw.filter_criteria)
    qualifier = function_qualifier_of(raw.function_name)
    out["FunctionArn"] = f"{m.function.arn}:{qualifier}" if qualifier else m.function.arn
    out["LastModified"] = status.last_modified
    if streams or kafka:
        out["LastProcessingResult"] = status.last_processing_result
    out["State"] = status.state
    out["StateTransitionReason"] = status.reason or ("User action" if streams else "USER_INITIATED")
    if raw.starting_position is not None or kafka:
        out["StartingPosition"] = (
            raw.starting_position.value if raw.starting_position else "TRIM_HORIZON"
        )
    if raw.starting_position_timestamp is not None:
        out["StartingPositionTimestamp"] = raw.starting_position_timestamp
    if streams:
        out["DestinationConfig"] = _dump(raw.destination_config) or {"OnFailure": {}}
        out["MaximumRecordAgeInSeconds"] = (
            raw.maximum_record_age_in_seconds
            if raw.maximum_record_age_in_seconds is not None
            else -1
        )
        out["BisectBatchOnFunctionError"] = bool(raw.bisect_batch_on_function_error)
        out["MaximumRetryAttempts"] = (
            raw.maximum_retry_attempts if raw.maximum_retry_attempts is not None else -1
        )
        out["TumblingWindowInSeconds"] = raw.tumbling_window_in_seconds or 0
    elif kafka and raw.destination_config is not None:
        out["DestinationConfig"] = _dump(raw.destination_config)
    if kafka:
        out["Topics"] = list(raw.topics or [])
        if raw.self_managed_event_source is not None:
            out["SelfManagedEventSource"] = _dump(raw.self_managed_event_source)
        group_config = (
            raw.self_managed_kafka_event_source_config
            if kind is SourceKind.KAFKA
            else raw.amazon_managed_kafka_event_source_config
        )
        group = _dump(group_config) or {}
        group.setdefault("ConsumerGroupId", m.uuid)
        key = (
            "SelfManagedKafkaEventSourceConfig"
            if kind is SourceKind.KAFKA
            else "AmazonManagedKafkaEventSourceConfig"
        )
        out[key] = group
        out["SourceAccessConfigurations"] = [
            _dump(s) for s in raw.source_access_configurations or []
        ]
    else:
        out["FunctionResponseTypes"] = [t.value for t in raw.function_response_types]
    if raw.scaling_config is not None and raw.scaling_config.maximum_concurrency is not None:
        out["ScalingConfig"] = _dump(raw.scaling_config)
    if raw.metrics_config is not None:
        out["MetricsConfig"] = _dump(raw.metrics_config)
    if kind is not SourceKind.KAFKA:  # not recorded for self-managed Kafka
        out["EventSourceMappingArn"] = mapping_arn(m)
    return out
