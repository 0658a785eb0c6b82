"""The fault suite's checker must see what it is there to see: a checker that passes
everything would make every chaos test pass."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chaos.invariants import Invocation, check, read


def inv(rid: str, start: float, end: float | None, ns: list[int], lane: str = "L",
        pid: int = 1) -> Invocation:  # fmt: skip
    return Invocation(rid, pid, start, end, [lane] * len(ns), [lane] * len(ns), ns)


def test_clean_run_passes() -> None:
    v = check([inv("a", 0, 1, [0, 1]), inv("b", 1, 2, [2, 3])], 4, ordered=True)
    assert v.summary() == {
        "produced": 4, "lost": 0, "duplicates": 0, "order_violations": 0, "overlaps": 0,
        "invocations": 2,
    }  # fmt: skip


def test_a_record_only_started_is_lost() -> None:
    v = check([inv("a", 0, None, [0, 1]), inv("b", 1, 2, [1])], 2, ordered=False)
    assert v.lost == [0]


def test_duplicates_are_counted() -> None:
    v = check([inv("a", 0, 1, [0, 1]), inv("b", 1, 2, [1, 2])], 3, ordered=True)
    assert v.duplicates == 1 and not v.order_violations


def test_skipping_ahead_and_coming_back_breaks_order() -> None:
    v = check([inv("a", 0, 1, [0, 2]), inv("b", 1, 2, [1])], 3, ordered=True)
    assert v.order_violations == ["key L: 1 after 2"]


def test_overlap_is_found_beyond_the_previous_span() -> None:
    spans = [inv("long", 0, 10, [0]), inv("b", 1, 2, [1]), inv("c", 3, 4, [2])]
    v = check(spans, 3, ordered=True)
    assert len(v.overlaps) == 2


def test_a_killed_invocation_ends_when_its_worker_died() -> None:
    spans = [inv("killed", 0, None, [0], pid=7), inv("again", 5, 6, [0], pid=8)]
    assert not check(spans, 1, ordered=True, deaths={7: 4.0}).overlaps
    assert check(spans, 1, ordered=True, deaths={7: 5.5}).overlaps


def test_read_pairs_starts_with_ends_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [
        {"phase": "start", "t": 1, "pid": 1, "rid": "a", "lanes": ["L"], "keys": ["L"],
         "ns": [0]},
        {"phase": "end", "t": 2, "pid": 1, "rid": "a"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"phase": "st')
    (only,) = read(path)
    assert (only.rid, only.start, only.end, only.ns) == ("a", 1, 2, [0])
