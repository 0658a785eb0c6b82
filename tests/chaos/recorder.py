"""The fault suite's handler: one for every source, recording every invocation.

Each produced record carries JSON ``{"n": <number>, "key": <ordering key>}`` (SQS body, Kafka
value, Kinesis data, DynamoDB NewImage attribute ``body``). Every invocation appends a
``start`` line (pid, request id, and per record: lane, ordering key, number) before it works
and an ``end`` line after, to ``RECORD_FILE``, each with one ``write`` on an ``O_APPEND``
descriptor, so lines of concurrent workers never interleave.

The lane is what may have one invocation in flight at a time: the FIFO message group, the
Kafka partition, the Kinesis shard, the DynamoDB item key (one key lives on one shard); none
for standard queues.

With ``CHAOS_FAULT_EVERY=k``, number n with n % k == k - 1 makes the handler misbehave the first
time it sees it (a marker file next to ``RECORD_FILE`` remembers it did), in turn: raise, hang
past the function's Timeout, return what JSON cannot hold, or end its process with
``os._exit``. Each writes an end line marked failed before it misbehaves, except the hang: that
invocation ends when its worker is recycled (the test watches the workers die).

A record that is deliberately not JSON (tests/chaos/test_bad_input.py) carries its number as
``#<n>`` in its text; with ``CHAOS_EVENT_BYTES=1`` the start line also holds the event's compact
JSON size (what Lambda's 6 MB limit applies to) as ``bytes``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any

_SLEEP = float(os.environ.get("CHAOS_SLEEP", "0.02"))
# Numbers n with n % CHAOS_POISON_MOD == CHAOS_POISON_MOD // 2 fail their batch (0: none).
_POISON_MOD = int(os.environ.get("CHAOS_POISON_MOD", "0"))


# Memory each invocation keeps for good (a leaking handler), in MiB.
_LEAK_MB = int(os.environ.get("CHAOS_LEAK_MB", "0"))
_LEAKED: list[bytes] = []
_EVENT_BYTES = os.environ.get("CHAOS_EVENT_BYTES") == "1"
_MARKER = re.compile(r"#(\d+)")
_FAULT_EVERY = int(os.environ.get("CHAOS_FAULT_EVERY", "0"))
FAULTS = ("raise", "hang", "unserialisable", "exit")


def fault_of(n: int, every: int = _FAULT_EVERY) -> str | None:
    """The fault number ``n`` is chosen for (``CHAOS_FAULT_EVERY``), first time or not."""
    if every <= 0 or n < 0 or n % every != every - 1:
        return None
    return FAULTS[(n // every) % len(FAULTS)]


def fault_marker(record_file: str | Path, n: int) -> Path:
    """The file that says number ``n`` was faulted; it holds the request id that did it."""
    return Path(f"{record_file}.fault-{n}")


def _first_fault(numbers: list[int], rid: str) -> str | None:
    """The fault to act out now: that of the first number here not yet faulted (the marker
    file is created atomically, so a retry in any process sees it and succeeds)."""
    for n in numbers:
        fault = fault_of(n)
        if fault is None:
            continue
        try:
            fd = os.open(
                fault_marker(os.environ["RECORD_FILE"], n), os.O_CREAT | os.O_EXCL | os.O_WRONLY
            )
        except FileExistsError:
            continue
        os.write(fd, rid.encode())
        os.close(fd)
        return fault
    return None


def poisoned(n: int) -> bool:
    return _POISON_MOD > 0 and n % _POISON_MOD == _POISON_MOD // 2


def _value(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        found = _MARKER.search(text)  # not JSON: a bad-input record names its number "#<n>"
        return {"n": int(found.group(1))} if found else {}
    return value if isinstance(value, dict) else {}


def items(event: dict[str, Any]) -> list[tuple[str | None, str, int]]:
    """(lane, ordering key, number) of every record, in the event's order."""
    out: list[tuple[str | None, str, int]] = []
    if "records" in event:  # Kafka
        for part, records in event["records"].items():
            for r in records:
                v = _value(base64.b64decode(r.get("value", "")).decode(errors="replace"))
                out.append((part, part, int(v.get("n", -1))))
        return out
    for r in event["Records"]:
        if "messageId" in r:
            v = _value(r["body"])
            group = (r.get("attributes") or {}).get("MessageGroupId")
            out.append((group, str(v.get("key", group)), int(v.get("n", -1))))
        elif "kinesis" in r:
            v = _value(base64.b64decode(r["kinesis"]["data"]).decode(errors="replace"))
            shard = r["eventID"].rpartition(":")[0]
            out.append((shard, r["kinesis"]["partitionKey"], int(v.get("n", -1))))
        else:
            image = r["dynamodb"].get("NewImage") or {}
            v = _value(image.get("body", {}).get("S", "{}"))
            key = json.dumps(r["dynamodb"]["Keys"], sort_keys=True)
            out.append((key, key, int(v.get("n", -1))))
    return out


def _write(line: dict[str, Any]) -> None:
    path = os.environ.get("RECORD_FILE")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)


def handler(event: dict[str, Any], context: Any) -> Any:
    found = items(event)
    rid = context.aws_request_id
    _write(
        {
            "phase": "start",
            "t": time.time(),
            "pid": os.getpid(),
            "rid": rid,
            "lanes": [lane for lane, _, _ in found],
            "keys": [key for _, key, _ in found],
            "ns": [n for _, _, n in found],
            **({"bytes": len(json.dumps(event, separators=(",", ":")))} if _EVENT_BYTES else {}),
        }
    )
    time.sleep(_SLEEP)
    if _LEAK_MB:
        _LEAKED.append(b"x" * (_LEAK_MB << 20))
    fault = _first_fault([n for _, _, n in found], rid)
    if fault == "hang":
        time.sleep(600)  # the runtime gives up at Timeout and recycles this worker
    failed = fault is not None or any(poisoned(n) for _, _, n in found)
    _write({"phase": "end", "t": time.time(), "pid": os.getpid(), "rid": rid, "failed": failed})
    if fault == "unserialisable":
        return {"not JSON": object()}
    if fault == "exit":
        os._exit(3)
    if failed:
        raise RuntimeError("poison record")
    return None
