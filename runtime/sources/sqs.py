"""Amazon SQS as an event source: long-poll receive, Lambda's record format, delete on success.

Semantics (esm-spec §2.1, §5.1):
- a fetch is one ReceiveMessage long poll of up to 10 messages, with every system and message
  attribute, turned into records exactly as Lambda shapes them (compare
  tests/conformance and the AWS-recorded snapshots);
- succeeded messages are deleted (DeleteMessageBatch, 10 per call); failed ones are left alone
  and come back when their visibility timeout ends, so the queue's own redrive policy moves
  them to its DLQ after maxReceiveCount;
- beyond Lambda: while a message is held by the runtime (waiting in a batching window or in a
  running batch) its visibility is extended, so a slow handler does not cause a second
  delivery. Extension stops as soon as the batch is done.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Iterable
from typing import Any

import structlog

from runtime.config.resolved import Mapping
from runtime.config.settings import Settings
from runtime.invoke.response import IdentifierParser, string_identifier
from runtime.metrics import MappingMetrics
from runtime.pipeline.records import Record
from runtime.sources.aws import AwsClients, error_code, is_unreachable
from runtime.sources.base import SourceError, SourceUnreachable
from runtime.sources.health import SourceHealth

log = structlog.get_logger("runtime.sources.sqs")

# System attributes in the order Lambda writes them into a record's "attributes".
_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
_ENVELOPE = len('{"Records":[]}')
_SQS_BATCH_LIMIT = 10  # entries per ReceiveMessage / DeleteMessageBatch / ChangeVisibilityBatch
_FETCH_ERROR_BACKOFF = (0.5, 30.0)


def message_attributes(raw: dict[str, Any] | None) -> dict[str, Any]:
    """SQS API message attributes → Lambda's camelCase shape (binary values in base64)."""
    if not raw:
        return {}
    out: dict[str, Any] = {}
    for name, attr in raw.items():
        value: dict[str, Any] = {}
        if "StringValue" in attr:
            value["stringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            value["binaryValue"] = base64.b64encode(attr["BinaryValue"]).decode()
        value["stringListValues"] = list(attr.get("StringListValues", []))
        value["binaryListValues"] = [
            base64.b64encode(v).decode() for v in attr.get("BinaryListValues", [])
        ]
        value["dataType"] = attr["DataType"]
        out[name] = value
    return out


def lambda_record(message: dict[str, Any], arn: str, region: str) -> dict[str, Any]:
    """One ReceiveMessage message as the record a Lambda handler receives."""
    attrs = message.get("Attributes") or {}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: attrs[k] for k in _ATTRIBUTE_ORDER if k in attrs},
        "messageAttributes": message_attributes(message.get("MessageAttributes")),
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    }


class _VisibilityKeeper:
    """Extends the visibility of held messages before it runs out.

    Each held receipt handle has the monotonic time its visibility ends; every tick, handles
    within half a visibility timeout of that end are extended by a full timeout.
    """

    def __init__(self, source: SqsSource, visibility_timeout: int) -> None:
        self._source = source
        self._timeout = visibility_timeout
        self._held: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, receipt_handles: Iterable[str], visible_at: float) -> None:
        for rh in receipt_handles:
            self._held[rh] = visible_at

    def drop(self, receipt_handles: Iterable[str]) -> None:
        for rh in receipt_handles:
            self._held.pop(rh, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sqs-visibility")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        tick = max(0.25, min(5.0, self._timeout / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due = [rh for rh, end in self._held.items() if end - now < self._timeout / 2]
            if due:
                try:
                    await self._source.change_visibility(due, self._timeout)
                except Exception as exc:
                    log.warning("visibility extension failed", error=str(exc), messages=len(due))
                    continue
                end = time.monotonic() + self._timeout
                for rh in due:
                    if rh in self._held:
                        self._held[rh] = end


class SqsSource:
    """A queue source (:class:`runtime.sources.base.QueueSource`). A FIFO batch may hold
    several message groups, in queue order: the group is each record's lane."""

    envelope_bytes = _ENVELOPE
    max_fetch = _SQS_BATCH_LIMIT
    parse_identifier: IdentifierParser = staticmethod(string_identifier)

    def __init__(
        self,
        mapping: Mapping,
        clients: AwsClients,
        settings: Settings,
        metrics: MappingMetrics,
    ) -> None:
        src = mapping.source
        assert src.arn is not None and src.region is not None
        self.mapping = mapping
        self._arn = src.arn
        self._region = src.region
        self._clients = clients
        self._settings = settings
        self._metrics = metrics
        self._health = SourceHealth(
            metrics.source_unreachable,
            after_seconds=settings.source_unreachable_after_seconds,
            source=src.arn,
        )
        self._client: Any = None
        self._url = ""
        self.visibility_timeout = 30
        self._keeper: _VisibilityKeeper | None = None
        self._backoff = _FETCH_ERROR_BACKOFF[0]

    async def start(self) -> None:
        await self.check()
        if self._settings.sqs_extend_visibility:
            self._keeper = _VisibilityKeeper(self, self.visibility_timeout)
            self._keeper.start()

    async def check(self) -> None:
        """The queue exists and its visibility timeout is long enough (also the supervisor's
        pre-flight check)."""
        src = self.mapping.source
        self._client = await self._clients.client("sqs", self._region)
        try:
            kwargs: dict[str, Any] = {"QueueName": src.name}
            if src.account:
                kwargs["QueueOwnerAWSAccountId"] = src.account
            self._url = (await self._client.get_queue_url(**kwargs))["QueueUrl"]
            attrs = await self._client.get_queue_attributes(
                QueueUrl=self._url, AttributeNames=["VisibilityTimeout"]
            )
        except Exception as exc:
            code = error_code(exc)
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise SourceError(f"queue {self._arn} does not exist (SQS error {code})") from exc
            if is_unreachable(exc):
                raise SourceUnreachable(f"cannot reach queue {self._arn}: {exc}") from exc
            raise SourceError(f"cannot use queue {self._arn}: {exc}") from exc
        self.visibility_timeout = int(attrs["Attributes"]["VisibilityTimeout"])
        timeout = self.mapping.function.timeout_seconds
        if timeout > self.visibility_timeout:
            # Lambda refuses such a mapping at create time (esm-spec §1.2 rule 6).
            raise SourceError(
                f"Queue visibility timeout: {self.visibility_timeout} seconds is less than "
                f"Function timeout: {timeout} seconds ({self._arn}, function "
                f"{self.mapping.function.name})"
            )

    async def fetch(self, max_records: int) -> list[Record]:
        asked = min(_SQS_BATCH_LIMIT, max_records)
        sent_at = time.monotonic()
        try:
            resp = await self._client.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=asked,
                WaitTimeSeconds=self._settings.sqs_wait_time_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._metrics.polling_errors.inc()
            self._health.failed(str(exc))
            log.warning(
                "ReceiveMessage failed",
                queue=self._arn,
                error=str(exc),
                retry_in=round(self._backoff, 2),
            )
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _FETCH_ERROR_BACKOFF[1])
            return []
        self._backoff = _FETCH_ERROR_BACKOFF[0]
        self._health.answered()
        messages = resp.get("Messages") or ()
        if not messages:
            return []
        records = []
        arn, region, fifo = self._arn, self._region, self.mapping.source.fifo
        for m in messages:
            payload = lambda_record(m, arn, region)
            records.append(
                Record(
                    payload=payload,
                    size=len(json.dumps(payload, separators=(",", ":"))) + 1,
                    item_id=m["MessageId"],
                    ack=m["ReceiptHandle"],
                    # FIFO: the message group is the ordering lane.
                    lane=payload["attributes"].get("MessageGroupId") if fifo else None,
                )
            )
        if self._keeper is not None:
            self._keeper.hold((r.ack for r in records), sent_at + self.visibility_timeout)
        return records

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return {"Records": [r.payload for r in records]}

    async def complete(self, succeeded: list[Record], failed: list[Record]) -> int:
        if self._keeper is not None:
            self._keeper.drop(r.ack for r in failed)
        if not succeeded:
            return 0
        deleted = await self._delete([r.ack for r in succeeded])
        if self._keeper is not None:
            self._keeper.drop(r.ack for r in succeeded)
        return deleted

    async def release(self, records: list[Record], delay_seconds: int = 0) -> None:
        if self._keeper is not None:
            self._keeper.drop(r.ack for r in records)
        if records:
            with contextlib.suppress(Exception):
                await self.change_visibility([r.ack for r in records], delay_seconds)

    async def close(self) -> None:
        if self._keeper is not None:
            await self._keeper.stop()

    async def _delete(self, receipt_handles: list[str]) -> int:
        chunks = [
            receipt_handles[i : i + _SQS_BATCH_LIMIT]
            for i in range(0, len(receipt_handles), _SQS_BATCH_LIMIT)
        ]
        results = await asyncio.gather(*(self._delete_chunk(c) for c in chunks))
        return sum(results)

    async def _delete_chunk(self, handles: list[str]) -> int:
        """Delete up to 10 messages, retrying failed entries; return how many were deleted."""
        pending = {str(i): rh for i, rh in enumerate(handles)}
        problem = ""
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(0.2 * attempt)
            try:
                resp = await self._client.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[{"Id": k, "ReceiptHandle": v} for k, v in pending.items()],
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = str(exc)
                continue
            for ok in resp.get("Successful") or ():
                pending.pop(ok["Id"], None)
            if not pending:
                return len(handles)
            problem = ", ".join(sorted({f.get("Code", "?") for f in resp.get("Failed") or ()}))
        log.error(
            "delete failed; these messages will be delivered again",
            queue=self._arn,
            error=problem,
            messages=len(pending),
        )
        self._metrics.ack_failures.inc(len(pending))
        return len(handles) - len(pending)

    async def change_visibility(self, receipt_handles: list[str], seconds: int) -> None:
        for i in range(0, len(receipt_handles), _SQS_BATCH_LIMIT):
            chunk = receipt_handles[i : i + _SQS_BATCH_LIMIT]
            resp = await self._client.change_message_visibility_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(j), "ReceiptHandle": rh, "VisibilityTimeout": seconds}
                    for j, rh in enumerate(chunk)
                ],
            )
            if seconds > 0:
                ok = len(chunk) - len(resp.get("Failed") or ())
                self._metrics.visibility_extensions.inc(ok)
