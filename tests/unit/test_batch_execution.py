"""BatchExecution driven in-process: fake source, scripted invoker, fake destination.

Records are real Kafka-shaped records (runtime.sources.kafka_records), so events, batch infos
and on-failure records are the ones a Kafka mapping would produce; the fake source records
what was acknowledged, in order, and the fake destination records what it was sent.
"""

from __future__ import annotations

import asyncio
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

import runtime.pipeline.failure as failure_module
from runtime.config.model import EventSourceMappingConfig
from runtime.config.resolved import Function, Mapping
from runtime.config.sources import self_managed_kafka_source
from runtime.destinations.record import invocation_record
from runtime.invoke.invoker import FunctionError, InvocationResult
from runtime.metrics import MappingMetrics
from runtime.pipeline.execution import BatchExecution, event_size
from runtime.pipeline.failure import RetryPolicy
from runtime.pipeline.records import MAX_PAYLOAD_BYTES, Batch, Record
from runtime.sources.kafka_records import (
    kafka_batch_info,
    kafka_event,
    kafka_identifier,
    kafka_record,
    record_size,
)

FN = "fn"
REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FN}"
BOOTSTRAP = "broker-1:9092"
TOPIC = "mytopic"
LANE = f"{TOPIC}-0"
ERROR = object()  # script outcome: the handler raised

Id = tuple[str, int]


# ------------------------------------------------------------------ fakes


def make_record(
    offset: int, lane: str = LANE, ts_ms: int | None = None, value: bytes = b"v", laned: bool = True
) -> Record:
    topic, part = lane.rsplit("-", 1)
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    payload = kafka_record(topic, int(part), offset, (1, ts), b"k", value, [])
    return Record(
        payload=payload,
        size=record_size(topic, b"k", value, []),
        item_id=(lane, offset),
        ack=(lane, offset),
        lane=lane if laned else None,
        timestamp_ms=float(ts),
        unit=lane,
        token=1,
    )


class FakeSource:
    """The event shape of a Kafka source, and the acknowledger (ownership + completions)."""

    parse_identifier = staticmethod(kafka_identifier)

    def __init__(
        self, handed_off: Callable[[], bool] = lambda: False, metrics: MappingMetrics | None = None
    ) -> None:
        self.acked: list[Id] = []
        self.complete_calls: list[tuple[list[Id], list[Id]]] = []
        self.waits: list[float] = []
        self.handed_off = handed_off
        self.metrics = metrics

    def may_start(self, records: list[Record]) -> bool:
        return not self.handed_off()

    async def wait(self, records: list[Record], seconds: float) -> bool:
        self.waits.append(seconds)
        return not self.handed_off()

    async def settle(self, succeeded: list[Record], failed: list[Record]) -> None:
        await self.complete(succeeded, failed)
        if self.metrics is not None:
            self.metrics.committed.inc(len(succeeded))

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return kafka_event(
            [r.payload for r in records], bootstrap_servers=BOOTSTRAP, event_source_arn=None
        )

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        self.complete_calls.append(([r.item_id for r in succeeded], [r.item_id for r in failed]))
        self.acked.extend(r.item_id for r in succeeded)
        return len(succeeded)

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        return "KafkaBatchInfo", kafka_batch_info(
            [r.payload for r in records],
            payload_size=payload_size,
            bootstrap_servers=BOOTSTRAP,
            event_source_arn=None,
        )


Script = Callable[[int, list[Id]], Any]


class FakeInvoker:
    """Calls ``script(call_index, ids_in_event)``: ERROR, or the handler's response."""

    def __init__(self, script: Script, on_call: Callable[[], None] | None = None) -> None:
        self.script = script
        self.on_call = on_call
        self.calls: list[list[Id]] = []
        self.events: list[dict[str, Any]] = []

    async def invoke(
        self,
        event: dict[str, Any],
        metrics: MappingMetrics,
        start_if: Callable[[], bool] | None = None,
    ) -> InvocationResult | None:
        if start_if is not None and not start_if():
            return None
        ids = [(k, r["offset"]) for k, recs in event["records"].items() for r in recs]
        n = len(self.calls)
        self.calls.append(ids)
        self.events.append(event)
        if self.on_call is not None:
            self.on_call()
        outcome = self.script(n, ids)
        if outcome is ERROR:
            return InvocationResult(f"req-{n}", None, FunctionError("ValueError", "boom"), 0.001)
        return InvocationResult(f"req-{n}", outcome, None, 0.001)


def ok(_: int, __: list[Id]) -> Any:
    return None


def raise_on(*poison: Id) -> Script:
    return lambda _, ids: ERROR if set(ids) & set(poison) else None


def report(*bad: Id) -> Script:
    """A partial batch response naming the ``bad`` records present in the event."""

    def script(_: int, ids: list[Id]) -> Any:
        failures = [
            {"itemIdentifier": {"partition": p, "offset": o}} for p, o in bad if (p, o) in ids
        ]
        return {"batchItemFailures": failures}

    return script


class FakeDestination:
    def __init__(self, source: FakeSource, fail_first: int = 0) -> None:
        self.source = source
        self.fail_first = fail_first
        self.sends: list[dict[str, Any]] = []

    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None:
        self.sends.append(
            {
                "record": record,
                "event": event,
                "mapping_uuid": mapping_uuid,
                "unit": unit,
                "acked_before": list(self.source.acked),
            }
        )
        if len(self.sends) <= self.fail_first:
            raise RuntimeError("destination unavailable")

    @property
    def records(self) -> list[dict[str, Any]]:
        return [s["record"] for s in self.sends]


def make_mapping(report_batch_item_failures: bool) -> Mapping:
    raw = EventSourceMappingConfig.model_validate(
        {
            "FunctionName": FN,
            "Topics": [TOPIC],
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [BOOTSTRAP]}},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "FunctionResponseTypes": (
                ["ReportBatchItemFailures"] if report_batch_item_failures else []
            ),
        }
    )
    return Mapping(
        uuid=str(uuid.uuid4()),
        index=0,
        function=Function(
            name=FN,
            handler="handlers.h.handler",
            timeout_seconds=3,
            memory_size=128,
            environment={},
            reserved_concurrency=None,
            region=REGION,
            account=ACCOUNT,
        ),
        source=self_managed_kafka_source([BOOTSTRAP], TOPIC),
        enabled=True,
        batch_size=100,
        batching_window_seconds=0.5,
        maximum_concurrency=None,
        report_batch_item_failures=report_batch_item_failures,
        filter_patterns=(),
        raw=raw,
    )


class Harness:
    def __init__(
        self,
        script: Script,
        *,
        policy: RetryPolicy | None,
        report: bool = False,
        destination: bool = True,
        destination_failures: int = 0,  # the destination fails its first calls
        handed_off: Callable[[], bool] = lambda: False,
        on_call: Callable[[], None] | None = None,
    ) -> None:
        self.mapping = make_mapping(report)
        self.metrics = MappingMetrics.bind(FN, self.mapping.uuid)
        self.source = FakeSource(handed_off, self.metrics)
        self.invoker = FakeInvoker(script, on_call)
        self.function_errors = 0
        self.destination = (
            FakeDestination(self.source, fail_first=destination_failures) if destination else None
        )
        self.execution = BatchExecution(
            self.mapping,
            self.source,
            self.invoker,  # type: ignore[arg-type]
            self.metrics,
            self.source,
            retry=policy,
            failure_shape=self.source,
            destination=self.destination,
            record_builder=invocation_record if self.destination is not None else None,
            on_function_error=self._on_function_error,
        )

    def _on_function_error(self) -> None:
        self.function_errors += 1

    def run(self, records: list[Record]) -> None:
        batch = Batch(records, payload_bytes=sum(r.size for r in records))
        asyncio.run(self.execution.run(batch))

    def metric(self, name: str) -> float:
        labels = {"function_name": FN, "event_source_mapping_uuid": self.mapping.uuid}
        v = REGISTRY.get_sample_value(f"{name}_total", labels)
        return 0.0 if v is None else v

    @property
    def calls(self) -> list[list[int]]:
        return [[o for _, o in c] for c in self.invoker.calls]


def ids(*offsets: int, lane: str = LANE) -> list[Id]:
    return [(lane, o) for o in offsets]


def assert_acked_once_in_order(acked: list[Id], records: list[Record]) -> None:
    assert len(acked) == len(set(acked)), f"acked twice: {acked}"
    assert set(acked) == {r.item_id for r in records}
    for lane in {lane for lane, _ in acked}:
        offsets = [o for ln, o in acked if ln == lane]
        assert offsets == sorted(offsets), f"lane {lane} acked out of order: {offsets}"


def policy(**kw: Any) -> RetryPolicy:
    return RetryPolicy(backoff_seconds=0.0, **kw)  # a float, as Settings gives it


# ------------------------------------------------------------------ success


@pytest.mark.parametrize("report_on", [False, True])
def test_success_acks_all(report_on: bool) -> None:
    h = Harness(
        lambda _, __: {"batchItemFailures": []} if report_on else "anything",
        policy=policy(maximum_retry_attempts=3),
        report=report_on,
    )
    records = [make_record(o) for o in range(5)]
    h.run(records)
    assert h.calls == [[0, 1, 2, 3, 4]]
    assert h.source.complete_calls == [(ids(0, 1, 2, 3, 4), [])]
    assert h.destination is not None and h.destination.sends == []
    assert h.function_errors == 0
    assert (h.metric("lambda_committed_events"), h.metric("lambda_invoked_events")) == (5, 5)
    assert h.metric("esm_retried_events") == h.metric("lambda_dropped_events") == 0
    assert h.metric("lambda_failed_invoke_events") == 0


def test_without_report_batch_item_failures_a_failure_list_is_a_success() -> None:
    h = Harness(report(("mytopic-0", 1)), policy=policy(maximum_retry_attempts=3), report=False)
    records = [make_record(o) for o in range(3)]
    h.run(records)
    assert h.calls == [[0, 1, 2]]
    assert h.source.acked == ids(0, 1, 2)


# ------------------------------------------------------------------ function errors, bisection


def test_bisection_isolates_a_poison_record() -> None:
    poison = (LANE, 5)
    h = Harness(
        raise_on(poison),
        policy=policy(maximum_retry_attempts=2, bisect_on_function_error=True),
    )
    records = [make_record(o) for o in range(8)]
    h.run(records)
    assert h.calls == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [4],
        [5],
        [5],
        [5],
        [6, 7],
    ]
    assert h.source.acked == ids(0, 1, 2, 3, 4, 5, 6, 7)
    assert all(failed == [] for _, failed in h.source.complete_calls)
    assert_acked_once_in_order(h.source.acked, records)

    assert h.destination is not None
    assert len(h.destination.sends) == 1
    sent = h.destination.sends[0]
    assert sent["acked_before"] == ids(0, 1, 2, 3, 4)  # given up before being acked
    assert sent["unit"] == LANE
    assert sent["mapping_uuid"] == h.mapping.uuid
    assert sent["event"] == h.source.build_event([records[5]])
    rec = sent["record"]
    invoked_with_poison = sum(1 for c in h.invoker.calls if poison in c)
    assert invoked_with_poison == 6
    assert rec["requestContext"] == {
        "requestId": "req-7",  # the last invocation, which included only the poison record
        "functionArn": FUNCTION_ARN,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": invoked_with_poison,
    }
    assert rec["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert list(rec) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KafkaBatchInfo",
    ]
    info = rec["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["payloadSize"] == event_size(sent["event"])
    assert info["bootstrapServers"] == BOOTSTRAP
    assert "eventSourceArn" not in info
    assert (
        info["recordsInfo"][LANE]["firstRecordOffset"],
        info["recordsInfo"][LANE]["lastRecordOffset"],
    ) == ("5", "5")

    assert h.function_errors == 6
    assert h.metric("lambda_committed_events") == 8
    assert h.metric("lambda_on_failure_destination_delivered_events") == 1
    assert h.metric("lambda_dropped_events") == 0
    assert h.metric("esm_retried_events") == 8 + 4 + 2 + 1 + 1
    assert h.metric("lambda_failed_invoke_events") == 8 + 4 + 2 + 1 + 1 + 1
    assert h.metric("lambda_invoked_events") == 8 + 4 + 4 + 2 + 1 + 1 + 1 + 1 + 2


def test_function_error_without_bisection_retries_the_whole_batch() -> None:
    h = Harness(raise_on((LANE, 1)), policy=policy(maximum_retry_attempts=2))
    records = [make_record(o) for o in range(3)]
    h.run(records)
    assert h.calls == [[0, 1, 2]] * 3
    assert h.destination is not None
    (rec,) = h.destination.records
    assert rec["requestContext"]["approximateInvokeCount"] == 3
    assert rec["requestContext"]["requestId"] == "req-2"
    assert rec["KafkaBatchInfo"]["batchSize"] == 3
    assert h.source.acked == ids(0, 1, 2)
    assert h.destination.sends[0]["acked_before"] == []


def test_zero_retries_gives_up_after_one_invocation() -> None:
    h = Harness(raise_on((LANE, 0)), policy=policy(maximum_retry_attempts=0))
    h.run([make_record(0)])
    assert h.calls == [[0]]
    assert h.destination is not None
    (rec,) = h.destination.records
    assert rec["requestContext"]["approximateInvokeCount"] == 1


# ------------------------------------------------------------------ partial batch responses


def test_partial_responses_retry_from_the_first_failure_on() -> None:
    responses = [
        {
            "batchItemFailures": [
                {"itemIdentifier": {"partition": LANE, "offset": o}} for o in (4, 2)
            ]
        },
        {"batchItemFailures": [{"itemIdentifier": {"partition": LANE, "offset": 4}}]},
        {"batchItemFailures": []},
    ]
    h = Harness(
        lambda n, _: responses[n],
        policy=policy(maximum_retry_attempts=5, bisect_on_function_error=True),
        report=True,
    )
    records = [make_record(o) for o in range(6)]
    h.run(records)
    assert h.calls == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5], [4, 5]]
    assert h.source.complete_calls == [(ids(0, 1), []), (ids(2, 3), []), (ids(4, 5), [])]
    assert h.destination is not None and h.destination.sends == []
    assert h.function_errors == 0
    assert h.metric("esm_retried_events") == 4 + 2
    assert h.metric("lambda_committed_events") == 6


def test_unknown_identifier_fails_the_whole_batch() -> None:
    responses = [
        {"batchItemFailures": [{"itemIdentifier": {"partition": LANE, "offset": 99}}]},
        None,
    ]
    h = Harness(lambda n, _: responses[n], policy=policy(maximum_retry_attempts=5), report=True)
    h.run([make_record(o) for o in range(3)])
    assert h.calls == [[0, 1, 2], [0, 1, 2]]
    assert h.source.acked == ids(0, 1, 2)


@pytest.mark.parametrize("bisect", [False, True])
def test_partial_failure_exhaustion_has_a_null_function_error(bisect: bool) -> None:
    h = Harness(
        report((LANE, 3)),
        policy=policy(maximum_retry_attempts=1, bisect_on_function_error=bisect),
        report=True,
    )
    records = [make_record(o) for o in range(5)]
    h.run(records)
    assert h.calls == [[0, 1, 2, 3, 4], [3, 4]]
    assert h.source.acked == ids(0, 1, 2, 3, 4)
    assert h.destination is not None
    (sent,) = h.destination.sends
    assert sent["acked_before"] == ids(0, 1, 2)
    rec = sent["record"]
    assert rec["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 2
    assert rec["requestContext"]["requestId"] == "req-1"
    assert rec["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": None,
    }
    info = rec["KafkaBatchInfo"]
    assert info["batchSize"] == 2
    assert info["recordsInfo"][LANE]["firstRecordOffset"] == "3"
    assert info["recordsInfo"][LANE]["lastRecordOffset"] == "4"
    assert h.function_errors == 0


def test_partial_failure_in_one_lane_does_not_hold_another() -> None:
    other = f"{TOPIC}-1"
    records = [
        make_record(0),
        make_record(0, lane=other),
        make_record(1),
        make_record(1, lane=other),
        make_record(2),
    ]
    h = Harness(
        lambda n, _: report((LANE, 1))(n, _) if n == 0 else None,
        policy=policy(maximum_retry_attempts=3),
        report=True,
    )
    h.run(records)
    assert h.invoker.calls == [
        [(LANE, 0), (LANE, 1), (LANE, 2), (other, 0), (other, 1)],
        [(LANE, 1), (LANE, 2)],
    ]
    assert h.source.complete_calls == [
        ([(LANE, 0), (other, 0), (other, 1)], []),
        ([(LANE, 1), (LANE, 2)], []),
    ]
    assert_acked_once_in_order(h.source.acked, records)


# ------------------------------------------------------------------ destination failures


@pytest.fixture
def test_destination_failing_twice_then_succeeding() -> None:
    h = Harness(
        raise_on((LANE, 1)), policy=policy(maximum_retry_attempts=0), destination_failures=2
    )
    records = [make_record(o) for o in range(3)]
    h.run(records)
    assert h.destination is not None
    assert len(h.destination.sends) == 3
    assert [s["acked_before"] for s in h.destination.sends] == [[], [], []]
    assert h.destination.records[0] == h.destination.records[1] == h.destination.records[2]
    assert h.source.waits == [0.5, 1.0]
    assert h.source.acked == ids(0, 1, 2)
    assert h.source.complete_calls == [(ids(0, 1, 2), [])]
    assert h.metric("lambda_destination_delivery_failures") == 2
    assert h.metric("lambda_on_failure_destination_delivered_events") == 3
    assert h.metric("lambda_committed_events") == 3


def test_destination_failing_after_a_hand_off_leaves_records_unacked() -> None:
    sends: list[int] = []
    h = Harness(
        report((LANE, 1)),
        policy=policy(maximum_retry_attempts=0),
        report=True,
        destination_failures=3,  # the 4th call would succeed if the hand-off were ignored
        handed_off=lambda: bool(sends),
    )
    h.destination.sends = sends  # type: ignore[union-attr, assignment]
    records = [make_record(o) for o in range(3)]
    h.run(records)
    assert h.calls == [[0, 1, 2]]
    assert h.destination is not None and len(h.destination.sends) == 1
    assert h.source.acked == ids(0)
    assert h.source.complete_calls == [(ids(0), [])]
    assert h.source.waits == [0.5]  # the backoff ended at once: the unit was handed off
    assert h.metric("lambda_destination_delivery_failures") == 1
    assert h.metric("lambda_on_failure_destination_delivered_events") == 0
    assert h.metric("lambda_dropped_events") == 0
    assert h.metric("lambda_committed_events") == 1


def test_a_hand_off_mid_retry_leaves_the_rest_unacked() -> None:
    state = {"handed_off": False}

    def on_call() -> None:
        state["handed_off"] = True

    h = Harness(
        raise_on((LANE, 0)),
        policy=policy(maximum_retry_attempts=5, bisect_on_function_error=True),
        handed_off=lambda: state["handed_off"],
        on_call=on_call,
    )
    h.run([make_record(o) for o in range(4)])
    assert h.calls == [[0, 1, 2, 3]]
    assert h.source.acked == []
    assert h.destination is not None and h.destination.sends == []


def test_no_destination_drops_and_acks() -> None:
    h = Harness(raise_on((LANE, 1)), policy=policy(maximum_retry_attempts=1), destination=False)
    records = [make_record(o) for o in range(2)]
    h.run(records)
    assert h.calls == [[0, 1], [0, 1]]
    assert h.source.acked == ids(0, 1)
    assert h.metric("lambda_dropped_events") == 2
    assert h.metric("lambda_on_failure_destination_delivered_events") == 0
    assert h.metric("lambda_committed_events") == 2


# ------------------------------------------------------------------ record age, payload size


def test_expired_records_are_given_up_before_invocation() -> None:
    now = int(time.time() * 1000)
    records = [
        make_record(0, ts_ms=now - 120_000),
        make_record(1, ts_ms=now - 90_000),
        make_record(2, ts_ms=now - 1_000),
    ]
    h = Harness(ok, policy=policy(maximum_record_age_seconds=60, maximum_retry_attempts=3))
    h.run(records)
    assert h.calls == [[2]]
    assert h.source.acked == ids(0, 1, 2)
    assert h.destination is not None
    (sent,) = h.destination.sends
    assert sent["acked_before"] == []
    rec = sent["record"]
    assert rec["requestContext"]["condition"] == "RecordAgeExceeded"
    # Recorded by AWS ([expire-before-ingestion], ..._discard_records): a batch that expired
    # before its first invocation reports one invocation.
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["requestContext"]["functionArn"] == FUNCTION_ARN
    assert "responseContext" not in rec
    assert rec["KafkaBatchInfo"]["batchSize"] == 2
    assert rec["KafkaBatchInfo"]["recordsInfo"][LANE]["lastRecordOffset"] == "1"


def test_all_expired_means_no_invocation() -> None:
    now = int(time.time() * 1000)
    h = Harness(ok, policy=policy(maximum_record_age_seconds=60), destination=False)
    h.run([make_record(o, ts_ms=now - 61_000) for o in range(3)])
    assert h.calls == []
    assert h.source.acked == ids(0, 1, 2)
    assert h.metric("lambda_dropped_events") == 3
    assert h.metric("lambda_invoked_events") == 0


def test_record_expiring_between_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1_700_000_000.0}
    monkeypatch.setattr(failure_module, "time", types.SimpleNamespace(time=lambda: clock["now"]))

    def advance() -> None:
        clock["now"] += 30

    ts = int(clock["now"] * 1000) - 50_000
    h = Harness(
        raise_on((LANE, 0)),
        policy=policy(maximum_record_age_seconds=60),
        on_call=advance,
    )
    h.run([make_record(0, ts_ms=ts)])
    assert h.calls == [[0]]
    assert h.destination is not None
    (rec,) = h.destination.records
    assert rec["requestContext"]["condition"] == "RecordAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["requestContext"]["requestId"] == "req-0"
    assert h.source.acked == ids(0)


def test_expired_record_after_a_live_one_keeps_the_lane_order() -> None:
    now = int(time.time() * 1000)
    records = [
        make_record(0, ts_ms=now - 1_000),
        make_record(1, ts_ms=now - 120_000),
        make_record(2, ts_ms=now - 1_000),
    ]
    h = Harness(ok, policy=policy(maximum_record_age_seconds=60))
    h.run(records)
    assert h.source.acked == ids(0, 1, 2)


def test_oversized_record_is_given_up_without_invoking() -> None:
    big = make_record(0, value=bytes(4_800_000))  # base64: 6,400,000 characters
    h = Harness(ok, policy=policy(maximum_retry_attempts=3))
    h.run([big])
    assert h.calls == []
    assert h.source.acked == ids(0)
    assert h.destination is not None
    (sent,) = h.destination.sends
    rec = sent["record"]
    assert rec["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert rec["responseContext"] is None
    assert rec["KafkaBatchInfo"]["payloadSize"] == event_size(sent["event"])
    assert rec["KafkaBatchInfo"]["payloadSize"] > MAX_PAYLOAD_BYTES
    assert h.metric("lambda_invoked_events") == 0


def test_record_just_under_the_limit_is_invoked() -> None:
    probe = make_record(0, value=b"")
    room = MAX_PAYLOAD_BYTES - event_size(FakeSource().build_event([probe]))
    value = bytes(room // 4 * 3)  # base64 grows by 4/3
    rec = make_record(0, value=value)
    assert event_size(FakeSource().build_event([rec])) <= MAX_PAYLOAD_BYTES
    h = Harness(ok, policy=policy(maximum_retry_attempts=3))
    h.run([rec])
    assert h.calls == [[0]]
    assert h.destination is not None and h.destination.sends == []


# ------------------------------------------------------------------ broker redelivers (SQS path)


def test_run_once_completes_once_with_succeeded_and_failed() -> None:
    h = Harness(report((LANE, 1)), policy=None, report=True)
    records = [make_record(o, laned=False) for o in range(4)]
    h.run(records)
    assert h.calls == [[0, 1, 2, 3]]
    assert h.source.complete_calls == [(ids(0, 2, 3), ids(1))]
    assert h.metric("lambda_committed_events") == 3
    assert h.metric("lambda_failed_invoke_events") == 1
    assert h.destination is not None and h.destination.sends == []


def test_run_once_function_error_fails_everything_once() -> None:
    h = Harness(raise_on((LANE, 0)), policy=None)
    h.run([make_record(o, laned=False) for o in range(3)])
    assert h.calls == [[0, 1, 2]]
    assert h.source.complete_calls == [([], ids(0, 1, 2))]
    assert h.function_errors == 1
    assert h.metric("esm_retried_events") == 0


# ------------------------------------------------------------------ bugs, properties


def test_infinite_retries_survive_more_than_1024_failures() -> None:
    h = Harness(lambda n, _: ERROR if n < 1100 else None, policy=policy())
    h.run([make_record(0)])
    assert len(h.calls) == 1101
    assert h.source.acked == ids(0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10),
    poison=st.sets(st.integers(0, 9), max_size=3),
    partial=st.booleans(),
    bisect=st.booleans(),
    retries=st.integers(0, 3),
)
def test_every_record_is_acked_once_in_order(
    n: int, poison: set[int], partial: bool, bisect: bool, retries: int
) -> None:
    bad = [(LANE, o) for o in sorted(poison) if o < n]
    h = Harness(
        report(*bad) if partial else raise_on(*bad),
        policy=policy(maximum_retry_attempts=retries, bisect_on_function_error=bisect),
        report=partial,
    )
    records = [make_record(o) for o in range(n)]
    h.run(records)
    assert_acked_once_in_order(h.source.acked, records)
    assert h.destination is not None
    given_up = [(LANE, int(o)) for s in h.destination.sends for o in _offsets_of(s["event"])]
    assert set(given_up) <= set(h.source.acked)
    if not bad:
        assert given_up == []
    for s in h.destination.sends:
        first = (LANE, s["event"]["records"][LANE][0]["offset"])
        if partial:
            assert first in bad  # the tail from the first reported failure on
        elif bisect:
            assert _offsets_of(s["event"]) == [first[1]]  # bisected down to one record
        else:
            assert _offsets_of(s["event"]) == list(range(n))  # the whole batch
        count = s["record"]["requestContext"]["approximateInvokeCount"]
        assert count == sum(1 for c in h.invoker.calls if first in c)
        assert s["record"]["responseContext"]["functionError"] == (None if partial else "Unhandled")
    if bisect and not partial:
        assert sorted(given_up) == bad  # bisection isolates exactly the poison records


def _offsets_of(event: dict[str, Any]) -> list[int]:
    return [r["offset"] for recs in event["records"].values() for r in recs]
