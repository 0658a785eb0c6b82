"""Building a Kafka source from a mapping: brokers, topic, group, security, secrets.

Self-managed Kafka names its brokers in ``SelfManagedEventSource``; for Amazon MSK they come
from the cluster (``kafka:GetBootstrapBrokers``), picking the listener that matches the
mapping's authentication (SASL/SCRAM, TLS, or plaintext) as Lambda does. Secrets are resolved
once, at start (see :mod:`runtime.sources.kafka_secrets` for the URI schemes).
"""

from __future__ import annotations

from typing import Any

from runtime.config.model import SourceAccessType
from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.config.sources import SourceKind
from runtime.metrics import MappingMetrics
from runtime.sources.aws import AwsClients, is_unreachable
from runtime.sources.base import SourceError, SourceUnreachable
from runtime.sources.kafka import KafkaSource
from runtime.sources.kafka_auth import librdkafka_security, secret_uris
from runtime.sources.kafka_secrets import resolve_secrets


def msk_broker_string(response: dict[str, Any], access: set[SourceAccessType]) -> str:
    """The bootstrap string of GetBootstrapBrokers that fits the mapping's authentication."""
    if access & {SourceAccessType.SASL_SCRAM_512_AUTH, SourceAccessType.SASL_SCRAM_256_AUTH}:
        keys = ["BootstrapBrokerStringSaslScram"]
    elif SourceAccessType.CLIENT_CERTIFICATE_TLS_AUTH in access:
        keys = ["BootstrapBrokerStringTls"]
    else:
        keys = ["BootstrapBrokerStringTls", "BootstrapBrokerString"]
    for key in keys:
        if response.get(key):
            return str(response[key])
    raise SourceError(
        f"the MSK cluster offers no listener for this authentication (looked for {', '.join(keys)})"
    )


async def make_kafka_source(
    m: Mapping, clients: AwsClients, settings: Settings, metrics: MappingMetrics, index: int
) -> KafkaSource:
    raw = m.raw
    access = list(raw.source_access_configurations or [])
    if m.source.kind is SourceKind.KAFKA:
        assert raw.self_managed_event_source is not None
        servers = raw.self_managed_event_source.endpoints["KAFKA_BOOTSTRAP_SERVERS"]
        bootstrap = ",".join(servers)
        kafka_cfg = raw.self_managed_kafka_event_source_config
        arn = None
    else:
        arn = m.source.arn
        client = await clients.client("kafka", m.source.region)
        try:
            response = await client.get_bootstrap_brokers(ClusterArn=arn)
        except Exception as exc:
            kind = SourceUnreachable if is_unreachable(exc) else SourceError
            raise kind(f"cannot get the brokers of MSK cluster {arn}: {exc}") from exc
        bootstrap = msk_broker_string(response, {a.type for a in access})
        kafka_cfg = raw.amazon_managed_kafka_event_source_config
    assert raw.topics
    secrets = await resolve_secrets(secret_uris(access), clients)
    security = librdkafka_security(access, secrets, settings.kafka_tls)
    group = (kafka_cfg.consumer_group_id if kafka_cfg else None) or m.uuid
    return KafkaSource(
        m,
        settings,
        metrics,
        bootstrap_servers=bootstrap,
        topic=raw.topics[0],
        group_id=group,
        security=security,
        event_source_arn=arn,
        client_id=f"esm-{m.uuid[:8]}-w{index}",
    )
