"""What the pipeline needs from an event source, and nothing more.

A source knows its broker: it fetches records already shaped as the handler will see them,
wraps a batch in the source's event envelope, and acknowledges (or gives back) records when the
pipeline is done with them. Filtering, batching, ordering, invocation and the failure policy
are the pipeline's, shared by every source.
"""

from __future__ import annotations

from typing import Any, Protocol

from runtime.invoke.response import IdentifierParser
from runtime.pipeline.records import Record


class SourceError(Exception):
    """A problem with the event source itself (missing queue, bad setting): shown to the user."""


class Source(Protocol):
    # Bytes of the event envelope around the records (e.g. ``{"Records":[]}``).
    envelope_bytes: int
    # Most records one fetch can return.
    max_fetch: int
    # Turns a batchItemFailures itemIdentifier into a Record.item_id (None if malformed).
    parse_identifier: IdentifierParser

    async def start(self) -> None:
        """Connect and check the source; raise SourceError with a clear message if unusable."""

    async def fetch(self, max_records: int) -> list[Record]:
        """Wait for records (long poll); return [] if none came."""

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        """The event a handler receives for these records."""

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        """Acknowledge ``succeeded``; let ``failed`` be delivered again. Return records acked."""

    async def release(self, records: list[Record]) -> None:
        """Give back records that were fetched but will not be invoked (shutdown)."""

    async def close(self) -> None:
        """Stop background work (visibility extension, consumers) and free connections."""
