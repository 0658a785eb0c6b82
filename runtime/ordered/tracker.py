"""Checkpoints that only move over the contiguous prefix of completed records.

One tracker per owned work unit (a Kafka partition, a Kinesis or DynamoDB shard). Positions
are tracked in the order they were fetched; completion may come in any order (Kinesis
ParallelizationFactor lanes within a shard finish out of order), but the checkpoint only
passes a position once every position fetched before it is complete. Gaps between positions
(compacted offsets, transaction markers) are never tracked, so they never hold it back.

The common case is handled per batch, not per record: a batch that completes exactly the
front of what is pending (a Kafka partition's batches finish in fetch order) is compared and
passed in one slice operation.
"""

from __future__ import annotations

from collections.abc import Iterable

# Passed positions are cut off the front of the pending list once this many have gathered
# (cutting on every completion would copy the list each time).
_COMPACT_AT = 4096


class CheckpointTracker:
    def __init__(self) -> None:
        # Fetched, in fetch order; those before ``_head`` are passed already.
        self._pending: list[int] = []
        self._head = 0
        self._done: set[int] = set()  # completed but not yet at the front
        self._last_passed: int | None = None
        self.passed = 0  # positions the checkpoint has moved past, ever

    def __len__(self) -> int:
        """Records fetched and not yet behind the checkpoint."""
        return len(self._pending) - self._head

    def track(self, positions: Iterable[int]) -> None:
        self._pending.extend(positions)

    def complete(self, positions: Iterable[int]) -> None:
        if not isinstance(positions, list):
            positions = list(positions)
        if not positions:
            return
        pending, head, done = self._pending, self._head, self._done
        k = len(positions)
        if not done and pending[head : head + k] == positions:
            # In fetch order, exactly at the front: one slice comparison (in C).
            head += k
            self._last_passed = positions[-1]
            self.passed += k
        else:
            passed = 0
            end = len(pending)
            for pos in positions:
                if not done and head < end and pending[head] == pos:
                    head += 1
                    self._last_passed = pos
                    passed += 1
                else:
                    done.add(pos)
            while done and head < end and pending[head] in done:
                done.discard(pending[head])
                self._last_passed = pending[head]
                head += 1
                passed += 1
            self.passed += passed
        if head >= _COMPACT_AT or head == len(pending):
            del pending[:head]
            head = 0
        self._head = head

    @property
    def last_complete(self) -> int | None:
        """The last position of the completed prefix (None: nothing completed yet)."""
        return self._last_passed
