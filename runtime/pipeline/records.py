"""The unit of work between a source and the handler, and a batch of them.

A :class:`Record` is built once by its source, already in the shape the handler receives, with
its JSON size computed once: everything after the source only moves references around. The
``ack`` token is opaque to the pipeline (an SQS receipt handle, a Kafka offset, a stream
sequence number) and goes back to the source that made it.

Records of ordered sources also name their work ``unit`` (a Kafka partition, a shard) and the
ownership ``token`` under which they were fetched (an assignment epoch, a lease counter): work
done under a token the worker no longer holds is dropped, never acknowledged
(:mod:`runtime.ordered.ownership`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

# Lambda's synchronous invocation payload limit (6 MB), which caps every batch.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


@dataclass(slots=True)
class Record:
    payload: dict[str, Any]  # the record as the handler sees it (one element of the event)
    size: int  # bytes this record adds to the JSON event
    item_id: Hashable  # what a batchItemFailures itemIdentifier names (SQS: messageId)
    ack: Any  # source-specific acknowledgement token (ordered sources: the position)
    lane: Hashable | None = None  # ordering key; None = unordered
    timestamp_ms: float = 0.0  # when the source stored it (epoch ms; 0 = unknown), for ages
    unit: Hashable | None = None  # ordered sources: the work unit (partition, shard)
    token: int = 0  # ordered sources: the ownership token the record was fetched under


@dataclass(slots=True)
class Batch:
    records: list[Record]
    payload_bytes: int
    opened_at: float = 0.0  # monotonic time the first record joined

    def __len__(self) -> int:
        return len(self.records)
