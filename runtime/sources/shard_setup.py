"""Building a shard source for a Kinesis or DynamoDB Streams mapping: its broker calls, its
record shapes, and its lease store (SQLite or DynamoDB, per ``ESM_LEASE_STORE``)."""

from __future__ import annotations

from typing import Any

from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.leases.store import LeaseStore
from runtime.metrics import MappingMetrics
from runtime.sources.aws import AwsClients
from runtime.sources.shard_apis import DynamoDbStreamsApi, KinesisApi, KinesisFanOutApi, ShardApi
from runtime.sources.shards import ShardSource
from runtime.sources.stream_records import StreamShape, dynamodb_shape, kinesis_shape


def stream_arn(m: Mapping) -> str:
    """The stream a mapping reads (an enhanced fan-out consumer ARN names its stream)."""
    arn = m.source.arn or ""
    return arn.split("/consumer/")[0]


def shard_api(m: Mapping, clients: AwsClients, settings: Settings) -> tuple[ShardApi, StreamShape]:
    arn = stream_arn(m)
    region = m.source.region
    if m.source.kind is SourceKind.KINESIS:
        common: dict[str, Any] = {
            "stream_arn": arn,
            "stream_name": m.source.name,
            "region": region,
            "aws_region": region or settings.region,
            "invoke_identity_arn": m.function.role_arn,
        }
        api: ShardApi
        if "/consumer/" in (m.source.arn or ""):
            api = KinesisFanOutApi(clients, consumer_arn=m.source.arn or "", **common)
        else:
            api = KinesisApi(clients, **common)
        return api, kinesis_shape(arn)
    return DynamoDbStreamsApi(clients, stream_arn=arn, region=region), dynamodb_shape(arn)


def lease_store(m: Mapping, clients: AwsClients, settings: Settings) -> LeaseStore:
    if settings.lease_store == "dynamodb":
        from runtime.leases.dynamodb_store import DynamoDbLeaseStore

        return DynamoDbLeaseStore(
            clients, settings.lease_table, m.uuid, settings.lease_region or settings.region
        )
    from runtime.leases.sqlite_store import SqliteLeaseStore

    return SqliteLeaseStore(settings.data_dir, m.uuid)


def make_shard_source(
    m: Mapping,
    clients: AwsClients,
    settings: Settings,
    metrics: MappingMetrics,
    owner: str,
) -> ShardSource:
    api, shape = shard_api(m, clients, settings)
    return ShardSource(
        m,
        metrics,
        api,
        shape,
        lease_store(m, clients, settings),
        owner=owner,
        failover_seconds=settings.lease_failover_seconds,
        poll_seconds=settings.stream_poll_interval_seconds or api.default_poll_seconds,
        sync_seconds=settings.shard_sync_seconds,
        unreachable_after_seconds=settings.source_unreachable_after_seconds,
    )
