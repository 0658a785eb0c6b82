"""Handlers for the performance benchmarks: they cost nothing, so the runtime's own cost shows."""

from __future__ import annotations

from typing import Any


def noop(event: Any, context: Any) -> None:
    return None
