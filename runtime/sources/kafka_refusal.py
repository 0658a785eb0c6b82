"""Telling a Kafka broker that refuses the mapping's credentials from one that does not answer.

librdkafka reports a failed SASL handshake (a wrong password, an unknown user) or TLS handshake
only through the client's error callback, which poll calls serve. A metadata request to such a
broker waits out its whole timeout and then fails exactly like a broker that is down
("Broker transport failure"), so the mapping was reported as unreachable, after 15 s, without
a word about its credentials. :func:`list_topic` therefore asks for metadata in short attempts
and serves the callbacks in between: a refusal ends the wait at once and becomes a
:class:`~runtime.sources.base.SourceRefused` saying what was refused, as whom, and which secret
the credentials came from (never the secret itself).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from runtime.config.model import SourceAccessConfiguration
from runtime.sources.base import SASL_AUTHENTICATION_FAILED, SourceRefused
from runtime.sources.health import SourceHealth
from runtime.sources.kafka_auth import SASL_MECHANISMS

_log = structlog.get_logger("runtime.sources.kafka")

# librdkafka's codes for a broker that answered and refused: the SASL handshake (local and
# broker-side codes) and the TLS handshake.
_SASL_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
_TLS_CODES = frozenset({KafkaError._SSL})
REFUSAL_CODES = _SASL_CODES | _TLS_CODES
# librdkafka's errors for brokers that do not answer (as opposed to refused credentials or a
# bad request): the mapping waits for them instead of failing, and reports them if they last.
UNREACHABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError.BROKER_NOT_AVAILABLE,
    }
)

# One metadata attempt: short, so that a refusal (known within milliseconds) is seen quickly;
# a broker that does not answer is still given the whole timeout, attempt after attempt.
_ATTEMPT_SECONDS = 0.5


class RefusalWatch:
    """A consumer's ``error_cb``: keeps the latest refusal (called on the polling thread).

    Every error is also logged: librdkafka logs its errors itself only while no ``error_cb``
    is set, and a broker going down mid-run must still be seen in the logs. A running
    consumer's watch also tells its mapping's :class:`SourceHealth` when no broker answers."""

    def __init__(self, health: SourceHealth | None = None) -> None:
        self.refusal: KafkaError | None = None
        self._health = health

    def __call__(self, error: KafkaError) -> None:
        code = error.code()
        if code in REFUSAL_CODES:
            self.refusal = error
        elif code in UNREACHABLE_CODES and self._health is not None:
            self._health.failed(error.str())
        _log.warning("kafka client error", error=error.str(), code=error.name())


def list_topic(consumer: Any, topic: str, watch: RefusalWatch, timeout: float) -> Any:
    """``consumer.list_topics(topic)`` within ``timeout`` seconds, ending early if the broker
    refuses the credentials (the last attempt's error is raised if nothing else is known)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return consumer.list_topics(topic, timeout=max(0.05, min(_ATTEMPT_SECONDS, left)))
        except KafkaException:
            consumer.poll(0)  # serves the error callback (and librdkafka's log lines)
            if watch.refusal is not None or time.monotonic() >= deadline:
                raise


def refusal(
    error: KafkaError,
    *,
    bootstrap: str,
    security: Mapping[str, str],
    access: Sequence[SourceAccessConfiguration],
) -> SourceRefused:
    """The error a refused mapping reports: what was refused, as whom, from which secret."""
    detail = error.str()
    if error.code() in _TLS_CODES:
        return SourceRefused(f"TLS handshake with Kafka at {bootstrap} failed: {detail}")
    mechanism = security.get("sasl.mechanism")
    if mechanism is None:
        return SourceRefused(f"authentication failed: Kafka at {bootstrap} refused it: {detail}")
    user = security.get("sasl.username", "")
    uris = [a.uri for a in access if a.type in SASL_MECHANISMS]
    source = f" (credentials from secret {uris[0]})" if uris else ""
    return SourceRefused(
        f"{SASL_AUTHENTICATION_FAILED}: Kafka at {bootstrap} refused user {user!r} "
        f"({mechanism}){source}: {detail}"
    )
