"""A handler that fails if two invocations ever run in one environment at the same time.

Module-level state like this (a "current batch" flag) is safe on Lambda, where an execution
environment runs one invocation at a time; the runtime must keep it safe too.
"""

from __future__ import annotations

import time
from typing import Any

BUSY = False
INSTANCE = object()  # one per environment (module instance)
COUNT = 0


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global BUSY, COUNT
    if BUSY:
        raise RuntimeError("two invocations share one environment")
    BUSY = True
    try:
        time.sleep(0.05)
        COUNT += 1
        return {"instance": id(INSTANCE), "count": COUNT}
    finally:
        BUSY = False
