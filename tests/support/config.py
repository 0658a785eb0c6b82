"""Building runtime configurations for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEHAVE = "tests.handlers.behave.handler"
BEHAVE_ASYNC = "tests.handlers.behave.async_handler"


def single_mapping(
    source_arn: str,
    record_file: Path,
    *,
    handler: str = BEHAVE,
    timeout: int = 5,
    function: dict[str, Any] | None = None,
    **mapping: Any,
) -> dict[str, Any]:
    """One function ``fn`` (recording to ``record_file``) and one mapping from ``source_arn``."""
    return {
        "functions": {
            "fn": {
                "Handler": handler,
                "Timeout": timeout,
                "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
                **(function or {}),
            }
        },
        "eventSourceMappings": [{"FunctionName": "fn", "EventSourceArn": source_arn, **mapping}],
    }
