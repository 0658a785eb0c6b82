"""Delivering an invocation record to its SQS queue, SNS topic or S3 bucket.

``send`` either delivers or raises: the caller owns retries and metrics, because only it knows
whether to keep the shard/partition blocked and when to give up and count the events as
dropped (spec §4.2: a failed delivery adds to ``DestinationDeliveryFailures`` and
``DroppedEventCount`` instead of ``OnFailureDestinationDeliveredEventCount``). The classes keep
only what is worth caching between sends (a queue URL, a bucket's region), never the record.

Formats (spec §6): SQS and SNS carry the record as compact JSON, exactly as built; S3 gets the
record plus ``payload`` (the event the function was invoked with, as a JSON string) under
``aws/lambda/<mapping UUID>/<shard or topic-partition>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid4>``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import structlog
from botocore.exceptions import ClientError

from runtime.destinations.targets import Target
from runtime.sources.aws import AwsClients, error_code

log = structlog.get_logger("runtime.destinations")

_CONTENT_TYPE = "application/json"
# GetBucketLocation's answers that are not region names.
_LOCATION_ALIASES = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}
_QUEUE_GONE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


class OnFailureDestination(Protocol):
    """Where a mapping's discarded batches are recorded."""

    @property
    def target(self) -> Target: ...

    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None:
        """Deliver one record; raise if it was not delivered (the caller retries).

        ``event`` is the invocation event of the batch (only S3 stores it), ``unit`` the shard
        id or, for Kafka, ``topic-partition`` (only the S3 key uses these two and the UUID).
        """
        ...


def _compact(obj: dict[str, Any]) -> str:
    # ASCII escapes keep the text inside SQS's allowed character set whatever the record holds.
    return json.dumps(obj, separators=(",", ":"))


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def s3_document(record: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The S3 object's JSON: the record plus ``payload``, keyed the way AWS writes it.

    AWS-recorded S3 objects (Kinesis and DynamoDB) have every key of the envelope sorted
    alphabetically, batch info included; this reproduces it. ``payload`` is the invocation
    event as an escaped JSON *string* (esm-spec §6.6): the recordings show an object only
    because the recorder decodes every string that looks like JSON.
    """
    doc: dict[str, Any] = _sorted_keys(record)
    doc["payload"] = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return {k: doc[k] for k in sorted(doc)}


def s3_object_key(*, mapping_uuid: str, unit: str, when: datetime.datetime) -> str:
    """``aws/lambda/<ESM-UUID>/<unit>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>``, in UTC.

    The random suffix keeps two failures of the same shard within one second apart.
    """
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    t = when.astimezone(datetime.UTC)
    return f"aws/lambda/{mapping_uuid}/{unit}/{t:%Y/%m/%d}/{t:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"


def _record_time(record: dict[str, Any]) -> datetime.datetime:
    """The record's own ``timestamp``, so that the object key and the body agree."""
    when = datetime.datetime.fromisoformat(str(record["timestamp"]))
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


class SqsDestination:
    """SendMessage to a standard queue, possibly in another region or account."""

    def __init__(self, target: Target, clients: AwsClients) -> None:
        self._target = target
        self._clients = clients
        self._url: str | None = None
        self._lock = asyncio.Lock()

    @property
    def target(self) -> Target:
        return self._target

    async def _queue_url(self, sqs: Any) -> str:
        async with self._lock:
            if self._url is None:
                resp = await sqs.get_queue_url(
                    QueueName=self._target.name, QueueOwnerAWSAccountId=self._target.account
                )
                self._url = str(resp["QueueUrl"])
            return self._url

    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None:
        sqs = await self._clients.client("sqs", self._target.region)
        url = await self._queue_url(sqs)
        try:
            await sqs.send_message(QueueUrl=url, MessageBody=_compact(record))
        except ClientError as exc:
            if error_code(exc) in _QUEUE_GONE:
                self._url = None  # a queue created again may live at another URL
            raise


class SnsDestination:
    """Publish to a standard topic; the record is the notification's ``Message``."""

    def __init__(self, target: Target, clients: AwsClients) -> None:
        self._target = target
        self._clients = clients

    @property
    def target(self) -> Target:
        return self._target

    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None:
        sns = await self._clients.client("sns", self._target.region)
        await sns.publish(TopicArn=self._target.arn, Message=_compact(record))


class S3Destination:
    """PutObject of the record and the batch's event into a bucket.

    A bucket ARN has no region, so the first send asks GetBucketLocation and keeps the answer;
    without ``s3:GetBucketLocation`` permission (Lambda itself only needs PutObject and
    ListBucket) it falls back to the default region, where botocore's S3 redirect handling
    still reaches the bucket. ``expected_bucket_owner`` goes with every request, so a bucket
    deleted and re-created by someone else (bucket sniping) receives nothing.
    """

    def __init__(
        self, target: Target, clients: AwsClients, *, expected_bucket_owner: str | None
    ) -> None:
        self._target = target
        self._clients = clients
        self._owner = expected_bucket_owner
        self._s3: Any = None
        self._lock = asyncio.Lock()

    @property
    def target(self) -> Target:
        return self._target

    def _owned(self, **kwargs: Any) -> dict[str, Any]:
        if self._owner is not None:
            kwargs["ExpectedBucketOwner"] = self._owner
        return kwargs

    async def _client(self) -> Any:
        async with self._lock:
            if self._s3 is not None:
                return self._s3
            default = await self._clients.client("s3", None)
            try:
                resp = await default.get_bucket_location(**self._owned(Bucket=self._target.name))
            except ClientError as exc:
                # An answer (denied, no such bucket): settle on the default region for good.
                log.info(
                    "bucket region unknown, using the default region",
                    bucket=self._target.name,
                    error_code=error_code(exc),
                )
                self._s3 = default
                return default
            except Exception as exc:
                # No answer (network): use the default region now, ask again next time.
                log.info("bucket region lookup failed", bucket=self._target.name, error=repr(exc))
                return default
            location = resp.get("LocationConstraint")
            region = _LOCATION_ALIASES.get(location, location)
            if region == default.meta.region_name:
                self._s3 = default
            else:
                self._s3 = await self._clients.client("s3", region)
            return self._s3

    async def send(
        self, record: dict[str, Any], *, event: dict[str, Any], mapping_uuid: str, unit: str
    ) -> None:
        s3 = await self._client()
        key = s3_object_key(mapping_uuid=mapping_uuid, unit=unit, when=_record_time(record))
        body = json.dumps(s3_document(record, event), ensure_ascii=False, separators=(",", ":"))
        await s3.put_object(
            **self._owned(
                Bucket=self._target.name,
                Key=key,
                Body=body.encode(),
                ContentType=_CONTENT_TYPE,
            )
        )


def destination_for(
    target: Target, clients: AwsClients, *, expected_bucket_owner: str | None
) -> OnFailureDestination:
    """The sender for a parsed destination; ``expected_bucket_owner`` only matters for S3."""
    if target.kind == "sqs":
        return SqsDestination(target, clients)
    if target.kind == "sns":
        return SnsDestination(target, clients)
    return S3Destination(target, clients, expected_bucket_owner=expected_bucket_owner)
