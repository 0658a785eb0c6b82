"""What the pipeline needs from an event source, and nothing more.

A source knows its broker: it fetches records already shaped as the handler will see them,
wraps a batch in the source's event envelope, and acknowledges (or gives back) records when the
pipeline is done with them. Filtering, batching, ordering, invocation and the failure policy
are the pipeline's, shared by every source.

Two ways of fetching:
- *pull* (SQS): the pipeline's pollers call :meth:`Source.fetch` while it has capacity;
- *push* (Kafka, later Kinesis): the source fetches on its own (a consumer thread, shard
  iterators), hands records to its :class:`RecordSink`, and throttles itself per lane
  (pauses a partition whose records are not being consumed fast enough), so one slow lane
  never stops the others.

Sources whose records are retried in place (Kafka, Kinesis, DynamoDB: ``retries_in_process``)
also describe a batch for on-failure destination records.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal, Protocol

from runtime.invoke.response import IdentifierParser
from runtime.pipeline.records import Record


class SourceError(Exception):
    """A problem with the event source itself (missing queue, bad setting): shown to the user."""


class RecordSink(Protocol):
    """The pipeline, as a push source sees it. Called on the event loop only."""

    def accept(self, records: list[Record]) -> None:
        """New records, in fetch order per lane."""

    async def revoke(self, lanes: set[Hashable], wait_seconds: float) -> None:
        """The source no longer owns ``lanes``: drop their waiting records, and wait up to
        ``wait_seconds`` for their in-flight batches to finish."""


class Source(Protocol):
    mode: Literal["pull", "push"]
    # Batch records per lane (a Kafka partition) rather than in one stream (an SQS queue).
    batch_per_lane: bool
    # Failed records are retried here (streams, Kafka), not redelivered by the broker (SQS).
    retries_in_process: bool
    # Bytes of the event envelope around the records (e.g. ``{"Records":[]}``).
    envelope_bytes: int
    # Most records one fetch can return (pull sources).
    max_fetch: int
    # Turns a batchItemFailures itemIdentifier into a Record.item_id (None if malformed).
    parse_identifier: IdentifierParser
    # Prometheus counter the acknowledgements count in (SQS: deleted; Kafka: committed).
    ack_metric: str
    # On shutdown, invoke records already fetched (SQS: they are invisible until then) rather
    # than leaving them for the next owner (Kafka: they are simply read again).
    invoke_fetched_on_drain: bool

    async def start(self, sink: RecordSink) -> None:
        """Connect and check the source; raise SourceError with a clear message if unusable.
        Push sources start delivering to ``sink``."""

    async def check(self) -> None:
        """Pre-flight check by the supervisor: reachable and usable, or SourceError."""

    async def fetch(self, max_records: int) -> list[Record]:
        """Pull sources: wait for records (long poll); return [] if none came."""

    def stop_fetching(self) -> None:
        """Shutdown begins: fetch nothing more (push sources pause everything)."""

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        """The event a handler receives for these records."""

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        """Acknowledge ``succeeded``; let ``failed`` be delivered again. Return records acked."""

    async def release(self, records: list[Record], delay_seconds: int = 0) -> None:
        """Give back records that were fetched but will not be invoked (shutdown, or SQS
        messages filtered out under ``FilteredOutMessages: Keep``), visible again after
        ``delay_seconds``."""

    async def close(self) -> None:
        """Stop background work, commit what is complete, free connections."""

    def batch_info(self, records: list[Record], payload_size: int) -> tuple[str, dict[str, Any]]:
        """The ``*BatchInfo`` block of an on-failure record (retrying sources)."""

    def unit_of(self, records: list[Record]) -> str:
        """The work unit of these records (shard id, "topic-partition") for S3 keys and logs."""
