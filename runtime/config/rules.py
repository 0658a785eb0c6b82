"""Rules that involve several fields of a mapping, or the kind of its event source.

Each rule appends human-readable problems instead of raising, so that ``validate`` lists every
problem of a file at once. Messages reuse Lambda's own wording where AWS has one (recorded in
the conformance snapshots), prefixed with the field they are about.
"""

from __future__ import annotations

import time

from runtime.config.model import EventSourceMappingConfig, StartingPosition
from runtime.config.sources import (
    SQS_FIFO_MAX_BATCH_SIZE,
    TRAITS,
    EventSource,
    SourceKind,
    UnrecognizedEventSource,
    parse_event_source_arn,
    self_managed_kafka_source,
)
from runtime.destinations.targets import parse_destination
from runtime.pipeline.filtering import check_patterns
from runtime.sources.kafka_auth import access_problems

DEFAULT_MAX_FILTERS = 5


def resolve_source(
    m: EventSourceMappingConfig, invalid: set[str], problems: list[str]
) -> EventSource | None:
    """The mapping's event source, or None with the reason in ``problems``.

    ``invalid`` holds the fields that failed validation: they have their own problem
    already, so they are not reported missing as well.
    """
    if m.event_source_arn and m.self_managed_event_source:
        problems.append(
            "EventSourceArn: give either EventSourceArn or SelfManagedEventSource, not both"
        )
        return None
    if "SelfManagedEventSource" in invalid:
        return None  # given but invalid: already reported
    if m.self_managed_event_source is not None:
        servers = m.self_managed_event_source.endpoints.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            problems.append("SelfManagedEventSource.Endpoints: KAFKA_BOOTSTRAP_SERVERS is required")
            return None
        if not m.topics:
            if "Topics" not in invalid:
                problems.append("Topics: required for a Kafka event source (exactly one topic)")
            return None
        return self_managed_kafka_source(servers, m.topics[0])
    if not m.event_source_arn:
        if "EventSourceArn" not in invalid:
            problems.append("EventSourceArn: required (or SelfManagedEventSource for Kafka)")
        return None
    try:
        source = parse_event_source_arn(m.event_source_arn)
    except UnrecognizedEventSource as exc:
        problems.append(f"EventSourceArn: {exc} ({m.event_source_arn!r})")
        return None
    if source.region is None:
        problems.append(f"EventSourceArn: the ARN names no region ({m.event_source_arn!r})")
        return None
    return source


def check_mapping(
    m: EventSourceMappingConfig,
    source: EventSource,
    given: set[str],
    problems: list[str],
    *,
    invalid: frozenset[str] | set[str] = frozenset(),
    max_filters: int = DEFAULT_MAX_FILTERS,
) -> None:
    """Apply every cross-field rule of esm-spec §1.2 that concerns ``m``.

    ``given`` holds the API field names the user wrote; ``invalid`` those among them that
    failed validation (not to be reported missing again).
    """
    traits = TRAITS[source.kind]

    known = {f.alias for f in EventSourceMappingConfig.model_fields.values() if f.alias}
    for name in sorted((given & known) - traits.fields):
        problems.append(
            f"{name}: Unsupported {name} parameter for given event source mapping type."
        )

    batch_size = m.batch_size if m.batch_size is not None else traits.default_batch_size
    window = (
        float(m.maximum_batching_window_in_seconds)
        if m.maximum_batching_window_in_seconds is not None
        else traits.default_window_seconds
    )
    if source.kind is SourceKind.SQS and source.fifo:
        if batch_size > SQS_FIFO_MAX_BATCH_SIZE:
            problems.append(
                f"BatchSize: must be at most {SQS_FIFO_MAX_BATCH_SIZE} for FIFO queues "
                f"(got {batch_size})"
            )
        if m.maximum_batching_window_in_seconds:
            problems.append(
                "MaximumBatchingWindowInSeconds: batching window is not supported for FIFO queues"
            )
    elif traits.window_required_above_10 and batch_size > 10 and window < 1:
        problems.append(
            "MaximumBatchingWindowInSeconds: Maximum batch window in seconds must be greater "
            "than 0 if maximum batch size is greater than 10"
        )

    age = m.maximum_record_age_in_seconds
    if age is not None and 0 <= age < 60:
        problems.append(
            f"MaximumRecordAgeInSeconds: must be -1 (infinite) or between 60 and 604800 (got {age})"
        )

    scaling_set = m.scaling_config is not None and m.scaling_config.maximum_concurrency is not None
    if scaling_set and m.provisioned_poller_config is not None:
        problems.append(
            "ScalingConfig: cannot be combined with ProvisionedPollerConfig on the same mapping"
        )
    _check_pollers(m, source, problems)

    if m.metrics_config is not None and source.kind not in (SourceKind.KAFKA, SourceKind.MSK):
        for metric in m.metrics_config.metrics:
            if metric != "EventCount":
                problems.append(
                    f"MetricsConfig.Metrics: {metric} is only available for Kafka event sources"
                )

    dest = m.destination_config
    if dest is not None and dest.on_success is not None and dest.on_success.destination:
        problems.append(
            "DestinationConfig.OnSuccess: Unsupported OnSuccess parameter for event source "
            "mappings (only OnFailure is supported)"
        )

    _check_starting_position(m, source, invalid, problems)
    _check_filters(m, source, problems, max_filters)
    _check_destination(m, problems)
    if source.kind in (SourceKind.KAFKA, SourceKind.MSK):
        _check_kafka(m, source, problems)


def _check_pollers(m: EventSourceMappingConfig, source: EventSource, problems: list[str]) -> None:
    ppc = m.provisioned_poller_config
    if ppc is None:
        return
    lowest = 2 if source.kind is SourceKind.SQS else 1
    for name, value in (
        ("MinimumPollers", ppc.minimum_pollers),
        ("MaximumPollers", ppc.maximum_pollers),
    ):
        if value is not None and value < lowest:
            problems.append(
                f"ProvisionedPollerConfig.{name}: must be at least {lowest} for this source "
                f"(got {value})"
            )
    if (
        ppc.minimum_pollers is not None
        and ppc.maximum_pollers is not None
        and ppc.minimum_pollers > ppc.maximum_pollers
    ):
        problems.append(
            "ProvisionedPollerConfig: MinimumPollers must not be greater than MaximumPollers"
        )


def _check_starting_position(
    m: EventSourceMappingConfig,
    source: EventSource,
    invalid: frozenset[str] | set[str],
    problems: list[str],
) -> None:
    if (
        source.kind in (SourceKind.KINESIS, SourceKind.DYNAMODB)
        and m.starting_position is None
        and "StartingPosition" not in invalid
    ):
        problems.append(
            "StartingPosition: 1 validation error detected: Value null at 'startingPosition' "
            "failed to satisfy constraint: Member must not be null."
        )
    if m.starting_position is StartingPosition.AT_TIMESTAMP:
        if source.kind is SourceKind.DYNAMODB:
            problems.append(
                f"StartingPosition: Unsupported starting position for arn type: {source.arn}"
            )
        if m.starting_position_timestamp is None:
            problems.append("StartingPositionTimestamp: required with AT_TIMESTAMP")
        elif m.starting_position_timestamp > time.time():
            problems.append("StartingPositionTimestamp: cannot be in the future")
    elif m.starting_position_timestamp is not None:
        problems.append("StartingPositionTimestamp: only valid with StartingPosition AT_TIMESTAMP")


def _check_destination(m: EventSourceMappingConfig, problems: list[str]) -> None:
    dest = m.destination_config
    if dest is None or dest.on_failure is None or not dest.on_failure.destination:
        return
    try:
        parse_destination(dest.on_failure.destination)
    except ValueError as exc:
        problems.append(f"DestinationConfig.OnFailure.Destination: {exc}")


def _check_kafka(m: EventSourceMappingConfig, source: EventSource, problems: list[str]) -> None:
    problems.extend(access_problems(m.source_access_configurations or []))
    cfg = (
        m.self_managed_kafka_event_source_config
        if source.kind is SourceKind.KAFKA
        else m.amazon_managed_kafka_event_source_config
    )
    name = (
        "SelfManagedKafkaEventSourceConfig"
        if source.kind is SourceKind.KAFKA
        else "AmazonManagedKafkaEventSourceConfig"
    )
    if cfg is not None and cfg.consumption_mode == "Queue":
        problems.append(
            f"{name}.ConsumptionMode: Queue (Kafka share groups) is not supported; use Stream"
        )
    if cfg is not None and cfg.schema_registry_config is not None:
        problems.append(
            f"{name}.SchemaRegistryConfig: schema registries are not supported by this runtime"
        )
    if source.kind is SourceKind.MSK and not m.topics:
        problems.append("Topics: required for a Kafka event source (exactly one topic)")


def _check_filters(
    m: EventSourceMappingConfig, source: EventSource, problems: list[str], max_filters: int
) -> None:
    if m.filter_criteria is None:
        return
    filters = m.filter_criteria.filters
    if len(filters) > max_filters:
        problems.append(
            f"FilterCriteria.Filters: at most {max_filters} filters are allowed "
            f"(got {len(filters)}; ESM_MAX_FILTERS raises the limit up to 10)"
        )
    problems.extend(check_patterns(source.kind, [f.pattern for f in filters]))
