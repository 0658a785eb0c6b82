"""CheckpointTracker: the checkpoint moves over the contiguous prefix of completed positions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.ordered.tracker import CheckpointTracker


def test_nothing_complete_yet() -> None:
    t = CheckpointTracker()
    assert t.last_complete is None
    assert len(t) == 0
    assert t.passed == 0
    t.track([5, 6, 7])
    assert t.last_complete is None
    assert len(t) == 3
    t.complete([6, 7])  # the first position is still out
    assert t.last_complete is None
    assert len(t) == 3
    assert t.passed == 0


def test_contiguous_prefix_with_out_of_order_completion() -> None:
    t = CheckpointTracker()
    t.track(range(10, 16))
    steps = [([12], None, 6, 0), ([10], 10, 5, 1), ([14, 13], 10, 5, 1), ([11], 14, 1, 5)]
    for done, last, pending, passed in steps:
        t.complete(done)
        assert (t.last_complete, len(t), t.passed) == (last, pending, passed)
    t.complete([15])
    assert (t.last_complete, len(t), t.passed) == (15, 0, 6)


def test_gaps_between_tracked_positions_never_block() -> None:
    t = CheckpointTracker()
    t.track([3, 4, 9])  # 5..8 compacted away or transaction markers
    t.track([20, 21])
    t.complete([3, 4])
    assert t.last_complete == 4
    t.complete([9])
    assert t.last_complete == 9
    t.complete([21])
    assert t.last_complete == 9
    t.complete([20])
    assert (t.last_complete, len(t), t.passed) == (21, 0, 5)


def test_tracking_more_after_everything_passed() -> None:
    t = CheckpointTracker()
    t.track([1])
    t.complete([1])
    assert (t.last_complete, len(t), t.passed) == (1, 0, 1)
    t.track([2, 3])
    assert (t.last_complete, len(t)) == (1, 2)
    t.complete([3])
    assert t.last_complete == 1
    t.complete([2])
    assert (t.last_complete, len(t), t.passed) == (3, 0, 3)


def test_complete_accepts_any_iterable_and_empty() -> None:
    t = CheckpointTracker()
    t.track(iter([0, 1, 2]))
    t.complete(())
    assert t.last_complete is None
    t.complete(x for x in (1, 0))
    assert (t.last_complete, len(t), t.passed) == (1, 1, 2)


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[list[list[int]], list[list[int]]]:
    """Ascending positions with gaps, fetched in chunks, completed in chunks in any order."""
    gaps = draw(st.lists(st.integers(1, 5), min_size=1, max_size=40))
    start = draw(st.integers(0, 1000))
    positions, p = [], start
    for g in gaps:
        positions.append(p)
        p += g
    cuts: list[int] = []
    if len(positions) > 1:
        cuts = sorted(draw(st.sets(st.integers(1, len(positions) - 1), max_size=5)))
    fetches = [positions[a:b] for a, b in zip([0, *cuts], [*cuts, len(positions)], strict=True)]
    order = draw(st.permutations(positions))
    sizes = draw(st.lists(st.integers(1, 4), min_size=len(order), max_size=len(order)))
    completions, i = [], 0
    for s in sizes:
        if i >= len(order):
            break
        completions.append(list(order[i : i + s]))
        i += s
    return fetches, completions


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_last_complete_is_the_largest_fully_complete_prefix(
    scenario: tuple[list[list[int]], list[list[int]]],
) -> None:
    fetches, completions = scenario
    t = CheckpointTracker()
    tracked: list[int] = []
    for f in fetches:
        t.track(f)
        tracked.extend(f)
    done: set[int] = set()
    for chunk in completions:
        t.complete(chunk)
        done.update(chunk)
        prefix = 0
        while prefix < len(tracked) and tracked[prefix] in done:
            prefix += 1
        expected = tracked[prefix - 1] if prefix else None
        assert t.last_complete == expected
        assert t.passed == prefix
        assert len(t) == len(tracked) - prefix
        if expected is not None:
            assert all(p in done for p in tracked if p <= expected)
    assert t.last_complete == tracked[-1]
    assert len(t) == 0
