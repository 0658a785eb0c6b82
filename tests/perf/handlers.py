"""Handlers for the performance benchmarks.

``noop`` costs nothing, so the runtime's own cost shows. ``sleep_10ms`` holds each batch for
10 ms, so concurrency shows: with RECORD_FILE set it appends one JSON line per invocation
(``{"pid", "start", "end", "records": [[MessageGroupId, n], ...]}``, times from time.time(),
``n`` the index in the message body when there is one) for the benchmark to measure overlap
and check the order within each message group. ``latency`` (Kafka events) appends, per
invocation, ``{"pid", "now", "records": [[timestamp, latency], ...]}`` to RECORD_FILE: ``now``
is time.time() in ms when the handler started, ``timestamp`` each record's Kafka timestamp (ms)
and ``latency`` = now - timestamp, in ms. ``sleep_20ms`` (Kinesis events) holds each batch for
20 ms and, with RECORD_FILE set, appends ``{"pid", "start", "end", "records": [[partitionKey, n],
...]}`` per invocation, like ``sleep_10ms`` (``n`` from the record's base64 JSON data).
``sleep_env`` (SQS events) is ``sleep_10ms`` with the sleep read from the function's
``SLEEP_MS`` variable (100 when unset), so a benchmark chooses how long a batch holds its
concurrency slot without a handler per duration.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any


def noop(event: Any, context: Any) -> None:
    return None


def _record_key(record: dict[str, Any]) -> list[Any]:
    try:
        n = json.loads(record["body"]).get("n")
    except (ValueError, AttributeError):
        n = None
    return [record.get("attributes", {}).get("MessageGroupId"), n]


def _append_line(path: str, line: str) -> None:
    # One write(2) on an O_APPEND descriptor: lines from concurrent invocations and worker
    # processes do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _timed(event: Any, seconds: float, key: Any) -> None:
    """Sleep ``seconds``, then record the invocation's start, end and record keys."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    path = os.environ.get("RECORD_FILE")
    if not path:
        return
    line = json.dumps(
        {
            "pid": os.getpid(),
            "start": start,
            "end": end,
            "records": [key(r) for r in event.get("Records", ())],
        },
        separators=(",", ":"),
    )
    _append_line(path, line)


def sleep_10ms(event: Any, context: Any) -> None:
    _timed(event, 0.01, _record_key)


def latency(event: Any, context: Any) -> None:
    now = time.time() * 1000
    path = os.environ.get("RECORD_FILE")
    if not path:
        return
    records = [
        [r["timestamp"], round(now - r["timestamp"], 3)]
        for part in event.get("records", {}).values()
        for r in part
    ]
    line = json.dumps(
        {"pid": os.getpid(), "now": round(now, 3), "records": records}, separators=(",", ":")
    )
    _append_line(path, line)


def _kinesis_key(record: dict[str, Any]) -> list[Any]:
    kinesis = record.get("kinesis", {})
    try:
        n = json.loads(base64.b64decode(kinesis["data"])).get("n")
    except (ValueError, KeyError, AttributeError):
        n = None
    return [kinesis.get("partitionKey"), n]


def sleep_20ms(event: Any, context: Any) -> None:
    _timed(event, 0.02, _kinesis_key)


def sleep_env(event: Any, context: Any) -> None:
    _timed(event, float(os.environ.get("SLEEP_MS", "100")) / 1000, _record_key)
