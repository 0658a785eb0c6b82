"""The broker calls of the two shard streams: Kinesis Data Streams and DynamoDB Streams.

The shard source (:mod:`runtime.sources.shards`) reads any shard stream the same way: list
the shards with their parents, get an iterator at a position, read pages of records until the
iterator runs out (the shard ended). These classes are that, per service, and nothing else;
record shapes live in :mod:`runtime.sources.stream_records`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.config.model import StartingPosition
from runtime.leases.store import Position
from runtime.sources.aws import AwsClients, error_code, is_unreachable
from runtime.sources.base import SourceError, SourceUnreachable
from runtime.sources.stream_records import (
    KINESIS_OVERHEAD,
    dynamodb_payload,
    kinesis_payload,
    kinesis_record_size,
)


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parents: tuple[str, ...]
    open: bool  # no ending sequence number yet


@dataclass(frozen=True, slots=True)
class Page:
    records: list[dict[str, Any]]  # as the service returned them
    next_iterator: Any  # None: the shard ended (a str, or the subscription itself)
    millis_behind: float | None  # Kinesis' MillisBehindLatest


class ExpiredIterator(Exception):
    """The iterator is too old (5 minutes): get a new one after the last record read."""


class Throttled(Exception):
    """Read limits of the shard exceeded: back off."""


class ShardApi(Protocol):
    max_page: int  # most records one read may return
    default_poll_seconds: float  # how often an idle shard is polled (Lambda's base rate)
    push: bool  # records are pushed (enhanced fan-out): never sleep between reads
    timestamps: bool  # iterators may start AT_TIMESTAMP (Kinesis)

    async def check(self) -> None: ...

    async def list_shards(self) -> list[Shard]: ...

    async def iterator(
        self, shard: str, position: Position | None, start: StartingPosition, at: float | None
    ) -> Any:
        """Where reading starts: a shard iterator, or a subscription (enhanced fan-out)."""

    async def read(self, iterator: Any, limit: int) -> Page: ...

    async def release(self, iterator: Any) -> None:
        """Reading stopped: free what the iterator holds (a subscription's connection)."""

    def payload(self, raw: dict[str, Any], shard: str) -> dict[str, Any]: ...

    def size(self, raw: dict[str, Any], payload: dict[str, Any]) -> int: ...

    def sequence(self, raw: dict[str, Any]) -> str: ...

    def arrival_ms(self, raw: dict[str, Any], payload: dict[str, Any]) -> float:
        """When the record reached the stream (epoch ms), read from its built payload."""

    def lane_slot(self, raw: dict[str, Any], factor: int) -> int: ...


def _iterator_args(
    position: Position | None, start: StartingPosition, at: float | None, sequence_arg: str
) -> dict[str, Any]:
    if position is not None:
        kind = "AFTER_SEQUENCE_NUMBER" if position.kind == "after" else "AT_SEQUENCE_NUMBER"
        return {"ShardIteratorType": kind, sequence_arg: position.sequence}
    if start is StartingPosition.AT_TIMESTAMP:
        return {
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": dt.datetime.fromtimestamp(at or 0.0, dt.UTC),
        }
    return {"ShardIteratorType": start.value}


class KinesisApi:
    max_page = 10_000
    default_poll_seconds = 1.0
    push = False
    timestamps = True

    def __init__(
        self,
        clients: AwsClients,
        *,
        stream_arn: str,
        stream_name: str,
        region: str | None,
        aws_region: str,
        invoke_identity_arn: str,
    ) -> None:
        self._clients = clients
        self._arn = stream_arn
        self._name = stream_name
        self._region = region
        self._aws_region = aws_region
        self._role = invoke_identity_arn
        # The stream ARN twice: eventSourceARN, and the bound of the shard id in eventID.
        self._fixed = (
            KINESIS_OVERHEAD + 2 * len(stream_arn) + len(invoke_identity_arn) + len(aws_region)
        )

    async def _client(self) -> Any:
        return await self._clients.client("kinesis", self._region)

    async def check(self) -> None:
        try:
            await (await self._client()).describe_stream_summary(StreamName=self._name)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise SourceError(f"Stream not found: {self._arn}") from exc
            if is_unreachable(exc):
                raise SourceUnreachable(f"cannot reach Kinesis stream {self._arn}: {exc}") from exc
            raise SourceError(f"cannot use Kinesis stream {self._arn}: {exc}") from exc

    async def list_shards(self) -> list[Shard]:
        client = await self._client()
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamName": self._name}
        while True:
            page = await client.list_shards(**kwargs)
            for s in page.get("Shards", []):
                parents = tuple(
                    p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p
                )
                ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(Shard(s["ShardId"], parents, ending is None))
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    async def iterator(
        self, shard: str, position: Position | None, start: StartingPosition, at: float | None
    ) -> str:
        got = await (await self._client()).get_shard_iterator(
            StreamName=self._name,
            ShardId=shard,
            **_iterator_args(position, start, at, "StartingSequenceNumber"),
        )
        return str(got["ShardIterator"])

    async def read(self, iterator: str, limit: int) -> Page:
        try:
            got = await (await self._client()).get_records(ShardIterator=iterator, Limit=limit)
        except Exception as exc:
            code = error_code(exc)
            if code == "ExpiredIteratorException":
                raise ExpiredIterator() from exc
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException"):
                raise Throttled() from exc
            raise
        behind = got.get("MillisBehindLatest")
        return Page(
            got.get("Records", []),
            got.get("NextShardIterator"),
            float(behind) if behind is not None else None,
        )

    async def release(self, iterator: Any) -> None:
        return None

    def payload(self, raw: dict[str, Any], shard: str) -> dict[str, Any]:
        return kinesis_payload(
            raw,
            shard_id=shard,
            region=self._aws_region,
            stream_arn=self._arn,
            invoke_identity_arn=self._role,
        )

    def size(self, raw: dict[str, Any], payload: dict[str, Any]) -> int:
        return kinesis_record_size(raw, self._fixed)

    def sequence(self, raw: dict[str, Any]) -> str:
        return str(raw["SequenceNumber"])

    def arrival_ms(self, raw: dict[str, Any], payload: dict[str, Any]) -> float:
        return float(payload["kinesis"]["approximateArrivalTimestamp"]) * 1000

    def lane_slot(self, raw: dict[str, Any], factor: int) -> int:
        return zlib.crc32(str(raw["PartitionKey"]).encode()) % factor


class _Subscription:
    """One shard's SubscribeToShard stream, renewed when AWS ends it (every 5 minutes)."""

    def __init__(self, api: KinesisFanOutApi, shard: str, start: dict[str, Any]) -> None:
        self.api = api
        self.shard = shard
        self.start = start
        self.last_sequence: str | None = None
        self.continuation: str | None = None
        self.stream: Any = None
        self.events: Any = None

    async def next_page(self) -> Page:
        while True:
            if self.stream is None:
                # Resume after the last record delivered, else where the last subscription
                # said it stood (an idle LATEST start must not jump to a later tip).
                if self.last_sequence is not None:
                    position = {
                        "Type": "AFTER_SEQUENCE_NUMBER",
                        "SequenceNumber": self.last_sequence,
                    }
                elif self.continuation is not None:
                    position = {"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": self.continuation}
                else:
                    position = self.start
                client = await self.api._client()
                try:
                    got = await client.subscribe_to_shard(
                        ConsumerARN=self.api.consumer_arn,
                        ShardId=self.shard,
                        StartingPosition=position,
                    )
                except Exception as exc:
                    if error_code(exc) in ("ResourceInUseException", "LimitExceededException"):
                        raise Throttled() from exc  # a previous subscription is still open
                    raise
                self.stream = got["EventStream"]
                self.events = aiter(self.stream)
            try:
                event = await anext(self.events)
            except StopAsyncIteration:
                self.stream = None  # the 5-minute subscription ended: subscribe again
                continue
            except BaseException:
                await self.close()  # a broken stream: the next read subscribes again
                raise
            body = event.get("SubscribeToShardEvent")
            if body is None:
                continue
            records = body.get("Records", [])
            if records:
                self.last_sequence = str(records[-1]["SequenceNumber"])
            continuation = body.get("ContinuationSequenceNumber")
            if continuation is not None:
                self.continuation = str(continuation)
            ended = continuation is None
            behind = body.get("MillisBehindLatest")
            return Page(
                records, None if ended else self, float(behind) if behind is not None else None
            )

    async def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


class KinesisFanOutApi(KinesisApi):
    """Kinesis enhanced fan-out: the mapping's EventSourceArn is a registered stream consumer;
    records are pushed over SubscribeToShard (HTTP/2), as Lambda reads such consumers."""

    push = True

    def __init__(self, clients: AwsClients, *, consumer_arn: str, **kwargs: Any) -> None:
        super().__init__(clients, **kwargs)
        self.consumer_arn = consumer_arn

    async def check(self) -> None:
        await super().check()
        try:
            got = await (await self._client()).describe_stream_consumer(
                ConsumerARN=self.consumer_arn
            )
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise SourceError(f"Stream consumer not found: {self.consumer_arn}") from exc
            kind = SourceUnreachable if is_unreachable(exc) else SourceError
            raise kind(f"cannot describe consumer {self.consumer_arn}: {exc}") from exc
        status = got["ConsumerDescription"]["ConsumerStatus"]
        if status != "ACTIVE":
            raise SourceError(f"stream consumer {self.consumer_arn} is {status}, not ACTIVE")

    async def iterator(
        self, shard: str, position: Position | None, start: StartingPosition, at: float | None
    ) -> Any:
        args = _iterator_args(position, start, at, "SequenceNumber")
        kind = args.pop("ShardIteratorType")
        return _Subscription(self, shard, {"Type": kind, **args})

    async def read(self, iterator: Any, limit: int) -> Page:
        assert isinstance(iterator, _Subscription)
        return await iterator.next_page()

    async def release(self, iterator: Any) -> None:
        if isinstance(iterator, _Subscription):
            await iterator.close()


class DynamoDbStreamsApi:
    max_page = 1_000
    default_poll_seconds = 0.25
    push = False
    timestamps = False

    async def release(self, iterator: Any) -> None:
        return None

    def __init__(self, clients: AwsClients, *, stream_arn: str, region: str | None) -> None:
        self._clients = clients
        self._arn = stream_arn
        self._region = region

    async def _client(self) -> Any:
        return await self._clients.client("dynamodbstreams", self._region)

    async def check(self) -> None:
        try:
            await (await self._client()).describe_stream(StreamArn=self._arn, Limit=1)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise SourceError(f"Stream not found: {self._arn}") from exc
            if is_unreachable(exc):
                raise SourceUnreachable(f"cannot reach DynamoDB stream {self._arn}: {exc}") from exc
            raise SourceError(f"cannot use DynamoDB stream {self._arn}: {exc}") from exc

    async def list_shards(self) -> list[Shard]:
        client = await self._client()
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": self._arn}
        while True:
            desc = (await client.describe_stream(**kwargs))["StreamDescription"]
            for s in desc.get("Shards", []):
                parent = s.get("ParentShardId")
                ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(Shard(s["ShardId"], (parent,) if parent else (), ending is None))
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs["ExclusiveStartShardId"] = last

    async def iterator(
        self, shard: str, position: Position | None, start: StartingPosition, at: float | None
    ) -> str:
        args = _iterator_args(position, start, at, "SequenceNumber")
        got = await (await self._client()).get_shard_iterator(
            StreamArn=self._arn, ShardId=shard, **args
        )
        return str(got["ShardIterator"])

    async def read(self, iterator: str, limit: int) -> Page:
        try:
            got = await (await self._client()).get_records(
                ShardIterator=iterator, Limit=min(limit, self.max_page)
            )
        except Exception as exc:
            code = error_code(exc)
            if code == "ExpiredIteratorException":
                raise ExpiredIterator() from exc
            if code in ("LimitExceededException", "ThrottlingException"):
                raise Throttled() from exc
            raise
        return Page(got.get("Records", []), got.get("NextShardIterator"), None)

    def payload(self, raw: dict[str, Any], shard: str) -> dict[str, Any]:
        return dynamodb_payload(raw, stream_arn=self._arn)

    def size(self, raw: dict[str, Any], payload: dict[str, Any]) -> int:
        return len(json.dumps(payload, separators=(",", ":"))) + 1

    def sequence(self, raw: dict[str, Any]) -> str:
        return str(raw["dynamodb"]["SequenceNumber"])

    def arrival_ms(self, raw: dict[str, Any], payload: dict[str, Any]) -> float:
        return float(payload["dynamodb"].get("ApproximateCreationDateTime", 0.0)) * 1000

    def lane_slot(self, raw: dict[str, Any], factor: int) -> int:
        keys = raw.get("dynamodb", {}).get("Keys", {})
        return zlib.crc32(json.dumps(keys, sort_keys=True, default=str).encode()) % factor
