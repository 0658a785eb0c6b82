"""What the pipeline needs from an event source: two shapes of source, sharing one execution.

A source knows its broker and its data, nothing else. Filtering, batching, ordering,
invocation, the failure policy and destinations are the pipeline's, shared by every source.

- A **queue source** (SQS) is pulled: the pipeline's pollers call :meth:`QueueSource.fetch`
  while there is capacity; the broker redelivers what was not acknowledged, so the source
  acknowledges (deletes) succeeded records and lets failed ones come back.
- An **ordered source** (Kafka, Kinesis, DynamoDB Streams) hands out *work units*
  (partitions, shards) that one consumer owns at a time, under a *token* (an assignment epoch,
  a lease counter). It tells the core (:class:`UnitSink`, implemented by
  :mod:`runtime.ordered.pipeline`) when units come and go, delivers records stamped with
  their unit and token, pauses and resumes units on request, and writes the checkpoints the
  core asks for, saying which were confirmed. Failed records are retried by the runtime in
  place, so it also describes a batch for on-failure destination records.

Both shapes supply the same event data (:class:`EventShape`): the envelope, the identifier
parser of partial batch responses.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.invoke.response import IdentifierParser
from runtime.ordered.checkpoints import Checkpoint, CheckpointResult
from runtime.pipeline.records import Record


class SourceError(Exception):
    """A problem with the event source itself (missing queue, bad setting): shown to the user."""


class SourceUnreachable(SourceError):
    """The source did not answer (connection refused or reset, a timeout, a server error).

    Unlike a configuration problem this goes away by itself when the broker or service comes
    back: the mapping stays enabled and is retried with back-off, as Lambda keeps such a
    mapping Enabled with ``LastProcessingResult: PROBLEM: Connection error...``."""


# How a refused SASL handshake's problem begins (LastProcessingResult shows Lambda's text).
SASL_AUTHENTICATION_FAILED = "SASL authentication failed"


class SourceRefused(SourceUnreachable):
    """The source answered but refused the mapping's credentials (a wrong password or user,
    a failed TLS handshake).

    Retried like a source that does not answer rather than failed as a configuration error:
    every retry reads the secret again, so a corrected or rotated secret is picked up without
    a restart, and credentials refused for a moment during a rotation do not stop the pod and
    its other mappings. Lambda, too, keeps such a mapping Enabled and shows
    ``LastProcessingResult: PROBLEM: SASL authentication failed``."""


class EventShape(Protocol):
    # Bytes of the event envelope around the records (e.g. ``{"Records":[]}``).
    envelope_bytes: int
    # Turns a batchItemFailures itemIdentifier into a Record.item_id (None if malformed).
    parse_identifier: IdentifierParser

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        """The event a handler receives for these records."""


class FailureShape(EventShape, Protocol):
    """Sources whose given-up batches go to an on-failure destination."""

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        """The ``*BatchInfo`` key and block of an on-failure record."""


class QueueSource(EventShape, Protocol):
    # Most records one fetch can return.
    max_fetch: int

    async def check(self) -> None:
        """Reachable and usable, or SourceError (also the supervisor's pre-flight check)."""

    async def start(self) -> None:
        """Connect and check; raise SourceError with a clear message if unusable."""

    async def fetch(self, max_records: int) -> list[Record]:
        """Wait for records (long poll); return [] if none came."""

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        """Acknowledge ``succeeded``; let ``failed`` be delivered again. Return records acked."""

    async def release(self, records: list[Record], delay_seconds: int = 0) -> None:
        """Give back records fetched but not invoked (shutdown, or filtered out under
        ``FilteredOutMessages: Keep``), visible again after ``delay_seconds``."""

    async def close(self) -> None:
        """Stop background work and free connections."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """A unit the source now owns: from ``confirmed`` (the last checkpointed position; None
    when the unit has no checkpoint yet) on, under ``token``."""

    unit: Hashable
    token: int
    confirmed: int | None


class UnitSink(Protocol):
    """The ordered-unit core, as a source sees it. Called on the event loop only."""

    def assigned(self, units: list[Assignment]) -> None:
        """These units are ours from now on (records stamped with their token follow)."""

    async def revoke(
        self, units: set[Hashable], *, lost: bool = False, wait_seconds: float | None = None
    ) -> list[Checkpoint]:
        """These units are being handed over. Nothing new starts for them; running
        invocations finish (bounded by the function's timeout, or by ``wait_seconds`` when
        the source's ownership ends sooner: a lease about to expire). Returns the final checkpoints
        to write before the hand-off completes ([] when ``lost``: someone else may own them
        already, so nothing may be written). Report their results with :meth:`confirm`."""

    def confirm(self, results: list[CheckpointResult]) -> None:
        """Which checkpoints the source wrote (and the broker confirmed)."""

    def accept(self, records: list[Record]) -> None:
        """New records, in fetch order per unit, stamped with unit and token."""

    def source_failed(self, reason: str) -> None:
        """The source cannot go on (its consumer died): drain and let the worker restart."""


class OrderedSource(FailureShape, Protocol):
    async def check(self) -> None:
        """Reachable and usable, or SourceError (the supervisor's pre-flight check)."""

    async def start(self, sink: UnitSink) -> None:
        """Connect, check and start delivering to ``sink``; SourceError if unusable."""

    def pause(self, units: list[Hashable]) -> None:
        """Stop fetching these units (flow control)."""

    def resume(self, units: list[Hashable]) -> None:
        """Fetch these units again."""

    def stop_fetching(self) -> None:
        """Shutdown begins: deliver nothing more."""

    async def write_checkpoints(self, checkpoints: list[Checkpoint]) -> list[CheckpointResult]:
        """Write checkpoints of owned units; say, per checkpoint, whether it was confirmed."""

    async def read_lag(self, confirmed: dict[Hashable, int | None]) -> dict[Hashable, float]:
        """How far behind each unit is, measured from its confirmed checkpoint."""

    def caught_up(self, unit: Hashable) -> bool:
        """Whether the unit's last read found nothing more to read (its reader is at the
        stream's tip): a tumbling window may then be closed by the clock."""

    def lag_gauge(self, unit: Hashable) -> Any:
        """The gauge (labelled child) that shows a unit's lag (OffsetLag, IteratorAge)."""

    async def close(self) -> None:
        """Stop the consumer and free connections (final checkpoints are already written)."""
