"""Process-level settings, read from ``ESM_*`` environment variables.

Everything here is about how the runtime runs (ports, processes, ramps), never about what a
mapping means: mapping semantics stay in the YAML with Lambda's names. docs/configuration.md
lists every setting; keep the two in step.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESM_", extra="ignore", frozen=True)

    # AWS access. Region and credentials come from the standard AWS chain
    # (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, web identity, instance role...).
    aws_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint override for every AWS client (emulators such as ministack). "
        "botocore's own AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> also work.",
    )

    account_id: str = Field(
        default="000000000000",
        pattern=r"^\d{12}$",
        description="Account id used in function ARNs (context.invoked_function_arn) and "
        "failure records.",
    )
    region: str = Field(
        default_factory=lambda: (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        ),
        description="Region of function ARNs; defaults to AWS_REGION / AWS_DEFAULT_REGION.",
    )

    # Processes.
    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Worker processes per function (a function's Workers field wins). Unset: "
        "the usable cores shared out over the functions, at least one each.",
    )
    drain_timeout_seconds: float = Field(default=30.0, ge=0, le=3600)
    worker_restart_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    worker_restart_backoff_max_seconds: float = Field(default=30.0, ge=0, le=600)
    worker_memory_limit_mb: int | None = Field(
        default=None,
        ge=32,
        le=1_048_576,
        description="A worker whose resident memory passes this many MiB finishes its "
        "in-flight batches and is replaced by a fresh process (a leaking handler). Unset: no "
        "limit but the container's.",
    )
    worker_gc_threshold: int = Field(
        default=50_000,
        ge=0,
        le=10_000_000,
        description="The worker's first-generation garbage collection threshold (Python's "
        "default: 700). A worker holds tens of thousands of fetched records; at 700 the "
        "collector walks them so often that it costs as much as building them (measured: "
        "2.1 -> 1.2 us per Kafka record). Objects alive at start-up (modules, config) are "
        "frozen out of collections. 0 keeps Python's default.",
    )
    source_unreachable_after_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="A running mapping whose every fetch has failed for this long is "
        "reported unreachable (esm_event_source_unreachable 1, one error line) until a fetch "
        "succeeds again; shorter outages are retried fetches only.",
    )
    source_retry_seconds: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="First wait before retrying a mapping whose event source did not answer "
        "(connection refused, timed out, server error); it doubles after each failure.",
    )
    source_retry_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest wait between retries of an unreachable event source.",
    )
    worker_stall_timeout_seconds: float = Field(
        default=60.0,
        ge=1,
        description="A worker whose event loop makes no progress for this long beyond its "
        "function's timeout is killed and restarted (an async handler blocking the loop).",
    )

    # HTTP endpoints (/metrics, /healthz, /readyz).
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)

    # The mapping API (Lambda's event source mapping operations), off unless credentials
    # are configured.
    api_host: str = "0.0.0.0"
    api_port: int = Field(
        default=9001, ge=0, le=65535, description="Port of the mapping API (its own)."
    )
    api_credentials: dict[str, str] = Field(
        default_factory=dict,
        description="Access keys accepted by the mapping API: a JSON object of access key id "
        "to secret access key. Setting any key (here or in ESM_API_CREDENTIALS_FILE) turns the "
        "API on.",
    )
    api_credentials_file: str | None = Field(
        default=None,
        description="A file with more API keys, in the same JSON form (a mounted Secret).",
    )
    mapping_store: Literal["sqlite", "dynamodb"] | None = Field(
        default=None,
        description="Where mappings created through the API live. Unset: as ESM_LEASE_STORE "
        "(the SQLite file mappings.sqlite3 in ESM_DATA_DIR, or a DynamoDB table).",
    )
    mapping_table: str = Field(
        default="esm-runtime-mappings",
        pattern=r"^[a-zA-Z0-9_.-]{3,255}$",
        description="DynamoDB table of API-created mappings (created if missing).",
    )
    mapping_sync_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="How often each pod reads the mapping store to converge on its mappings "
        "(changes made through a pod's own API apply at once).",
    )

    # Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Concurrency scaling (per mapping; split across worker processes).
    scaling_initial_concurrency: int = Field(default=5, ge=1, le=1000)
    scaling_step: int = Field(default=10, ge=1, le=1000)
    scaling_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    scaling_error_cooldown_seconds: float = Field(default=5.0, ge=0, le=600)
    default_maximum_concurrency: int = Field(
        default=1000,
        ge=1,
        le=10000,
        description="Ceiling for mappings without ScalingConfig.MaximumConcurrency.",
    )

    # Filtering.
    max_filters: int = Field(
        default=5,
        ge=1,
        le=10,
        description="Most FilterCriteria filters per mapping (Lambda: 5, 10 on request).",
    )

    # Kafka.
    kafka_session_timeout_ms: int = Field(
        default=10000,
        ge=1000,
        le=300000,
        description="Consumer group session timeout; a dead worker's partitions move after it.",
    )
    kafka_fetch_wait_max_ms: int = Field(
        default=100,
        ge=0,
        le=10000,
        description="librdkafka fetch.wait.max.ms: lower means lower latency on quiet topics.",
    )
    kafka_commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)

    # Kinesis and DynamoDB Streams: shard leases.
    pod_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=200,
        description="This pod's name in lease owners (default: the host name, which is the "
        "pod name on Kubernetes).",
    )
    lease_store: Literal["sqlite", "dynamodb"] = Field(
        default="sqlite",
        description="Where shard leases and checkpoints live: an SQLite file in ESM_DATA_DIR "
        "(one pod) or the DynamoDB table ESM_LEASE_TABLE (shared by many pods).",
    )
    data_dir: str = Field(
        default="esm-data",
        min_length=1,
        description="Directory of the SQLite lease store (a volume in the container).",
    )
    lease_table: str = Field(
        default="esm-runtime-leases",
        pattern=r"^[a-zA-Z0-9_.-]{3,255}$",
        description="DynamoDB lease table (created if missing, on-demand capacity).",
    )
    lease_region: str | None = Field(
        default=None, description="Region of the lease table (default: the runtime's region)."
    )
    lease_failover_seconds: float = Field(
        default=10.0,
        ge=1.5,
        le=600,
        description="A lease not renewed for this long may be taken by another worker; owners "
        "renew every third of it. Also how long a dead pod's shards wait.",
    )
    shard_sync_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often shards are listed to find new ones (also at once when a shard "
        "ends).",
    )
    stream_poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="Wait before reading an idle shard again. Unset: Lambda's base rates, 1 s "
        "for Kinesis, 0.25 s for DynamoDB Streams.",
    )
    stream_checkpoint_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    blocked_unit_warning_seconds: float = Field(
        default=300.0,
        ge=0,
        le=604800,
        description="Report (log line, esm_unit_blocked_seconds) a partition or shard held by "
        "one failing batch for longer than this; 0 turns it off.",
    )

    # Ordered sources (Kafka, Kinesis, DynamoDB): per-unit flow control.
    unit_buffer_records: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Records a work unit (partition, shard) may hold fetched and not yet "
        "completed before it is paused; resumed at half. Unset: max(10 x BatchSize, 10000) "
        "(a Kafka pause drops what librdkafka fetched ahead, so a low bound makes the broker "
        "send the same records again and again).",
    )
    unit_buffer_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Bytes (of Lambda-format records) a work unit may hold before it is paused.",
    )
    kafka_tls: bool | None = Field(
        default=None,
        description="Whether the Kafka brokers use TLS. Unset: TLS when SASL or certificates "
        "are configured (Lambda's behaviour), plaintext otherwise.",
    )
    kafka_consumer_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra librdkafka consumer settings (JSON object), applied last.",
    )

    # Retries in place (Kafka, Kinesis, DynamoDB).
    retry_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    retry_backoff_max_seconds: float = Field(default=30.0, ge=0, le=3600)

    # SQS.
    sqs_wait_time_seconds: int = Field(default=20, ge=0, le=20)
    sqs_extend_visibility: bool = True
