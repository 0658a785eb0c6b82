"""A running mapping's source health: a blip is not an outage, an outage is reported once and
cleared once, and a Kafka consumer's error callback feeds it (only with broker-down codes)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from runtime.sources.health import SourceHealth
from runtime.sources.kafka_refusal import RefusalWatch


class Gauge:
    def __init__(self) -> None:
        self.values: list[float] = []

    def set(self, value: float) -> None:
        self.values.append(value)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def health(after: float = 10.0) -> tuple[SourceHealth, Gauge, Clock]:
    gauge, clock = Gauge(), Clock()
    return SourceHealth(gauge, after_seconds=after, source="q", clock=clock), gauge, clock


def test_failures_shorter_than_the_threshold_are_not_reported() -> None:
    h, gauge, clock = health()
    h.failed("refused")
    clock.now += 9.9
    h.failed("refused")
    assert h.failing and not h.reported
    h.answered()
    assert not h.failing and gauge.values == []


def test_an_outage_is_reported_once_and_cleared_once() -> None:
    h, gauge, clock = health()
    h.failed("refused")
    clock.now += 10
    h.failed("refused")
    clock.now += 5
    h.failed("refused")
    assert h.reported and gauge.values == [1]
    h.answered()
    h.answered()
    assert gauge.values == [1, 0] and not h.failing


def test_the_clock_restarts_after_a_recovery() -> None:
    h, gauge, clock = health()
    h.failed("x")
    clock.now += 8
    h.answered()
    h.failed("x")
    clock.now += 8
    h.failed("x")
    assert gauge.values == []  # two blips of 8 s, not one outage of 16 s


def test_kafka_broker_down_errors_feed_health_and_refusals_do_not() -> None:
    h, gauge, clock = health(after=1)
    watch = RefusalWatch(h)
    watch(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "refused"))
    assert not h.failing and watch.refusal is not None
    watch(KafkaError(KafkaError._TRANSPORT, "Disconnected"))
    clock.now += 1
    watch(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert gauge.values == [1]


def test_the_supervisors_pre_flight_watch_reports_nothing() -> None:
    RefusalWatch()(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
