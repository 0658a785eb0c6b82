"""The lease table: one lease per (mapping, shard), changed only by conditional writes.

KCL's protocol is the model (design lessons §3). A lease holds

- ``owner``: the lease owner (one worker process of one pod; None: free) and ``counter``,
  which every write by the owner increments. Every write is conditional on the owner and
  counter the writer last saw, so a worker that lost its lease (taken after it stopped
  renewing, evicted by its supervisor after it died) can neither renew it nor move its
  checkpoint: **the checkpoint write is the fence**;
- ``checkpoint``: where the shard resumes (:class:`Position`): after a sequence number, at
  one (a LATEST start pinned to the first record read, so a worker that dies before its
  first checkpoint does not skip what it read), or ``SHARD_END`` (the shard is finished: its
  children may start);
- ``parents``: the shard's parent shards (a split has one, a merge two); a shard is read
  only once every parent known to the table has ended;
- ``pending_owner``: a balanced hand-off asked for by another worker; the owner finishes
  what runs, writes its final checkpoint and frees the lease (never taken from under a
  running invocation).

Two implementations with one contract: :mod:`runtime.leases.sqlite_store` (one pod, a file in
the data directory) and :mod:`runtime.leases.dynamodb_store` (many pods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a shard resumes: ``after`` or ``at`` a sequence number, or at its end."""

    kind: str  # "after" | "at" | "end"
    sequence: str = ""

    def encode(self) -> str:
        return SHARD_END if self.kind == "end" else f"{self.kind}:{self.sequence}"

    @classmethod
    def decode(cls, text: str | None) -> Position | None:
        if not text:
            return None
        if text == SHARD_END:
            return END
        kind, _, seq = text.partition(":")
        if kind not in ("after", "at") or not seq.isdigit():
            raise ValueError(f"malformed lease checkpoint {text!r}")
        return cls(kind, seq)

    @property
    def ended(self) -> bool:
        return self.kind == "end"


END = Position("end")


@dataclass(frozen=True, slots=True)
class Lease:
    shard: str
    owner: str | None
    counter: int
    checkpoint: Position | None
    parents: tuple[str, ...] = ()
    pending_owner: str | None = None

    @property
    def ended(self) -> bool:
        return self.checkpoint is not None and self.checkpoint.ended


class LeaseStoreError(Exception):
    """The lease store cannot be reached or used (shown to the user)."""


class LeaseStore(Protocol):
    """The leases of one mapping. Every method that changes a lease is conditional on the
    owner and counter of the ``lease`` passed in, and returns the lease as written, or None
    when the condition failed (someone else changed it: for its owner, the lease is lost).
    Errors reaching the store raise."""

    async def open(self) -> None:
        """Create what is missing (the file, the table)."""

    async def ensure(self, shards: list[tuple[str, tuple[str, ...]]]) -> None:
        """Create leases for shards (id, parents) that have none; keep existing ones."""

    async def list(self) -> list[Lease]:
        """Every lease of the mapping."""

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Become the owner (the lease was free or expired); clears a pending hand-off."""

    async def renew(self, lease: Lease) -> Lease | None:
        """Still alive: increment the counter (others watch it to detect expiry)."""

    async def checkpoint(self, lease: Lease, position: Position) -> Lease | None:
        """Move the checkpoint (the fence: only the current owner can)."""

    async def release(self, lease: Lease) -> Lease | None:
        """Free the lease (a hand-off or shutdown, after the final checkpoint)."""

    async def request(self, lease: Lease, requester: str) -> bool:
        """Ask the owner for a hand-off (balancing); False if one is already asked for or the
        lease changed owner."""

    async def delete(self, lease: Lease) -> bool:
        """Remove an ended lease nobody holds (its children have started: it is no longer
        needed to order them); False if it changed meanwhile."""

    async def evict(self, owner: str) -> int:
        """Free every lease held by ``owner`` (a worker its supervisor saw die); returns how
        many. Only for an owner known to be dead: nothing fences it otherwise."""

    async def close(self) -> None: ...
