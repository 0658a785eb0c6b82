"""Which source failures wait (the source may come back) and which fail the configuration."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from confluent_kafka import KafkaError, KafkaException

from runtime.sources.aws import is_unreachable
from runtime.sources.kafka import _unreachable


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "ReceiveMessage",
    )


def test_connection_failures_and_server_errors_are_unreachable() -> None:
    assert is_unreachable(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_unreachable(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert is_unreachable(ConnectionRefusedError())
    assert is_unreachable(TimeoutError())
    assert is_unreachable(client_error("InternalError", 500))
    assert is_unreachable(client_error("ServiceUnavailable", 503))


def test_refused_requests_are_configuration_problems() -> None:
    assert not is_unreachable(client_error("AWS.SimpleQueueService.NonExistentQueue", 400))
    assert not is_unreachable(client_error("AccessDenied", 403))
    assert not is_unreachable(ValueError("bad"))


def test_kafka_transport_errors_are_unreachable_and_auth_errors_are_not() -> None:
    assert _unreachable(KafkaException(KafkaError(KafkaError._TRANSPORT)))
    assert _unreachable(KafkaException(KafkaError(KafkaError._TIMED_OUT)))
    assert _unreachable(KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)))
    assert not _unreachable(KafkaException(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED)))
    assert not _unreachable(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    assert not _unreachable(RuntimeError("x"))
