"""Kafka source setup without a broker: MSK listener choice, consumer settings, assignment.

``KafkaSource._on_assign`` runs on the consumer thread in production; here it is called
directly with a fake consumer (``committed``, ``offsets_for_times``, ``incremental_assign``)
and a fake loop that records the ``call_soon_threadsafe`` hand-over to the event loop.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_END, OFFSET_INVALID, Consumer, TopicPartition

from runtime.config.model import EventSourceMappingConfig, SourceAccessType
from runtime.config.resolved import Function, Mapping
from runtime.config.settings import Settings
from runtime.config.sources import self_managed_kafka_source
from runtime.metrics import MappingMetrics
from runtime.sources.base import Assignment, SourceError
from runtime.sources.kafka import KafkaSource
from runtime.sources.kafka_setup import msk_broker_string

T = SourceAccessType
TOPIC = "orders"
BOOTSTRAP = "kafka-1:9092,kafka-2:9092"
AT = 1_700_000_000.5  # StartingPositionTimestamp (seconds)
AT_MS = 1_700_000_000_500

BROKERS = {
    "BootstrapBrokerString": "b-1.plain:9092",
    "BootstrapBrokerStringTls": "b-1.tls:9094",
    "BootstrapBrokerStringSaslScram": "b-1.scram:9096",
    "BootstrapBrokerStringSaslIam": "b-1.iam:9098",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ESM_"):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------ msk_broker_string


@pytest.mark.parametrize("scram", [T.SASL_SCRAM_512_AUTH, T.SASL_SCRAM_256_AUTH])
def test_scram_uses_the_scram_listener(scram: SourceAccessType) -> None:
    assert msk_broker_string(BROKERS, {scram}) == "b-1.scram:9096"
    assert msk_broker_string(BROKERS, {scram, T.VPC_SUBNET}) == "b-1.scram:9096"
    # SCRAM wins over a client certificate.
    assert msk_broker_string(BROKERS, {scram, T.CLIENT_CERTIFICATE_TLS_AUTH}) == "b-1.scram:9096"


def test_scram_without_a_scram_listener_is_refused() -> None:
    response = {k: v for k, v in BROKERS.items() if k != "BootstrapBrokerStringSaslScram"}
    with pytest.raises(SourceError, match="BootstrapBrokerStringSaslScram"):
        msk_broker_string(response, {T.SASL_SCRAM_512_AUTH})


def test_client_certificate_uses_the_tls_listener() -> None:
    assert msk_broker_string(BROKERS, {T.CLIENT_CERTIFICATE_TLS_AUTH}) == "b-1.tls:9094"
    plain_only = {"BootstrapBrokerString": "b-1.plain:9092"}
    with pytest.raises(SourceError, match=r"looked for BootstrapBrokerStringTls\)"):
        msk_broker_string(plain_only, {T.CLIENT_CERTIFICATE_TLS_AUTH})


def test_otherwise_tls_then_plaintext() -> None:
    assert msk_broker_string(BROKERS, set()) == "b-1.tls:9094"
    assert msk_broker_string(BROKERS, {T.VPC_SUBNET, T.VPC_SECURITY_GROUP}) == "b-1.tls:9094"
    plain_only = {"BootstrapBrokerString": "b-1.plain:9092"}
    assert msk_broker_string(plain_only, set()) == "b-1.plain:9092"
    empty_tls = {"BootstrapBrokerStringTls": "", "BootstrapBrokerString": "b-1.plain:9092"}
    assert msk_broker_string(empty_tls, set()) == "b-1.plain:9092"


def test_no_listener_at_all() -> None:
    with pytest.raises(SourceError) as info:
        msk_broker_string({"ResponseMetadata": {}}, set())
    assert str(info.value) == (
        "the MSK cluster offers no listener for this authentication "
        "(looked for BootstrapBrokerStringTls, BootstrapBrokerString)"
    )


# ------------------------------------------------------------------ consumer_config


def make_mapping(**fields: Any) -> Mapping:
    raw = EventSourceMappingConfig.model_validate(
        {
            "FunctionName": "fn",
            "Topics": [TOPIC],
            "SelfManagedEventSource": {
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP.split(",")}
            },
            "BatchSize": 10,
            **fields,
        }
    )
    return Mapping(
        uuid=str(uuid.uuid4()),
        index=0,
        function=Function(
            name="fn",
            handler="h.handler",
            timeout_seconds=3,
            memory_size=128,
            environment={},
            reserved_concurrency=None,
            region="us-east-1",
            account="123456789012",
        ),
        source=self_managed_kafka_source(BOOTSTRAP.split(","), TOPIC),
        enabled=True,
        batch_size=10,
        batching_window_seconds=0.5,
        maximum_concurrency=None,
        report_batch_item_failures=False,
        filter_patterns=(),
        raw=raw,
    )


SECURITY = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "alice",
    "sasl.password": "pw",
}


def make_source(security: dict[str, str] | None = None, **fields: Any) -> KafkaSource:
    m = make_mapping(**fields)
    return KafkaSource(
        m,
        Settings(),
        MappingMetrics.bind("fn", m.uuid),
        bootstrap_servers=BOOTSTRAP,
        topic=TOPIC,
        group_id="my-group",
        security=dict(SECURITY if security is None else security),
        client_id="esm-test-w0",
    )


@pytest.mark.parametrize(
    ("position", "reset"),
    [
        ({"StartingPosition": "TRIM_HORIZON"}, "earliest"),
        ({"StartingPosition": "LATEST"}, "latest"),
        ({"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": AT}, "earliest"),
        ({}, "earliest"),
    ],
)
def test_consumer_config(position: dict[str, Any], reset: str) -> None:
    conf = make_source(**position).consumer_config()
    assert conf["bootstrap.servers"] == BOOTSTRAP
    assert conf["group.id"] == "my-group"
    assert conf["client.id"] == "esm-test-w0"
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["auto.offset.reset"] == reset
    assert conf["session.timeout.ms"] == 10000
    assert conf["heartbeat.interval.ms"] == 3333
    assert conf["max.poll.interval.ms"] == 300_000
    assert conf["fetch.wait.max.ms"] == 100
    for key, value in SECURITY.items():
        assert conf[key] == value


def test_consumer_config_extras_from_the_environment_apply_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ESM_KAFKA_CONSUMER_CONFIG",
        '{"security.protocol": "SSL", "session.timeout.ms": 45000, "fetch.min.bytes": 1024,'
        ' "group.id": "override", "auto.offset.reset": "none"}',
    )
    conf = make_source(StartingPosition="LATEST").consumer_config()
    assert conf["security.protocol"] == "SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["session.timeout.ms"] == 45000
    assert conf["heartbeat.interval.ms"] == 3333  # derived from the setting, not the extra
    assert conf["fetch.min.bytes"] == 1024
    assert conf["group.id"] == "override"
    assert conf["auto.offset.reset"] == "none"


def test_consumer_config_is_accepted_by_librdkafka() -> None:
    conf = make_source(security={}, StartingPosition="LATEST").consumer_config()
    conf["bootstrap.servers"] = "127.0.0.1:1"
    consumer = Consumer(conf, logger=None)
    consumer.close()


# ------------------------------------------------------------------ _on_assign


class FakeConsumer:
    def __init__(self, committed: dict[int, int], found: dict[int, int]) -> None:
        self._committed = committed
        self._found = found
        self.committed_calls: list[tuple[list[tuple[str, int]], Any]] = []
        self.time_queries: list[list[tuple[str, int, int]]] = []
        self.assigned: list[tuple[str, int, int]] | None = None

    def committed(self, partitions: list[TopicPartition], timeout: Any = None) -> list:
        self.committed_calls.append(([(p.topic, p.partition) for p in partitions], timeout))
        return [
            TopicPartition(p.topic, p.partition, self._committed.get(p.partition, OFFSET_INVALID))
            for p in partitions
        ]

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: Any = None) -> list:
        self.time_queries.append([(p.topic, p.partition, p.offset) for p in partitions])
        return [
            TopicPartition(p.topic, p.partition, self._found.get(p.partition, -1))
            for p in partitions
        ]

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        assert self.assigned is None, "assigned twice"
        self.assigned = [(p.topic, p.partition, p.offset) for p in partitions]
        self.resumed: list[tuple[str, int]] = []

    def resume(self, partitions: list[TopicPartition]) -> None:
        assert self.assigned is not None, "resumed before the assignment"
        self.resumed.extend((p.topic, p.partition) for p in partitions)


class RecordingSink:
    def __init__(self) -> None:
        self.assignments: list[Assignment] = []

    def assigned(self, units: list[Assignment]) -> None:
        self.assignments.extend(units)


class FakeLoop:
    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self.calls.append((callback, args))


def _assign(source: KafkaSource, consumer: FakeConsumer, partitions: list[int]) -> FakeLoop:
    loop = FakeLoop()
    source._loop = loop  # type: ignore[assignment]
    source._sink = RecordingSink()  # type: ignore[assignment]
    source._on_assign(consumer, [TopicPartition(TOPIC, p) for p in partitions])
    # librdkafka keeps an application pause across unassign/assign: every assigned
    # partition is resumed explicitly.
    assert consumer.resumed == [(TOPIC, p) for p in partitions]
    return loop


def _handed_over(source: KafkaSource, loop: FakeLoop) -> list[tuple[str, int, int]]:
    """(topic, partition, committed offset) of each assignment the core was told about."""
    assert len(loop.calls) == 1
    callback, args = loop.calls[0]
    sink = source._sink
    assert isinstance(sink, RecordingSink) and callback == sink.assigned
    callback(*args)  # what the event loop would run
    out = []
    for a in sink.assignments:
        topic, _, part = str(a.unit).rpartition("-")
        out.append((topic, int(part), a.confirmed + 1 if a.confirmed is not None else -1001))
    return out


def test_at_timestamp_starts_uncommitted_partitions_at_the_timestamp() -> None:
    source = make_source(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=AT)
    consumer = FakeConsumer(committed={0: 42}, found={1: 17})
    loop = _assign(source, consumer, [0, 1, 2])

    assert consumer.committed_calls == [([(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)], 15)]
    assert consumer.time_queries == [[(TOPIC, 1, AT_MS), (TOPIC, 2, AT_MS)]]
    assert consumer.assigned is not None
    by_partition = {p: off for _, p, off in consumer.assigned}
    assert by_partition[1] == 17  # the first offset at or after the timestamp
    assert by_partition[2] == OFFSET_END  # no record at or after it: start at the end
    # A committed offset wins over StartingPosition: partition 0 is not moved.
    assert by_partition[0] in (OFFSET_INVALID, 42)
    assert [p for _, p, _ in consumer.assigned] == [0, 1, 2]

    info = _handed_over(source, loop)
    assert info == [(TOPIC, 0, 42), (TOPIC, 1, OFFSET_INVALID), (TOPIC, 2, OFFSET_INVALID)]
    sink = source._sink
    assert isinstance(sink, RecordingSink)
    assert [a.unit for a in sink.assignments] == [f"{TOPIC}-0", f"{TOPIC}-1", f"{TOPIC}-2"]
    assert len({a.token for a in sink.assignments}) == 3  # a new epoch per assignment


def test_at_timestamp_with_every_partition_committed_queries_nothing() -> None:
    source = make_source(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=AT)
    consumer = FakeConsumer(committed={0: 5, 1: 0}, found={0: 1, 1: 1})
    loop = _assign(source, consumer, [0, 1])
    assert consumer.time_queries == []
    assert consumer.assigned is not None
    offsets = [off for _, _, off in consumer.assigned]
    assert offsets in ([OFFSET_INVALID, OFFSET_INVALID], [5, 0])  # the committed offsets
    assert _handed_over(source, loop) == [(TOPIC, 0, 5), (TOPIC, 1, 0)]


@pytest.mark.parametrize("position", ["TRIM_HORIZON", "LATEST"])
def test_trim_horizon_and_latest_leave_offsets_to_auto_offset_reset(position: str) -> None:
    source = make_source(StartingPosition=position)
    consumer = FakeConsumer(committed={1: 9}, found={0: 3, 1: 3})
    loop = _assign(source, consumer, [0, 1])
    assert consumer.time_queries == []
    assert consumer.assigned == [(TOPIC, 0, OFFSET_INVALID), (TOPIC, 1, OFFSET_INVALID)]
    assert _handed_over(source, loop) == [(TOPIC, 0, OFFSET_INVALID), (TOPIC, 1, 9)]
    assert source.consumer_config()["auto.offset.reset"] == (
        "latest" if position == "LATEST" else "earliest"
    )
