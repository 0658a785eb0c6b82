"""Ordering lanes: which waiting batch may run next.

A lane is an ordering key: a Kafka partition, a Kinesis shard (or one of its
ParallelizationFactor sub-lanes), an SQS FIFO message group. The rules, for every source:

1. at most one batch per lane is in flight;
2. batches of one lane are invoked in the order they arrived;
3. a batch given back for retry runs again before anything that arrived after it in any of
   its lanes.

A batch may span several lanes (an SQS FIFO receive returns several message groups, in order);
it then runs only when all of its lanes are free and no earlier waiting batch shares one of
them. A batch with no lanes (SQS standard) is never held back.

Pure data structure: no I/O, no clock, no asyncio. The pipeline calls :meth:`push` when a batch
is ready, :meth:`pop_runnable` when it has a free slot, and :meth:`finish` or :meth:`retry`
when a batch comes back.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

from runtime.pipeline.records import Batch


def lanes_of(batch: Batch) -> frozenset[Hashable]:
    return frozenset(r.lane for r in batch.records if r.lane is not None)


@dataclass(order=True)
class _Waiting:
    # Position in line: (arrival,) for a new batch; a batch's parts (retry of a failed tail,
    # bisection halves) get its position extended by their index, so they stay in order among
    # themselves and ahead of everything that arrived later.
    position: tuple[int, ...]
    batch: Batch = field(compare=False)
    lanes: frozenset[Hashable] = field(compare=False)


class LaneQueue:
    def __init__(self) -> None:
        self._waiting: list[_Waiting] = []  # sorted by position
        self._busy: set[Hashable] = set()  # lanes with a batch running
        self._running: dict[int, _Waiting] = {}  # id(batch) -> entry
        self._next_seq = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def push(self, batch: Batch) -> None:
        """A new batch, behind everything that arrived before it."""
        entry = _Waiting((self._next_seq,), batch, lanes_of(batch))
        self._next_seq += 1
        self._waiting.append(entry)

    def pop_runnable(self) -> Batch | None:
        """The earliest waiting batch that may run now (marked running), or None."""
        blocked: set[Hashable] = set()
        for i, entry in enumerate(self._waiting):
            if entry.lanes.isdisjoint(self._busy) and entry.lanes.isdisjoint(blocked):
                del self._waiting[i]
                self._busy |= entry.lanes
                self._running[id(entry.batch)] = entry
                return entry.batch
            blocked |= entry.lanes
        return None

    def finish(self, batch: Batch) -> None:
        """The batch is done (acknowledged, or handed to the source for redelivery)."""
        entry = self._running.pop(id(batch))
        self._busy -= entry.lanes

    def retry(self, batch: Batch, parts: list[Batch] | None = None) -> None:
        """Run ``batch`` again, ahead of everything that arrived after it in its lanes.

        ``parts`` replaces it (in order) when the retry is not the batch as it was: what is
        left after a partial failure, or the halves of a bisection. They keep the batch's
        arrival position, so they are first in line for their lanes.
        """
        entry = self._running.pop(id(batch))
        self._busy -= entry.lanes
        if parts is None:
            bisect.insort(self._waiting, _Waiting(entry.position, batch, entry.lanes))
            return
        for i, part in enumerate(parts):
            bisect.insort(self._waiting, _Waiting((*entry.position, i), part, lanes_of(part)))

    def discard(self, which: Callable[[Batch], bool]) -> list[Batch]:
        """Remove and return the waiting batches ``which`` selects (their unit was revoked)."""
        keep: list[_Waiting] = []
        gone: list[_Waiting] = []
        for entry in self._waiting:
            (gone if which(entry.batch) else keep).append(entry)
        self._waiting = keep
        return [e.batch for e in gone]

    def drain(self) -> Iterator[Batch]:
        """Remove and yield every waiting batch (shutdown)."""
        while self._waiting:
            yield self._waiting.pop(0).batch
