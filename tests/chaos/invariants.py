"""What every fault scenario must keep, computed from what the recorder wrote.

- lost: produced numbers that no invocation completed;
- order: per ordering key, the numbers seen for the first time arrive in increasing order
  (a replay after a fault may repeat numbers, never skip ahead and come back);
- overlap: no two invocations of one lane run at the same moment (an invocation killed with
  its worker ends when the worker died);
- duplicates: numbers completed more than once (bounded by what was in flight or not yet
  acknowledged at each fault; 0 after a clean drain).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Invocation:
    rid: str
    pid: int
    start: float
    end: float | None
    lanes: list[str | None]
    keys: list[str]
    ns: list[int]
    failed: bool = False  # the handler raised


@dataclass
class Verdict:
    produced: int
    completed: int
    lost: list[int] = field(default_factory=list)
    duplicates: int = 0
    order_violations: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    invocations: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "produced": self.produced,
            "lost": len(self.lost),
            "duplicates": self.duplicates,
            "order_violations": len(self.order_violations),
            "overlaps": len(self.overlaps),
            "invocations": self.invocations,
        }


def read(path: Path) -> list[Invocation]:
    if not path.exists():
        return []
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, float] = {}
    failed: set[str] = set()
    for line in path.read_text().split("\n")[:-1]:
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec["phase"] == "start":
            starts[rec["rid"]] = rec
        else:
            ends[rec["rid"]] = rec["t"]
            if rec.get("failed"):
                failed.add(rec["rid"])
    out = [
        Invocation(
            rid, s["pid"], s["t"], ends.get(rid), s["lanes"], s["keys"], s["ns"], rid in failed
        )
        for rid, s in starts.items()
    ]
    out.sort(key=lambda i: i.start)
    return out


def completed_numbers(invocations: list[Invocation]) -> Counter[int]:
    """Numbers of invocations that ended without raising."""
    return Counter(n for i in invocations if i.end is not None and not i.failed for n in i.ns)


def check(
    invocations: list[Invocation],
    produced: int,
    *,
    ordered: bool,
    deaths: dict[int, float] | None = None,
) -> Verdict:
    """``deaths``: pid -> when it was killed (its unfinished invocations end then)."""
    deaths = deaths or {}
    done = completed_numbers(invocations)
    verdict = Verdict(
        produced=produced,
        completed=len(done),
        lost=sorted(set(range(produced)) - set(done)),
        duplicates=sum(c - 1 for c in done.values() if c > 1),
        invocations=len(invocations),
    )
    if ordered:
        seen: dict[str, int] = {}
        firsts: set[int] = set()
        for inv in invocations:
            for key, n in zip(inv.keys, inv.ns, strict=True):
                if n in firsts:
                    continue  # a replay
                firsts.add(n)
                if n < seen.get(key, -1):
                    verdict.order_violations.append(f"key {key}: {n} after {seen[key]}")
                seen[key] = max(n, seen.get(key, -1))
        by_lane: dict[str, list[tuple[float, float, str]]] = {}
        for inv in invocations:
            end = inv.end if inv.end is not None else deaths.get(inv.pid, float("inf"))
            for lane in set(inv.lanes):
                if lane is not None:
                    by_lane.setdefault(lane, []).append((inv.start, end, inv.rid))
        for lane, spans in by_lane.items():
            spans.sort()
            # Compare each start with the latest end so far, not only the previous span's:
            # a long invocation may overlap one that starts two spans later.
            latest = (float("-inf"), float("-inf"), "")
            for span in spans:
                s1, e1, r1 = latest
                if span[0] < e1:
                    verdict.overlaps.append(
                        f"lane {lane}: {r1} [{s1:.3f}, {e1:.3f}] and {span[2]} at {span[0]:.3f}"
                    )
                if span[1] > e1:
                    latest = span
    return verdict
