"""Checkpoints that only move over the contiguous prefix of completed records.

One tracker per owned work unit (a Kafka partition, a Kinesis or DynamoDB shard). Positions
are tracked in the order they were fetched; completion may come in any order (Kinesis
ParallelizationFactor lanes within a shard finish out of order), but the checkpoint only
passes a position once every position fetched before it is complete. Gaps between positions
(compacted offsets, transaction markers) are never tracked, so they never hold it back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class CheckpointTracker:
    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # fetched, in fetch order, not yet passed
        self._done: set[int] = set()  # completed but not yet at the front
        self._last_passed: int | None = None
        self.passed = 0  # positions the checkpoint has moved past, ever

    def __len__(self) -> int:
        """Records fetched and not yet behind the checkpoint."""
        return len(self._pending)

    def track(self, positions: Iterable[int]) -> None:
        self._pending.extend(positions)

    def complete(self, positions: Iterable[int]) -> None:
        pending, done = self._pending, self._done
        passed = 0
        for pos in positions:
            # The common case: completions arrive in fetch order, at the front.
            if not done and pending and pending[0] == pos:
                self._last_passed = pending.popleft()
                passed += 1
            else:
                done.add(pos)
        while done and pending and pending[0] in done:
            self._last_passed = pending.popleft()
            done.discard(self._last_passed)
            passed += 1
        self.passed += passed

    @property
    def last_complete(self) -> int | None:
        """The last position of the completed prefix (None: nothing completed yet)."""
        return self._last_passed
