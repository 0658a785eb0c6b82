"""Which work units this worker owns, under which token, and what it holds for each.

A work unit is what an ordered source hands out to one consumer at a time: a Kafka partition,
a Kinesis or DynamoDB shard. The source says when a unit is assigned and under which *token*
(a Kafka assignment epoch, a lease counter); every record is fetched under one. Ownership
goes through three states:

- **owned**: records are accepted, batches start, retries and destination sends proceed,
  checkpoints are written;
- **handing off** (a revoke, a lease given back, shutdown): nothing new starts: no
  invocation, no retry, no destination send, no periodic checkpoint. Invocations already
  running may finish, and what they completed still counts, so that the final checkpoint,
  written before the unit is handed over, covers it;
- **gone**: the state is dropped; anything that still arrives for the unit under the old
  token (a late completion, records fetched just before the revoke) is ignored.

One :class:`UnitState` per owned unit holds everything the core keeps for it (the checkpoint
tracker, flow-control counters, the confirmed checkpoint). Only
the event loop touches it: sources talk to the core through the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

from runtime.ordered.flow import UnitFlow
from runtime.ordered.tracker import CheckpointTracker


@dataclass(eq=False)
class UnitState:
    unit: Hashable
    token: int
    flow: UnitFlow
    tracker: CheckpointTracker = field(default_factory=CheckpointTracker)
    handing_off: bool = False
    # The last position the source confirmed as checkpointed (None: nothing yet), and how many
    # of the tracker's passed positions that checkpoint covered (for CommittedEventCount).
    confirmed: int | None = None
    confirmed_passed: int = 0
    writing: bool = False  # a periodic checkpoint of this unit is being written
    # Since when a failing batch has been retrying here without the checkpoint moving
    # (monotonic; None: not blocked), and when that was last reported.
    failing_since: float | None = None
    blocked_reported: float = 0.0
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set when handing off


class UnitTable:
    """The units a pipeline owns. Loop-only."""

    def __init__(self) -> None:
        self._units: dict[Hashable, UnitState] = {}

    def __len__(self) -> int:
        return len(self._units)

    def __iter__(self) -> Iterator[UnitState]:
        return iter(list(self._units.values()))

    def assign(self, state: UnitState) -> UnitState | None:
        """Start owning ``state.unit``; returns the state it replaces, if any (a unit assigned
        again without a revoke in between: the old token is dead from now on)."""
        old = self._units.get(state.unit)
        if old is not None:
            old.handing_off = True
            old.released.set()
        self._units[state.unit] = state
        return old

    def get(self, unit: Hashable) -> UnitState | None:
        return self._units.get(unit)

    def owned(self, unit: Hashable, token: int) -> UnitState | None:
        """The unit's state if it is owned under ``token`` and not being handed off: new work
        (an invocation, a retry, a destination send, a checkpoint) may start."""
        state = self._units.get(unit)
        if state is None or state.token != token or state.handing_off:
            return None
        return state

    def completable(self, unit: Hashable, token: int) -> UnitState | None:
        """The unit's state if work done under ``token`` still counts (owned or handing off)."""
        state = self._units.get(unit)
        if state is None or state.token != token:
            return None
        return state

    def hand_off(self, unit: Hashable) -> UnitState | None:
        """Nothing new may start for ``unit``; what runs may finish. Returns its state."""
        state = self._units.get(unit)
        if state is not None:
            state.handing_off = True
            state.released.set()
        return state

    def drop(self, state: UnitState) -> None:
        """Forget the unit (after its final checkpoint): its token is dead."""
        if self._units.get(state.unit) is state:
            del self._units[state.unit]


async def wait_while_owned(state: UnitState, seconds: float) -> bool:
    """Sleep up to ``seconds``; return early, False, as soon as the unit is being handed off."""
    if state.handing_off:
        return False
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.released.wait(), timeout=seconds)
    return not state.handing_off
