"""Reading what tests/handlers/behave.py recorded about each invocation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Invocation:
    request_id: str
    pid: int
    function_name: str
    message_ids: list[str]
    bodies: list[Any]
    receive_counts: list[int]
    started: float
    ended: float | None
    outcome: str | None
    event: dict[str, Any]
    context: dict[str, Any]
    succeeded: list[str] | None = None  # fifo_handler only
    failed: list[str] | None = None


def complete_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a handler has finished writing (a line being written by a running
    handler, without its newline yet, is left for the next read)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete (or empty)
    return [json.loads(line) for line in lines if line.strip()]


def starts(path: Path) -> list[dict[str, Any]]:
    """The "start" lines handlers wrote (what each invocation received), in file order."""
    return [x for x in complete_lines(path) if x["phase"] == "start"]


def read_invocations(path: Path) -> list[Invocation]:
    """Invocations in start order; ``ended`` is None for one that never finished."""
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for rec in complete_lines(path):
        (starts if rec["phase"] == "start" else ends)[rec["request_id"]] = rec
    out = []
    for rid, s in starts.items():
        e = ends.get(rid)
        out.append(
            Invocation(
                request_id=rid,
                pid=s["pid"],
                function_name=s["context"]["function_name"],
                message_ids=s["message_ids"],
                bodies=s["bodies"],
                receive_counts=s["receive_counts"],
                started=s["t"],
                ended=e["t"] if e else None,
                outcome=e["outcome"] if e else None,
                event=s["event"],
                context=s["context"],
                succeeded=e.get("succeeded") if e else None,
                failed=e.get("failed") if e else None,
            )
        )
    out.sort(key=lambda i: i.started)
    return out


def max_overlap(invocations: list[Invocation]) -> int:
    """Most invocations running at the same moment."""
    points = []
    for i in invocations:
        points.append((i.started, 1))
        points.append((i.ended if i.ended is not None else float("inf"), -1))
    points.sort(key=lambda p: (p[0], p[1]))
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best
