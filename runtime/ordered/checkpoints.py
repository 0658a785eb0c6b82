"""Writing checkpoints: throttled while a unit is owned, forced when it is handed over, and
counted only once the source confirmed them.

The tracker (:mod:`runtime.ordered.tracker`) says how far a unit's contiguous completed prefix
reaches; a :class:`Checkpoint` asks the source to record that position (a Kafka commit, a
lease-guarded write of a shard's checkpoint). The source answers per checkpoint whether it was
written. Only then does the unit's *confirmed* position move and do its records count in
``CommittedEventCount``; a checkpoint that failed is simply due again at the next interval.
Lag gauges measure from the confirmed position too, so no metric ever reports progress the
broker does not have.

Periodic checkpoints skip a unit that is being handed off: its final checkpoint is written by
the hand-off itself, synchronously, before the unit goes to its next owner.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import structlog

from runtime.metrics import MappingMetrics
from runtime.ordered.ownership import UnitState

log = structlog.get_logger("runtime.ordered")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """ "Everything of ``unit`` up to and including ``position`` is done."""

    unit: Hashable
    token: int
    position: int  # the last completed position (the source turns it into its own form)
    passed: int  # the tracker's count of positions passed at this checkpoint
    state: UnitState


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    checkpoint: Checkpoint
    error: str | None = None  # None: written and confirmed

    @property
    def ok(self) -> bool:
        return self.error is None


class Checkpointer:
    """Decides which checkpoints are due and accounts for their results (no I/O here)."""

    def __init__(self, metrics: MappingMetrics) -> None:
        self._metrics = metrics

    @staticmethod
    def _next(state: UnitState) -> Checkpoint | None:
        last = state.tracker.last_complete
        if last is None or (state.confirmed is not None and last <= state.confirmed):
            return None
        return Checkpoint(state.unit, state.token, last, state.tracker.passed, state)

    def due(self, states: Iterable[UnitState]) -> list[Checkpoint]:
        """Periodic checkpoints: owned units whose completed prefix moved, one write at a time."""
        out = []
        for state in states:
            if state.handing_off or state.writing:
                continue
            cp = self._next(state)
            if cp is not None:
                state.writing = True
                out.append(cp)
        return out

    def final(self, state: UnitState) -> Checkpoint | None:
        """The checkpoint to write before the unit is handed over (None: nothing new)."""
        return self._next(state)

    def confirm(self, results: Iterable[CheckpointResult]) -> None:
        for result in results:
            cp, state = result.checkpoint, result.checkpoint.state
            state.writing = False
            if not result.ok:
                if state.handing_off:
                    continue  # superseded by the hand-off's own final checkpoint
                self._metrics.checkpoint_failures.inc()
                log.warning(
                    "checkpoint not written; it will be tried again",
                    unit=str(cp.unit),
                    position=cp.position,
                    error=result.error,
                )
                continue
            if cp.passed > state.confirmed_passed:
                self._metrics.committed.inc(cp.passed - state.confirmed_passed)
                state.confirmed_passed = cp.passed
            if state.confirmed is None or cp.position > state.confirmed:
                state.confirmed = cp.position
