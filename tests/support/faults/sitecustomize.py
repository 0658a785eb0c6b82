"""Fault injection for tests, loaded into every runtime process of a test that asks for it.

A test puts this directory on ``PYTHONPATH`` and names a fault in ``ESM_TEST_FAULT``; Python
imports this module at start-up, before the runtime, so the fault is in place in the
supervisor and every worker without a hook in the runtime's own code. A fault fires once per
test: it creates the file named by ``ESM_TEST_FAULT_MARKER`` when it fires and never fires
while that file exists (so a restarted worker runs normally).

Faults:
- ``kafka-consume-raises``: the Kafka consumer's ``poll`` raises, as a fatal client error
  would, ``ESM_TEST_FAULT_DELAY`` seconds (default 1) after it first returned a message.
"""

from __future__ import annotations

import os
import time

_FAULT = os.environ.get("ESM_TEST_FAULT")
_MARKER = os.environ.get("ESM_TEST_FAULT_MARKER", "")


def _claim() -> bool:
    """True once per test: the first caller creates the marker."""
    try:
        fd = os.open(_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


if _FAULT == "kafka-consume-raises":
    import confluent_kafka

    _delay = float(os.environ.get("ESM_TEST_FAULT_DELAY", "1"))

    class _FaultyConsumer(confluent_kafka.Consumer):  # type: ignore[misc]
        _first_message_at: float | None = None

        def poll(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            first = self._first_message_at
            if first is not None and time.monotonic() - first >= _delay and _claim():
                raise confluent_kafka.KafkaException("injected fatal consumer error")
            message = super().poll(*args, **kwargs)
            if message is not None and first is None:
                self._first_message_at = time.monotonic()
            return message

    confluent_kafka.Consumer = _FaultyConsumer  # type: ignore[misc]
