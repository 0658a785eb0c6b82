"""A handler scripted by its messages, recording every invocation for the tests.

Each SQS message body is JSON; these keys steer the batch (absent keys do nothing):
  sleep: seconds        the batch sleeps for the largest value it holds
  raise: text           raise Exception(text)
  fail_until_receive: n raise while the message's ApproximateReceiveCount <= n
  report: true          put this message's messageId in batchItemFailures
  return: value         return exactly this value (first message that has it wins)
  garbage: true         return something JSON cannot encode
  nested_until_receive: n  return a response too deeply nested to encode while the message's
                        ApproximateReceiveCount <= n
  hang: true            never return (sync: blocks its thread; async: ignores cancellation)
  exit: code            os._exit(code): the worker process dies mid-batch
  log: text             logging.getLogger("handler").info(text)

Every invocation appends a "start" line before acting and an "end" line after, to the file
named by RECORD_FILE, so a test sees what ran, where (pid), when, and how it ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

_log = logging.getLogger("handler")
# What the function's environment said when its module was imported (tests of isolation).
GREETING_AT_IMPORT = os.environ.get("GREETING")


def _record(phase: str, ctx: Any, **fields: Any) -> None:
    path = os.environ.get("RECORD_FILE")
    if not path:
        return
    line = json.dumps(
        {
            "phase": phase,
            "t": time.time(),
            "pid": os.getpid(),
            "request_id": ctx.aws_request_id,
            **fields,
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _deeply_nested(depth: int = 100_000) -> Any:
    """A response JSON cannot encode without passing the recursion limit."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _bodies(event: dict[str, Any]) -> list[Any]:
    out = []
    for r in event["Records"]:
        try:
            out.append(json.loads(r["body"]))
        except ValueError:
            out.append(r["body"])
    return out


def _context_view(context: Any) -> dict[str, Any]:
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
        "greeting_at_import": GREETING_AT_IMPORT,
    }


def _start(event: dict[str, Any], context: Any) -> list[Any]:
    bodies = _bodies(event)
    _record(
        "start",
        context,
        message_ids=[r["messageId"] for r in event["Records"]],
        receive_counts=[int(r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]],
        bodies=bodies,
        event=event,
        context=_context_view(context),
    )
    return bodies


def _decide(event: dict[str, Any], bodies: list[Any]) -> tuple[Any, bool]:
    """(value to return, whether a return value was chosen) — raising on failure commands."""
    chosen: Any = None
    has_return = False
    failures = []
    for rec, body in zip(event["Records"], bodies, strict=True):
        if not isinstance(body, dict):
            continue
        if "log" in body:
            _log.info(body["log"])
        if "exit" in body:
            os._exit(int(body["exit"]))
        if "raise" in body:
            raise Exception(body["raise"])
        if "fail_until_receive" in body and int(
            rec["attributes"]["ApproximateReceiveCount"]
        ) <= int(body["fail_until_receive"]):
            raise Exception(f"failing until receive {body['fail_until_receive']}")
        if body.get("report"):
            failures.append({"itemIdentifier": rec["messageId"]})
        if "return" in body and not has_return:
            chosen, has_return = body["return"], True
        if body.get("garbage") and not has_return:
            chosen, has_return = object(), True
        if "nested_until_receive" in body and int(
            rec["attributes"]["ApproximateReceiveCount"]
        ) <= int(body["nested_until_receive"]):
            chosen, has_return = _deeply_nested(), True
    if has_return:
        return chosen, True
    if failures:
        return {"batchItemFailures": failures}, True
    return None, False


def handler(event: dict[str, Any], context: Any) -> Any:
    bodies = _start(event, context)
    outcome = "error"
    try:
        delay = max((b.get("sleep", 0) for b in bodies if isinstance(b, dict)), default=0)
        if any(isinstance(b, dict) and b.get("hang") for b in bodies):
            time.sleep(3600)
        if delay:
            time.sleep(delay)
        value, _ = _decide(event, bodies)
        outcome = "returned"
        return value
    finally:
        _record("end", context, outcome=outcome)


async def async_handler(event: dict[str, Any], context: Any) -> Any:
    bodies = _start(event, context)
    outcome = "error"
    try:
        delay = max((b.get("sleep", 0) for b in bodies if isinstance(b, dict)), default=0)
        if any(isinstance(b, dict) and b.get("hang") for b in bodies):
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue  # a handler that ignores cancellation
        if delay:
            await asyncio.sleep(delay)
        value, _ = _decide(event, bodies)
        outcome = "returned"
        return value
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        _record("end", context, outcome=outcome)


def fifo_handler(event: dict[str, Any], context: Any) -> Any:
    """Processes records in order and stops at the first failure, reporting it and every later
    record (what Powertools' SqsFifoPartialProcessor does). Body keys:
      fail_until_receive: n   this record fails while its ApproximateReceiveCount <= n
      raise_until_receive: n  the whole invocation raises while the count <= n
      sleep: seconds          the batch sleeps for the largest value
    The "end" record lists which messages succeeded and which were reported failed.
    """
    bodies = _start(event, context)
    succeeded: list[str] = []
    failed: list[str] = []
    outcome = "error"
    try:
        delay = max((b.get("sleep", 0) for b in bodies if isinstance(b, dict)), default=0)
        if delay:
            time.sleep(delay)
        for rec, body in zip(event["Records"], bodies, strict=True):
            count = int(rec["attributes"]["ApproximateReceiveCount"])
            if count <= int(body.get("raise_until_receive", 0)):
                raise Exception(f"raising until receive {body['raise_until_receive']}")
            if failed or count <= int(body.get("fail_until_receive", 0)):
                failed.append(rec["messageId"])
            else:
                succeeded.append(rec["messageId"])
        outcome = "returned"
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
    finally:
        _record("end", context, outcome=outcome, succeeded=succeeded, failed=failed)
