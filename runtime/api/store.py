"""Where mappings created through the API live, so that they survive restarts and every pod
of a deployment runs the same set.

A stored mapping is the body the caller sent (Lambda's field names, exactly what the YAML file
holds), its tags, and its place in the mapping state machine. Every change is conditional on
the revision the writer read (an optimistic lock, as the lease tables use owner + counter), so
two pods or two API calls never overwrite each other's change unseen: the loser gets
:class:`StoreConflict` and Lambda's ResourceConflictException.

Two stores: :mod:`runtime.api.sqlite_store` (one file in ``ESM_DATA_DIR``, the default, one
pod) and :mod:`runtime.api.dynamodb_store` (a table shared by every pod).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol


class MappingStoreError(Exception):
    """The store cannot be read or written (the API answers ServiceException)."""


class StoreConflict(MappingStoreError):
    """The record changed (or appeared, or vanished) since the writer read it."""


@dataclass(frozen=True, slots=True)
class StoredMapping:
    uuid: str
    body: dict[str, Any]  # Create/Update fields, Lambda names (FunctionName, Enabled...)
    state: str  # one of runtime.api.shapes.STATES
    last_modified: float  # epoch seconds
    tags: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # StateTransitionReason when not the user's own change
    revision: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.body.get("Enabled", True))

    def replace(self, **changes: Any) -> StoredMapping:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "state": self.state,
            "last_modified": self.last_modified,
            "tags": self.tags,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, uuid: str, revision: int, d: dict[str, Any]) -> StoredMapping:
        return cls(
            uuid=uuid,
            body=dict(d["body"]),
            state=str(d["state"]),
            last_modified=float(d["last_modified"]),
            tags={str(k): str(v) for k, v in (d.get("tags") or {}).items()},
            reason=d.get("reason"),
            revision=revision,
        )


@dataclass(frozen=True, slots=True)
class PodState:
    """A pod's last word: when it last synced, and the revision of every stored mapping it
    runs as stored (so a change is settled only once every live pod has applied it)."""

    pod: str
    at: float  # epoch seconds, the pod's clock
    applied: dict[str, int] = field(default_factory=dict)  # mapping UUID -> revision


class MappingStore(Protocol):
    async def open(self) -> None:
        """Create the file or table when missing."""

    async def close(self) -> None: ...

    async def all(self) -> list[StoredMapping]:
        """Every stored mapping (a consistent read)."""

    async def create(self, record: StoredMapping) -> StoredMapping:
        """Store a new mapping (revision 1); StoreConflict if its UUID exists."""

    async def replace(self, record: StoredMapping) -> StoredMapping:
        """Write ``record`` over the stored one if that is still at ``record.revision``;
        return it at the next revision. StoreConflict otherwise."""

    async def delete(self, record: StoredMapping) -> None:
        """Remove the mapping if still at ``record.revision``; StoreConflict otherwise."""

    async def heartbeat(self, state: PodState) -> None:
        """Write this pod's state (unconditionally: only the pod itself writes it)."""

    async def pods(self) -> list[PodState]:
        """Every pod's last state (dead pods' too: the reader judges by ``at``)."""

    async def forget_pod(self, pod: str) -> None:
        """Remove a pod's state (it stopped cleanly; nobody waits for it)."""
