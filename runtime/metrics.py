"""Prometheus metrics that mirror CloudWatch's AWS/Lambda names, plus runtime health.

All processes write to prometheus-client's multiprocess files; the supervisor's ``/metrics``
merges them. ``PROMETHEUS_MULTIPROC_DIR`` must therefore be set before this module is first
imported (the CLI does it). docs/metrics.md is the table of CloudWatch name → Prometheus name;
keep it in step with this file.

Hot paths use :class:`MappingMetrics`, which binds the label values once per mapping, so that an
increment is one method call and no label lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_FN = ("function_name", "event_source_mapping_uuid")

INVOCATIONS = Counter("lambda_invocations", "Invocations (CloudWatch Invocations).", _FN)
ERRORS = Counter("lambda_errors", "Invocations that ended in a function error or timeout.", _FN)
THROTTLES = Counter(
    "lambda_throttles",
    "Invocations that waited for function concurrency (ReservedConcurrentExecutions).",
    _FN,
)
DURATION = Histogram(
    "lambda_duration_seconds",
    "Handler run time per invocation (CloudWatch Duration).",
    _FN,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
CONCURRENT_EXECUTIONS = Gauge(
    "lambda_concurrent_executions",
    "Handler invocations running now (CloudWatch ConcurrentExecutions).",
    _FN,
    multiprocess_mode="livesum",
)
POLLED_EVENTS = Counter("lambda_polled_events", "Records read from the source.", _FN)
FILTERED_OUT_EVENTS = Counter(
    "lambda_filtered_out_events", "Records that matched no filter of FilterCriteria.", _FN
)
INVOKED_EVENTS = Counter(
    "lambda_invoked_events", "Records the function was invoked with (retries count again).", _FN
)
FAILED_INVOKE_EVENTS = Counter(
    "lambda_failed_invoke_events",
    "Records of failed invocations, including items reported in batchItemFailures.",
    _FN,
)
DELETED_EVENTS = Counter(
    "lambda_deleted_events", "SQS messages deleted after successful processing.", _FN
)
COMMITTED_EVENTS = Counter(
    "lambda_committed_events",
    "Records the checkpoint moved past (Kafka: sum of committed-offset advances).",
    _FN,
)
DROPPED_EVENTS = Counter(
    "lambda_dropped_events",
    "Records given up (retries exhausted, too old, too big) without an on-failure destination.",
    _FN,
)
ONFAILURE_DELIVERED_EVENTS = Counter(
    "lambda_on_failure_destination_delivered_events",
    "Records sent to the on-failure destination.",
    _FN,
)
DESTINATION_DELIVERY_FAILURES = Counter(
    "lambda_destination_delivery_failures",
    "Failed attempts to write to the on-failure destination (retried; the lane waits).",
    _FN,
)
OFFSET_LAG = Gauge(
    "lambda_offset_lag",
    "Kafka: high watermark minus committed offset, per partition (CloudWatch OffsetLag).",
    (*_FN, "topic", "partition"),
    multiprocess_mode="livesum",
)
ITERATOR_AGE = Gauge(
    "lambda_iterator_age_milliseconds",
    "Kinesis, DynamoDB Streams: age of the oldest record read and not yet checkpointed, else "
    "how far the shard's reader is behind its tip, per shard (CloudWatch IteratorAge).",
    (*_FN, "shard"),
    multiprocess_mode="livemax",
)
UNIT_BLOCKED = Gauge(
    "esm_unit_blocked_seconds",
    "Seconds a work unit (partition, shard) has been held by one failing batch (retrying), "
    "0 when none; see ESM_BLOCKED_UNIT_WARNING_SECONDS.",
    (*_FN, "unit"),
    multiprocess_mode="livemax",
)

BATCH_SIZE = Histogram(
    "esm_batch_records",
    "Records per invoked batch.",
    _FN,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
BATCH_BYTES = Histogram(
    "esm_batch_payload_bytes",
    "JSON payload size of invoked batches.",
    _FN,
    buckets=(1024, 16384, 131072, 524288, 1048576, 2097152, 4194304, 6291456),
)
INFLIGHT_BATCHES = Gauge(
    "esm_inflight_batches",
    "Batches being invoked or acknowledged now.",
    _FN,
    multiprocess_mode="livesum",
)
CONCURRENCY_LIMIT = Gauge(
    "esm_concurrency_limit",
    "Current concurrent-batch limit of the mapping (scaled between initial and maximum).",
    _FN,
    multiprocess_mode="livesum",
)
ACK_FAILURES = Counter(
    "esm_ack_failures",
    "Records whose acknowledgement (SQS delete) failed; they will be delivered again.",
    _FN,
)
VISIBILITY_EXTENSIONS = Counter(
    "esm_visibility_extensions",
    "SQS messages whose visibility was extended while their batch was held or running.",
    _FN,
)
POLLING_ERRORS = Counter(
    "esm_polling_errors", "Failed fetches from the event source (retried with backoff).", _FN
)
CHECKPOINT_FAILURES = Counter(
    "esm_checkpoint_failures",
    "Checkpoints (Kafka commits, shard lease checkpoints) the source did not confirm; they "
    "are written again later.",
    _FN,
)
OWNED_UNITS = Gauge(
    "esm_owned_units",
    "Work units (Kafka partitions, shards) this mapping's workers own now.",
    _FN,
    multiprocess_mode="livesum",
)
BATCH_CRASHES = Counter(
    "esm_batch_crashes",
    "Batches during which the runtime itself failed (a bug): SQS messages return to the "
    "queue; for ordered sources the worker restarts from the last checkpoint.",
    _FN,
)
RETRIES = Counter(
    "esm_retried_events",
    "Records retried in place after a failed invocation (Kafka and stream sources).",
    _FN,
)

WORKER_RESTARTS = Counter(
    "esm_worker_restarts",
    "Worker processes restarted by the supervisor.",
    ("function_name", "reason"),
)
WORKERS_ALIVE = Gauge(
    "esm_workers_alive",
    "Worker processes running now.",
    ("function_name",),
    multiprocess_mode="livemax",
)
SOURCE_UNREACHABLE = Gauge(
    "esm_event_source_unreachable",
    "1 while a mapping's event source does not answer (its workers retry with back-off and "
    "the mapping stays enabled), else 0.",
    _FN,
    multiprocess_mode="livemax",
)
WORKER_SHARE = Gauge(
    "esm_worker_mapping_share",
    "What the supervisor gave each worker of a mapping: its most concurrent batches (SQS "
    "pollers and batches; for Kafka, a consumer group member with this many lanes at once).",
    (*_FN, "worker"),
    multiprocess_mode="livemax",
)


@dataclass(frozen=True, slots=True)
class MappingMetrics:
    """Every per-mapping series, with labels bound once."""

    invocations: Counter
    errors: Counter
    throttles: Counter
    duration: Histogram
    concurrent: Gauge
    polled: Counter
    filtered_out: Counter
    invoked: Counter
    failed_invoke: Counter
    deleted: Counter
    committed: Counter
    dropped: Counter
    onfailure_delivered: Counter
    destination_delivery_failures: Counter
    retries: Counter
    checkpoint_failures: Counter
    owned_units: Gauge
    batch_crashes: Counter
    batch_size: Histogram
    batch_bytes: Histogram
    inflight: Gauge
    concurrency_limit: Gauge
    ack_failures: Counter
    visibility_extensions: Counter
    polling_errors: Counter
    source_unreachable: Gauge

    @classmethod
    def bind(cls, function_name: str, mapping_uuid: str) -> MappingMetrics:
        labels = (function_name, mapping_uuid)
        return cls(
            invocations=INVOCATIONS.labels(*labels),
            errors=ERRORS.labels(*labels),
            throttles=THROTTLES.labels(*labels),
            duration=DURATION.labels(*labels),
            concurrent=CONCURRENT_EXECUTIONS.labels(*labels),
            polled=POLLED_EVENTS.labels(*labels),
            filtered_out=FILTERED_OUT_EVENTS.labels(*labels),
            invoked=INVOKED_EVENTS.labels(*labels),
            failed_invoke=FAILED_INVOKE_EVENTS.labels(*labels),
            deleted=DELETED_EVENTS.labels(*labels),
            committed=COMMITTED_EVENTS.labels(*labels),
            dropped=DROPPED_EVENTS.labels(*labels),
            onfailure_delivered=ONFAILURE_DELIVERED_EVENTS.labels(*labels),
            destination_delivery_failures=DESTINATION_DELIVERY_FAILURES.labels(*labels),
            retries=RETRIES.labels(*labels),
            checkpoint_failures=CHECKPOINT_FAILURES.labels(*labels),
            owned_units=OWNED_UNITS.labels(*labels),
            batch_crashes=BATCH_CRASHES.labels(*labels),
            batch_size=BATCH_SIZE.labels(*labels),
            batch_bytes=BATCH_BYTES.labels(*labels),
            inflight=INFLIGHT_BATCHES.labels(*labels),
            concurrency_limit=CONCURRENCY_LIMIT.labels(*labels),
            ack_failures=ACK_FAILURES.labels(*labels),
            visibility_extensions=VISIBILITY_EXTENSIONS.labels(*labels),
            polling_errors=POLLING_ERRORS.labels(*labels),
            source_unreachable=SOURCE_UNREACHABLE.labels(*labels),
        )

    def touch(self, *extra: Counter) -> None:
        """Create the source's series at 0, as Lambda emits 0 rather than nothing."""
        for c in (self.polled, self.filtered_out, self.invoked, self.failed_invoke, *extra):
            c.inc(0)
