"""A Kafka broker that refuses the mapping's credentials, told apart from one that is down.

librdkafka reports a refused handshake only through the error callback while the metadata
call fails like a dead broker; these tests drive :func:`list_topic` with a stand-in consumer
that behaves so. tests/integration/test_kafka_sasl.py does the same against a real broker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from confluent_kafka import KafkaError, KafkaException

from runtime.config.model import SourceAccessConfiguration
from runtime.sources.base import SourceRefused, SourceUnreachable
from runtime.sources.kafka_refusal import RefusalWatch, list_topic, refusal

UNKNOWN_USER = (
    "sasl_plaintext://b:9092/bootstrap: SASL authentication error: SASL SCRAM authentication "
    "failed: broker responded with unknown-user (after 20ms in state AUTH_REQ)"
)
SECURITY = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "alice",
    "sasl.password": "s3cr3t-SENTINEL",
}
ACCESS = [
    SourceAccessConfiguration.model_validate({"Type": "VPC_SUBNET", "URI": "subnet:subnet-1"}),
    SourceAccessConfiguration.model_validate(
        {"Type": "SASL_SCRAM_512_AUTH", "URI": "env://KAFKA_SECRET"}
    ),
]


class Broker:
    """A consumer's metadata call and poll: metadata fails (or answers) after ``delay``; poll
    serves ``queued`` errors to the error callback, as librdkafka does."""

    def __init__(self, watch: RefusalWatch, *, answer: Any = None, queued: list[KafkaError]):
        self.watch, self.answer, self.queued = watch, answer, queued
        self.attempts: list[float] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        self.attempts.append(timeout)
        if self.answer is not None:
            return self.answer
        time.sleep(timeout)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    def poll(self, timeout: float) -> None:
        for error in self.queued:
            self.watch(error)
        self.queued = []


def test_a_refused_handshake_ends_the_wait_at_once() -> None:
    watch = RefusalWatch()
    broker = Broker(watch, queued=[KafkaError(KafkaError._AUTHENTICATION, UNKNOWN_USER)])
    began = time.monotonic()
    with pytest.raises(KafkaException):
        list_topic(broker, "orders", watch, 15)
    assert time.monotonic() - began < 1.5
    assert len(broker.attempts) == 1
    assert watch.refusal is not None and watch.refusal.code() == KafkaError._AUTHENTICATION


def test_a_broker_that_does_not_answer_gets_the_whole_timeout() -> None:
    watch = RefusalWatch()
    broker = Broker(watch, queued=[KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers down")])
    began = time.monotonic()
    with pytest.raises(KafkaException):
        list_topic(broker, "orders", watch, 1.2)
    assert 1.1 < time.monotonic() - began < 2.0
    assert len(broker.attempts) >= 3 and max(broker.attempts) <= 0.5
    assert watch.refusal is None  # not a refusal: stays "unreachable"


def test_metadata_that_comes_is_returned() -> None:
    watch = RefusalWatch()
    assert list_topic(Broker(watch, answer="md", queued=[]), "orders", watch, 15) == "md"


def test_the_sasl_refusal_names_user_mechanism_and_secret_never_the_password() -> None:
    error = refusal(
        KafkaError(KafkaError._AUTHENTICATION, UNKNOWN_USER),
        bootstrap="b:9092",
        security=SECURITY,
        access=ACCESS,
    )
    assert isinstance(error, SourceRefused) and isinstance(error, SourceUnreachable)
    assert str(error) == (
        "SASL authentication failed: Kafka at b:9092 refused user 'alice' (SCRAM-SHA-512) "
        f"(credentials from secret env://KAFKA_SECRET): {UNKNOWN_USER}"
    )
    assert "s3cr3t" not in str(error)


def test_tls_and_credential_less_refusals() -> None:
    tls = refusal(
        KafkaError(KafkaError._SSL, "SSL handshake failed"),
        bootstrap="b:9093",
        security={"security.protocol": "SSL"},
        access=[],
    )
    assert str(tls) == "TLS handshake with Kafka at b:9093 failed: SSL handshake failed"
    plain = refusal(
        KafkaError(KafkaError._AUTHENTICATION, "needs SASL"),
        bootstrap="b:9092",
        security={"security.protocol": "PLAINTEXT"},
        access=[],
    )
    assert str(plain) == "authentication failed: Kafka at b:9092 refused it: needs SASL"


def test_only_refusals_are_kept() -> None:
    watch = RefusalWatch()
    watch(KafkaError(KafkaError._TRANSPORT, "reset"))
    watch(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"))
    assert watch.refusal is None
    watch(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "bad password"))
    assert watch.refusal is not None and watch.refusal.str() == "bad password"


def test_last_processing_result_is_lambdas_for_a_sasl_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from runtime.supervisor.processing import CONNECTION_ERROR, ProcessingResults

    results = ProcessingResults()
    problem = str(
        refusal(
            KafkaError(KafkaError._AUTHENTICATION, UNKNOWN_USER),
            bootstrap="b:9092",
            security=SECURITY,
            access=ACCESS,
        )
    )
    results.set_problem("m1", problem)
    results.set_problem("m2", "cannot reach Kafka at b:9092: Broker transport failure")
    assert results.result("m1") == f"PROBLEM: SASL authentication failed ({problem})"
    assert results.result("m2").startswith(CONNECTION_ERROR)


def test_every_error_is_logged_since_librdkafka_stops_logging_them_once_a_callback_is_set() -> None:
    watch = RefusalWatch()
    with structlog.testing.capture_logs() as logs:
        watch(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert watch.refusal is None
    assert logs == [
        {
            "event": "kafka client error",
            "error": "1/1 brokers are down",
            "code": "_ALL_BROKERS_DOWN",
            "log_level": "warning",
        }
    ]
