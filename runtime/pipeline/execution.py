"""Running one batch to its end: invoke, interpret, retry or give up, acknowledge.

Two policies, chosen by the source (data, not code paths in the sources):
- the broker redelivers (SQS): invoke once; succeeded records are acknowledged, failed ones
  are left for the queue to deliver again;
- retry in place (Kafka, Kinesis, DynamoDB): failed records are retried here, bisected,
  expired or given up according to :mod:`runtime.pipeline.failure`, while the batch keeps its
  lane so nothing later in that lane runs first. A given-up batch goes to the on-failure
  destination, and is acknowledged only once the destination confirmed the write; without a
  destination it is logged with its coordinates and counted as dropped.

Whatever the policy: in a lane, a failure also fails every later record of the lane
(:func:`split_by_outcome`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import structlog

from runtime.config.resolved import Mapping
from runtime.invoke.invoker import InvocationResult, Invoker
from runtime.invoke.response import SUCCESS, BatchOutcome, OutcomeKind, parse_batch_response
from runtime.metrics import MappingMetrics
from runtime.pipeline.failure import (
    MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
    RECORD_AGE_EXCEEDED,
    Attempt,
    GiveUp,
    RetryPolicy,
    after_failure,
    split_expired,
)
from runtime.pipeline.records import MAX_PAYLOAD_BYTES, Batch, Record
from runtime.sources.base import Source

log = structlog.get_logger("runtime.pipeline")

_DESTINATION_BACKOFF = (0.5, 30.0)


class Destination(Protocol):
    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None: ...


RecordBuilder = Callable[..., dict[str, Any]]


def outcome_of(
    result: InvocationResult, records: list[Record], mapping: Mapping, source: Source
) -> BatchOutcome:
    """What an invocation result means for its batch (esm-spec §2)."""
    if result.error is not None:
        return BatchOutcome(OutcomeKind.FAILURE, reason=result.error.error_type)
    if not mapping.report_batch_item_failures:
        return SUCCESS
    return parse_batch_response(
        result.response, {r.item_id for r in records}, source.parse_identifier
    )


def split_by_outcome(
    outcome: BatchOutcome, records: list[Record]
) -> tuple[list[Record], list[Record]]:
    """(succeeded, failed) records of a batch.

    In a lane (FIFO message group, partition, shard) order is the point: once a record
    failed, every later record of its lane fails with it and comes back, even if the handler
    did not report it (Lambda's FIFO rule, and the streams' "checkpoint at the first failure").
    """
    if outcome.kind is OutcomeKind.SUCCESS:
        return records, []
    if outcome.kind is OutcomeKind.FAILURE:
        return [], records
    failed_ids = outcome.failed_ids
    stopped: set[Hashable] = set()  # lanes that have had a failure
    ok: list[Record] = []
    bad: list[Record] = []
    for r in records:
        if r.item_id in failed_ids or (r.lane is not None and r.lane in stopped):
            bad.append(r)
            if r.lane is not None:
                stopped.add(r.lane)
        else:
            ok.append(r)
    return ok, bad


def event_size(event: dict[str, Any]) -> int:
    return len(json.dumps(event, separators=(",", ":")))


class BatchExecution:
    """Executes batches of one mapping (one instance per pipeline)."""

    def __init__(
        self,
        mapping: Mapping,
        source: Source,
        invoker: Invoker,
        metrics: MappingMetrics,
        *,
        retry: RetryPolicy | None,
        destination: Destination | None,
        record_builder: RecordBuilder | None,
        on_function_error: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.mapping = mapping
        self._source = source
        self._invoker = invoker
        self._metrics = metrics
        self._retry = retry
        self._destination = destination
        self._record_builder = record_builder
        self._on_function_error = on_function_error
        self._stopping = stopping
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )
        self._ack_counter = getattr(metrics, source.ack_metric)

    async def run(self, batch: Batch) -> None:
        if self._retry is None:
            await self._run_once(batch.records)
        else:
            await self._run_with_retries(batch.records, self._retry)

    # ------------------------------------------------------------- broker redelivers

    async def _run_once(self, records: list[Record]) -> None:
        _, succeeded, failed = await self._invoke(records)
        acked = await self._source.complete(succeeded, failed)
        self._ack_counter.inc(acked)

    # ------------------------------------------------------------- retry in place

    async def _run_with_retries(self, records: list[Record], policy: RetryPolicy) -> None:
        work: deque[Attempt] = deque([Attempt(records)])
        last_request_id: str | None = None
        while work:
            attempt = work.popleft()
            if self._stopping() and attempt.invocations:
                # Shutting down mid-retry: leave the rest unacknowledged; the next owner of
                # the lane starts again from the last checkpoint.
                return
            expired, live = split_expired(attempt.records, policy)
            if expired:
                await self._give_up(expired, RECORD_AGE_EXCEEDED, attempt, last_request_id)
            if not live:
                continue
            attempt.records = live
            size = event_size(self._source.build_event(live)) if len(live) == 1 else 0
            if size > MAX_PAYLOAD_BYTES:
                await self._give_up(live, MAXIMUM_PAYLOAD_SIZE_EXCEEDED, attempt, None)
                continue
            result, succeeded, failed = await self._invoke(live)
            attempt.invocations += 1
            attempt.function_error = result.error is not None
            last_request_id = result.request_id
            if succeeded:
                self._ack_counter.inc(await self._source.complete(succeeded, []))
            if not failed:
                continue
            decision = after_failure(
                attempt, failed, function_error=result.error is not None, policy=policy
            )
            if isinstance(decision, GiveUp):
                if not await self._give_up(
                    decision.records, decision.condition, attempt, last_request_id
                ):
                    return
                continue
            self._metrics.retries.inc(len(failed))
            if decision.delay:
                await asyncio.sleep(decision.delay)
            work.extendleft(reversed(decision.parts))

    async def _give_up(
        self, records: list[Record], condition: str, attempt: Attempt, request_id: str | None
    ) -> bool:
        """Hand ``records`` to the on-failure destination (or drop them), then acknowledge.

        Returns False when shutdown interrupted a destination that kept failing: the records
        stay unacknowledged, so they are not lost.
        """
        event = self._source.build_event(records)
        unit = self._source.unit_of(records)
        coordinates = {
            "unit": unit,
            "condition": condition,
            "records": len(records),
            "approximate_invoke_count": attempt.invocations,
            "first": str(records[0].item_id),
            "last": str(records[-1].item_id),
        }
        if self._destination is not None and self._record_builder is not None:
            key, info = self._source.batch_info(records, event_size(event))
            record = self._record_builder(
                request_id=request_id or str(uuid.uuid4()),
                function_arn=self.mapping.function.arn,
                condition=condition,
                approximate_invoke_count=attempt.invocations,
                # Lambda's records: "Unhandled" after a function error, null after partial
                # batch failures (and for the other conditions, which the builder shapes).
                function_error="Unhandled" if attempt.function_error else None,
                batch_info_key=key,
                batch_info=info,
                timestamp=dt.datetime.now(dt.UTC),
            )
            delay = _DESTINATION_BACKOFF[0]
            while True:
                try:
                    await self._destination.send(
                        record, event=event, mapping_uuid=self.mapping.uuid, unit=unit
                    )
                    break
                except Exception as exc:
                    self._metrics.destination_delivery_failures.inc()
                    self._log.error(
                        "on-failure destination failed; holding the lane and retrying",
                        error=str(exc)[:500],
                        retry_in=delay,
                        **coordinates,
                    )
                    if self._stopping():
                        return False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _DESTINATION_BACKOFF[1])
            self._metrics.onfailure_delivered.inc(len(records))
            self._log.warning(
                "batch given up and sent to the on-failure destination", **coordinates
            )
        else:
            self._metrics.dropped.inc(len(records))
            self._log.error(
                "batch given up without an on-failure destination: records dropped",
                **coordinates,
            )
        self._ack_counter.inc(await self._source.complete(records, []))
        return True

    # ------------------------------------------------------------- one invocation

    async def _invoke(
        self, records: list[Record]
    ) -> tuple[InvocationResult, list[Record], list[Record]]:
        m = self._metrics
        event = self._source.build_event(records)
        m.batch_size.observe(len(records))
        m.invoked.inc(len(records))
        result = await self._invoker.invoke(event, m)
        outcome = outcome_of(result, records, self.mapping, self._source)
        succeeded, failed = split_by_outcome(outcome, records)
        if failed:
            m.failed_invoke.inc(len(failed))
        if result.error is not None:
            self._on_function_error()
        self._log_invocation(result, outcome, len(records), len(failed))
        return result, succeeded, failed

    def _log_invocation(
        self, result: InvocationResult, outcome: BatchOutcome, records: int, failed: int
    ) -> None:
        fields: dict[str, Any] = {
            "records": records,
            "duration_ms": round(result.duration * 1000, 2),
            "outcome": outcome.kind.value,
        }
        if outcome.kind is OutcomeKind.SUCCESS:
            self._log.info("invocation", **fields)
            return
        fields["failed_records"] = failed
        if result.error is not None:
            fields["error_type"] = result.error.error_type
            fields["error_message"] = result.error.error_message[:2000]
        elif outcome.reason:
            fields["reason"] = outcome.reason
        self._log.warning("invocation", **fields)
