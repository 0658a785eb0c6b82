"""Collecting records into batches: by count, by payload size and by batching window.

A batch closes when the next record would pass ``max_records`` or the 6 MB payload, or when its
window ends. The window starts when the first record joins (Lambda's Kafka rule, applied to
every source: a quiet source never yields a batch cut short by a window that started while it
was empty). A window of 0 means "no waiting": whatever one fetch returned is a batch.

This class does no I/O and never sleeps; the pipeline asks for :attr:`deadline` and calls
:meth:`flush_due`. It is per batch key (one per Kafka partition, one for an SQS queue).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence

from runtime.pipeline.records import MAX_PAYLOAD_BYTES, Batch, Record

_size = operator.attrgetter("size")


class Batcher:
    def __init__(
        self,
        max_records: int,
        window_seconds: float,
        *,
        envelope_bytes: int,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.max_records = max_records
        self.window_seconds = window_seconds
        self.envelope_bytes = envelope_bytes
        self.max_payload_bytes = max_payload_bytes
        self._clock = clock
        self._records: list[Record] = []
        self._bytes = envelope_bytes
        self._opened_at = 0.0

    @property
    def open_count(self) -> int:
        return len(self._records)

    @property
    def first(self) -> Record | None:
        """The first record of the open batch (None when empty)."""
        return self._records[0] if self._records else None

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which the open batch's window ends (None when empty)."""
        if not self._records:
            return None
        return self._opened_at + self.window_seconds

    def add(self, records: Sequence[Record]) -> list[Batch]:
        """Add fetched records; return the batches they completed.

        With a zero window the open batch is closed at the end of the call, so one fetch
        makes one batch (or several, if it passes the limits). Records are taken a slice at a
        time (up to the room left in the open batch); only a slice that would reach the
        payload limit is gone through record by record.
        """
        closed: list[Batch] = []
        i, n = 0, len(records)
        while i < n:
            if not self._records:
                self._opened_at = self._clock()
            room = self.max_records - len(self._records)
            chunk = records[i : i + room]
            chunk_bytes = sum(map(_size, chunk))
            if self._bytes + chunk_bytes < self.max_payload_bytes:
                self._records.extend(chunk)
                self._bytes += chunk_bytes
                i += len(chunk)
                if len(self._records) >= self.max_records:
                    closed.append(self._close())
                continue
            for rec in chunk:  # this slice reaches the payload limit somewhere
                if self._records and self._bytes + rec.size > self.max_payload_bytes:
                    closed.append(self._close())
                if not self._records:
                    self._opened_at = self._clock()
                self._records.append(rec)
                self._bytes += rec.size
                i += 1
                if len(self._records) >= self.max_records or self._bytes >= self.max_payload_bytes:
                    closed.append(self._close())
                    break  # the room left changed: take the next slice
        if self.window_seconds <= 0 and self._records:
            closed.append(self._close())
        return closed

    def flush_due(self, now: float | None = None) -> Batch | None:
        deadline = self.deadline
        if deadline is None:
            return None
        if (self._clock() if now is None else now) >= deadline:
            return self._close()
        return None

    def flush(self) -> Batch | None:
        return self._close() if self._records else None

    def _close(self) -> Batch:
        batch = Batch(records=self._records, payload_bytes=self._bytes, opened_at=self._opened_at)
        self._records = []
        self._bytes = self.envelope_bytes
        return batch
