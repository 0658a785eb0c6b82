"""Running one batch to its end: invoke, interpret, retry or give up, acknowledge.

Two policies, chosen by the mapping's source (data, not code paths in the sources):
- the broker redelivers (SQS): invoke once; succeeded records are acknowledged, failed ones
  are left for the queue to deliver again;
- retry in place (Kafka, Kinesis, DynamoDB): failed records are retried here, bisected,
  expired or given up according to :mod:`runtime.pipeline.failure`, while the batch keeps its
  lane so nothing later in that lane runs first. A given-up batch goes to the on-failure
  destination, and is acknowledged only once the destination confirmed the write; without a
  destination it is logged with its coordinates and counted as dropped.

Whatever the policy: in a lane, a failure also fails every later record of the lane
(:func:`split_by_outcome`); and whatever an invocation raises inside the runtime (building the
event, marshalling, parsing the response), the batch ends as a function error with a message
saying what happened, so its records are never left unacknowledged and unretried.

Ownership (:class:`Acknowledger`): for ordered sources, work may start only while the batch's
unit is owned. The check runs before every invocation, every retry and every destination
send; a backoff ends early when the unit is handed off. Results of work whose unit was lost
are given to the acknowledger, which drops them (their records belong to the next owner).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import structlog

from runtime.config.resolved import Mapping
from runtime.invoke.invoker import FunctionError, InvocationResult, Invoker
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
from runtime.sources.base import EventShape, FailureShape

log = structlog.get_logger("runtime.pipeline")

_DESTINATION_BACKOFF = (0.5, 30.0)
# Lambda's error type for a failure of the runtime around the handler.
RUNTIME_UNKNOWN = "Runtime.Unknown"
# The error type of a response that breaks a rule of the mapping (a window without state).
INVALID_RESPONSE = "InvalidResponse"


class Destination(Protocol):
    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None: ...


class Acknowledger(Protocol):
    """Where a batch's records go when execution is done with them, and who owns them."""

    def may_start(self, records: list[Record]) -> bool:
        """Whether new work (invocation, retry, destination send) on these records may start."""

    async def wait(self, records: list[Record], seconds: float) -> bool:
        """Back off; return early, False, when the records' unit is handed off meanwhile."""

    async def settle(self, succeeded: list[Record], failed: list[Record]) -> None:
        """Acknowledge ``succeeded`` (delete, complete for the checkpoint); let ``failed``
        come back (queue sources only: retrying sources never settle a failure)."""


RecordBuilder = Callable[..., dict[str, Any]]


def outcome_of(
    result: InvocationResult, records: list[Record], mapping: Mapping, shape: EventShape
) -> BatchOutcome:
    """What an invocation result means for its batch (esm-spec §2)."""
    if result.error is not None:
        return BatchOutcome(OutcomeKind.FAILURE, reason=result.error.error_type)
    if not mapping.report_batch_item_failures:
        return SUCCESS
    return parse_batch_response(
        result.response, {r.item_id for r in records}, shape.parse_identifier
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


def unit_name(records: list[Record], default: str) -> str:
    """The work unit of a batch (shard id, "topic-partition") for S3 keys and logs."""
    unit = records[0].unit if records else None
    return default if unit is None else str(unit)


class BatchExecution:
    """Executes batches of one mapping (one instance per pipeline)."""

    def __init__(
        self,
        mapping: Mapping,
        shape: EventShape,
        invoker: Invoker,
        metrics: MappingMetrics,
        acks: Acknowledger,
        *,
        retry: RetryPolicy | None = None,
        failure_shape: FailureShape | None = None,
        destination: Destination | None = None,
        record_builder: RecordBuilder | None = None,
        on_function_error: Callable[[], None] = lambda: None,
        response_check: Callable[[list[Record], Any], str | None] | None = None,
    ) -> None:
        self.mapping = mapping
        self._shape = shape
        self._invoker = invoker
        self._metrics = metrics
        self._acks = acks
        self._retry = retry
        self._failure_shape = failure_shape
        self._destination = destination
        self._record_builder = record_builder
        self._on_function_error = on_function_error
        # Extra rules for a response (a tumbling window's "state"): a message fails the batch.
        self._response_check = response_check
        self._log = log.bind(
            event_source_mapping_uuid=mapping.uuid, function_name=mapping.function.name
        )

    async def run(self, batch: Batch) -> None:
        if self._retry is None:
            await self._run_once(batch.records)
        else:
            await self._run_with_retries(batch.records, self._retry)

    # ------------------------------------------------------------- broker redelivers

    async def _run_once(self, records: list[Record]) -> None:
        invoked = await self._invoke(records)
        if invoked is not None:
            await self._acks.settle(invoked[1], invoked[2])

    # ------------------------------------------------------------- retry in place

    async def _run_with_retries(self, records: list[Record], policy: RetryPolicy) -> None:
        work: deque[Attempt] = deque([Attempt(records)])
        last_request_id: str | None = None
        while work:
            attempt = work.popleft()
            if not self._acks.may_start(attempt.records):
                self._handed_off(attempt.records)
                return
            expired, live = split_expired(attempt.records, policy)
            # Lambda counts the invocation that did not happen: records that expire before
            # their first invocation report approximateInvokeCount 1 (recorded).
            if expired and not await self._give_up(
                expired,
                RECORD_AGE_EXCEEDED,
                attempt,
                last_request_id,
                invoke_count=max(1, attempt.invocations),
            ):
                return
            if not live:
                continue
            attempt.records = live
            if len(live) == 1 and self._event_size(live) > MAX_PAYLOAD_BYTES:
                if not await self._give_up(live, MAXIMUM_PAYLOAD_SIZE_EXCEEDED, attempt, None):
                    return
                continue
            invoked = await self._invoke(live, functools.partial(self._acks.may_start, live))
            if invoked is None:  # handed off while waiting for the give-up or a slot
                self._handed_off(live)
                return
            result, succeeded, failed = invoked
            attempt.invocations += 1
            attempt.function_error = result.error is not None
            last_request_id = result.request_id
            if succeeded:
                await self._acks.settle(succeeded, [])
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
            if decision.delay and not await self._acks.wait(failed, decision.delay):
                self._handed_off(failed)
                return
            work.extendleft(reversed(decision.parts))

    def _event_size(self, records: list[Record]) -> int:
        try:
            return event_size(self._shape.build_event(records))
        except Exception:
            return 0  # the invocation reports what is wrong with building the event

    def _handed_off(self, records: list[Record]) -> None:
        # Nothing after a failure of a lane was acknowledged, so dropping the failed records
        # drops the rest of the batch too: the unit's next owner reads them again.
        self._log.info(
            "unit handed off; its next owner takes the rest of the batch",
            unit=unit_name(records, self.mapping.source.identity),
            first=str(records[0].item_id),
        )

    async def _give_up(
        self,
        records: list[Record],
        condition: str,
        attempt: Attempt,
        request_id: str | None,
        *,
        invoke_count: int | None = None,
    ) -> bool:
        """Hand ``records`` to the on-failure destination (or drop them), then acknowledge.

        Returns False when the records' unit was handed off before the destination confirmed
        the write: they stay unacknowledged, so the next owner gets them again.
        """
        count = attempt.invocations if invoke_count is None else invoke_count
        unit = unit_name(records, self.mapping.source.identity)
        coordinates = {
            "unit": unit,
            "condition": condition,
            "records": len(records),
            "approximate_invoke_count": count,
            "first": str(records[0].item_id),
            "last": str(records[-1].item_id),
        }
        if self._destination is not None and self._record_builder is not None:
            assert self._failure_shape is not None
            event = self._failure_shape.build_event(records)
            key, info = self._failure_shape.batch_info(records, event_size(event))
            record = self._record_builder(
                request_id=request_id or str(uuid.uuid4()),
                function_arn=self.mapping.function.arn,
                condition=condition,
                approximate_invoke_count=count,
                # Lambda's records: "Unhandled" after a function error, null after partial
                # batch failures (and for the other conditions, which the builder shapes).
                function_error="Unhandled" if attempt.function_error else None,
                batch_info_key=key,
                batch_info=info,
                timestamp=dt.datetime.now(dt.UTC),
            )
            delay = _DESTINATION_BACKOFF[0]
            while True:
                if not self._acks.may_start(records):
                    return False
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
                    if not await self._acks.wait(records, delay):
                        return False
                    delay = min(delay * 2, _DESTINATION_BACKOFF[1])
            self._metrics.onfailure_delivered.inc(len(records))
            self._log.warning(
                "batch given up and sent to the on-failure destination", **coordinates
            )
        else:
            if not self._acks.may_start(records):
                return False
            self._metrics.dropped.inc(len(records))
            self._log.error(
                "batch given up without an on-failure destination: records dropped",
                **coordinates,
            )
        await self._acks.settle(records, [])
        return True

    # ------------------------------------------------------------- one invocation

    async def _invoke(
        self, records: list[Record], start_if: Callable[[], bool] | None = None
    ) -> tuple[InvocationResult, list[Record], list[Record]] | None:
        """One invocation: (result, succeeded, failed), or None when ``start_if`` said no
        once the invocation could start."""
        m = self._metrics
        try:
            event = self._shape.build_event(records)
            invoked = await self._invoker.invoke(event, m, start_if)
            if invoked is None:
                return None
            result = invoked
            if result.error is None and self._response_check is not None:
                problem = self._response_check(records, result.response)
                if problem is not None:
                    m.errors.inc()
                    result = InvocationResult(
                        result.request_id,
                        None,
                        FunctionError(INVALID_RESPONSE, problem),
                        result.duration,
                    )
            outcome = outcome_of(result, records, self.mapping, self._shape)
        except Exception as exc:
            # A failure of the runtime around the handler: the batch fails as a function
            # error would, so the failure policy (redelivery, retries) applies to it.
            m.errors.inc()
            result = InvocationResult(
                str(uuid.uuid4()),
                None,
                FunctionError(
                    RUNTIME_UNKNOWN,
                    f"the runtime failed to invoke the function: {type(exc).__name__}: "
                    f"{str(exc)[:500]}",
                ),
                0.0,
            )
            outcome = BatchOutcome(OutcomeKind.FAILURE, reason=RUNTIME_UNKNOWN)
        m.batch_size.observe(len(records))
        m.invoked.inc(len(records))
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
