"""The Lambda context object handed to every invocation.

Attributes and types follow the Python runtime interface client (awslambdaric): note that
``memory_limit_in_mb`` is a string there, and code in the wild (Powertools among it) reads it as
such. One log stream name per worker process, as Lambda has one per execution environment.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from runtime.config.resolved import Function

_STREAM_SUFFIX = uuid.uuid4().hex


def log_stream_name(version: str = "$LATEST") -> str:
    return time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{version}]{_STREAM_SUFFIX}"


class LambdaContext:
    __slots__ = (
        "_deadline_ms",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "tenant_id",
    )

    def __init__(self, function: Function, request_id: str, deadline_epoch_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = str(function.memory_size)
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = log_stream_name()
        self.identity: Any = None
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, msg: str) -> None:
        os.write(1, (msg if msg.endswith("\n") else msg + "\n").encode())

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r}, "
            f"aws_request_id={self.aws_request_id!r})"
        )
