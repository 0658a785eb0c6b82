"""A sync handler that blocks its thread until the test releases it (unit tests of hand-offs)."""

from __future__ import annotations

import threading
from typing import Any

RELEASE = threading.Event()


def handler(event: dict[str, Any], context: Any) -> None:
    RELEASE.wait(30)
