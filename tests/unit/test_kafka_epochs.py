"""Kafka assignment epochs: work of a revoked partition never moves a commit."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from runtime.config.loader import build_config
from runtime.config.settings import Settings
from runtime.metrics import MappingMetrics
from runtime.pipeline.records import Record
from runtime.sources.kafka import KafkaSource
from runtime.sources.kafka_records import kafka_record, partition_key


class Sink:
    def __init__(self) -> None:
        self.accepted: list[Record] = []
        self.revoked: list[set[Hashable]] = []

    def accept(self, records: list[Record]) -> None:
        self.accepted.extend(records)

    async def revoke(self, lanes: set[Hashable], wait_seconds: float) -> None:
        self.revoked.append(lanes)


def source() -> tuple[KafkaSource, Sink]:
    cfg = build_config(
        {
            "functions": {"fn": {"Handler": "handlers.orders.handler"}},
            "eventSourceMappings": [
                {
                    "FunctionName": "fn",
                    "SelfManagedEventSource": {
                        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:1"]}
                    },
                    "Topics": ["tt"],  # (AWS needs 2+ characters; the source uses "t")
                }
            ],
        },
        "test.yaml",
        Settings(),
        import_handlers=False,
    )
    m = cfg.mappings[0]
    src = KafkaSource(
        m,
        Settings(),
        MappingMetrics.bind("fn", m.uuid),
        bootstrap_servers="127.0.0.1:1",
        topic="t",
        group_id="g",
        security={},
    )
    sink = Sink()
    src._sink = sink
    return src, sink


def records(part: int, offsets: range) -> list[Record]:
    lane = partition_key("t", part)
    return [
        Record(
            kafka_record("t", part, o, (1, 0), None, b"v", None),
            10,
            (lane, o),
            None,
            lane,
        )
        for o in offsets
    ]


def test_completion_from_a_revoked_assignment_is_ignored() -> None:
    src, sink = source()
    requests: list[Any] = []
    src._request = requests.append  # type: ignore[method-assign]

    async def scenario() -> None:
        src._assigned([("t", 0, -1001)])
        first = records(0, range(0, 3))
        src._deliver(first)
        assert [r.ack for r in sink.accepted] == [("t-0", o, 1) for o in range(3)]
        # Revoked with nothing completed: nothing to commit.
        assert await src._revoked({"t-0"}, 0) == []
        assert sink.revoked == [{"t-0"}]
        # Assigned again (a new epoch) and the same offsets fetched again; then the old batch
        # completes late. It must not complete the new epoch's (unprocessed) records.
        src._assigned([("t", 0, -1001)])
        second = records(0, range(0, 3))
        src._deliver(second)
        assert second[0].ack == ("t-0", 0, 2)
        await src.complete(first, [])
        assert src._partitions["t-0"].tracker.last_complete is None
        assert src._commit_positions() == []
        # The new epoch's own completions do count.
        await src.complete(second, [])
        [tp] = src._commit_positions()
        assert (tp.topic, tp.partition, tp.offset) == ("t", 0, 3)

    asyncio.run(scenario())


def test_records_of_partitions_not_owned_are_not_delivered() -> None:
    src, sink = source()
    src._assigned([("t", 1, -1001)])
    src._deliver(records(0, range(2)) + records(1, range(2)))
    assert [r.lane for r in sink.accepted] == ["t-1", "t-1"]


def test_commit_moves_only_over_the_completed_prefix() -> None:
    src, _ = source()

    async def scenario() -> None:
        src._assigned([("t", 0, 5)])
        batch = records(0, range(5, 10))
        src._deliver(batch)
        await src.complete([batch[0], batch[1], batch[3]], [])
        [tp] = src._commit_positions()
        assert tp.offset == 7  # 5 and 6 done; 7 is not, so 8 waits
        await src.complete([batch[2]], [])
        [tp] = src._commit_positions()
        assert tp.offset == 9

    asyncio.run(scenario())


def test_a_slow_partition_is_paused_alone_and_resumed() -> None:
    src, _ = source()
    requests: list[Any] = []
    src._request = requests.append  # type: ignore[method-assign]
    src._pause_at, src._resume_at = 10, 5

    async def scenario() -> None:
        src._assigned([("t", 0, -1001), ("t", 1, -1001)])
        slow = records(0, range(12))
        src._deliver(slow + records(1, range(3)))
        assert src._partitions["t-0"].paused and not src._partitions["t-1"].paused
        assert len(requests) == 1  # one pause request, for partition 0 only
        await src.complete(slow[:6], [])
        assert src._partitions["t-0"].paused  # 6 still pending: above the resume mark
        await src.complete(slow[6:8], [])
        assert not src._partitions["t-0"].paused
        assert len(requests) == 2  # and one resume

    asyncio.run(scenario())


def test_consumer_settings_are_logged_without_secrets() -> None:
    import structlog

    from runtime.sources.base import SourceError

    src, sink = source()
    src._security = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "svc",
        "sasl.password": "s3cr3t-pw",
    }

    async def no_broker() -> None:
        raise SourceError("no broker in this test")

    src._check_topic = no_broker  # type: ignore[method-assign]

    async def scenario() -> None:
        try:
            await src.start(sink)
        except SourceError:
            pass
        finally:
            src._consumer.close()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    [entry] = [e for e in logs if e["event"] == "kafka consumer"]
    assert entry["settings"]["sasl.username"] == "svc"
    assert entry["settings"]["sasl.password"] != "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(logs)
