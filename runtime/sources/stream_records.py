"""Kinesis and DynamoDB Streams records and events in Lambda's exact shape (esm-spec §2.2,
§2.3, §2.5, §6.2, §6.3).

Both are shard streams whose records carry a decimal *sequence number*: it is the record's
position for checkpoints (an int, so the ordered core can compare positions) and its
``itemIdentifier`` in partial batch responses (the string, as Lambda sends it). They differ in
data only, which :class:`StreamShape` carries:

- Kinesis: ``data`` base64, ``approximateArrivalTimestamp`` epoch seconds with milliseconds,
  ``eventID`` ``"<shardId>:<sequenceNumber>"``, the execution role as ``invokeIdentityArn``;
  on-failure records carry ``KinesisBatchInfo`` with millisecond timestamps.
- DynamoDB: the stream record as DynamoDB Streams returns it (typed attribute values, binary
  values base64), ``ApproximateCreationDateTime`` epoch seconds, ``eventSourceARN`` added;
  on-failure records carry ``DDBStreamBatchInfo`` with whole-second timestamps.

Pure functions: unit-tested against the AWS recordings without a stream.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.destinations.record import DDB_STREAM_BATCH_INFO, KINESIS_BATCH_INFO
from runtime.pipeline.records import Record

_b64 = base64.b64encode
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Bytes of a Kinesis record's JSON beyond its variable parts (field names, quotes, constant
# values: 275), plus the longest timestamp (15: 11 digits, a point, 3 decimals) and the comma
# before the next record; the ARNs, region, shard id and twice the sequence number are added.
KINESIS_OVERHEAD = 291


def stream_identifier(value: Any) -> Hashable | None:
    """A Kinesis or DynamoDB batchItemFailures itemIdentifier: a non-empty sequence number."""
    if isinstance(value, str) and value:
        return value
    return None


def epoch_seconds(value: Any) -> float:
    """A botocore timestamp (datetime) or a number, as epoch seconds."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        delta: dt.timedelta = value - _EPOCH
        return delta.total_seconds()
    return float(value) if value else 0.0


def _iso(epoch_s: float, *, millis: bool) -> str:
    t = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------- Kinesis


def kinesis_payload(
    raw: dict[str, Any],
    *,
    shard_id: str,
    region: str,
    stream_arn: str,
    invoke_identity_arn: str,
) -> dict[str, Any]:
    """One GetRecords/SubscribeToShard record as the record Lambda puts in the event."""
    seq = raw["SequenceNumber"]
    arrival = round(epoch_seconds(raw.get("ApproximateArrivalTimestamp")), 3)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": raw["PartitionKey"],
            "sequenceNumber": seq,
            "data": _b64(raw.get("Data") or b"").decode(),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def kinesis_record_size(raw: dict[str, Any], fixed: int) -> int:
    """An upper bound of the record's JSON size without encoding it (hot path). ``fixed``:
    the per-stream constant part (ARNs, region, shard id)."""
    data = raw.get("Data") or b""
    pk = raw["PartitionKey"]
    # json.dumps copies printable ASCII other than '"' and '\' as is and escapes everything
    # else (control characters to up to 6 bytes, non-ASCII to 6 or 12): measure those exactly.
    plain = pk.isascii() and pk.isprintable() and '"' not in pk and "\\" not in pk
    pk_len = len(pk) if plain else len(json.dumps(pk))
    return fixed + 4 * ((len(data) + 2) // 3) + pk_len + 2 * len(raw["SequenceNumber"])


# --------------------------------------------------------------------------------- DynamoDB


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A typed attribute value with binary parts base64-encoded (botocore gives bytes)."""
    (kind, v), *_ = value.items()
    if kind == "B":
        return {"B": _b64(v).decode() if isinstance(v, bytes | bytearray) else v}
    if kind == "BS":
        return {"BS": [_b64(b).decode() if isinstance(b, bytes | bytearray) else b for b in v]}
    if kind == "M":
        return {"M": {k: _attribute(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [_attribute(x) for x in v]}
    return value


def _image(image: dict[str, Any]) -> dict[str, Any]:
    return {k: _attribute(v) for k, v in image.items()}


def dynamodb_payload(raw: dict[str, Any], *, stream_arn: str) -> dict[str, Any]:
    """One DynamoDB Streams record as the record Lambda puts in the event."""
    src = raw.get("dynamodb") or {}
    ddb: dict[str, Any] = {}
    if "ApproximateCreationDateTime" in src:
        ddb["ApproximateCreationDateTime"] = epoch_seconds(src["ApproximateCreationDateTime"])
    for key in ("Keys", "NewImage", "OldImage"):
        if key in src:
            ddb[key] = _image(src[key])
    ddb["SequenceNumber"] = src["SequenceNumber"]
    if "SizeBytes" in src:
        ddb["SizeBytes"] = src["SizeBytes"]
    if "StreamViewType" in src:
        ddb["StreamViewType"] = src["StreamViewType"]
    out: dict[str, Any] = {
        "eventID": raw.get("eventID", ""),
        "eventName": raw.get("eventName", ""),
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": raw.get("eventSource", "aws:dynamodb"),
        "awsRegion": raw.get("awsRegion", ""),
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }
    if identity := raw.get("userIdentity"):
        # TTL deletions. The DynamoDB Streams API (so botocore) names the fields Type and
        # PrincipalId; Lambda's event, and the TTL filters AWS documents for it, say
        # {"type": "Service", "principalId": "dynamodb.amazonaws.com"}.
        names = (("type", "Type"), ("principalId", "PrincipalId"))
        out["userIdentity"] = {
            name: identity[key] for name, api in names for key in (api, name) if key in identity
        }
    return out


# ---------------------------------------------------------------------------------- shapes


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What differs between Kinesis and DynamoDB events: data only."""

    batch_info_key: str
    millis: bool  # on-failure timestamps with milliseconds (Kinesis) or whole seconds (DDB)
    stream_arn: str

    @property
    def envelope_bytes(self) -> int:
        return len('{"Records":[]}')

    def build_event(self, records: list[Record]) -> dict[str, Any]:
        return {"Records": [r.payload for r in records]}

    def batch_info(self, records: Sequence[Record], payload_size: int) -> dict[str, Any]:
        first, last = records[0], records[-1]
        return {
            "shardId": str(first.unit),
            "startSequenceNumber": str(first.item_id),
            "endSequenceNumber": str(last.item_id),
            "approximateArrivalOfFirstRecord": _iso(first.timestamp_ms / 1000, millis=self.millis),
            "approximateArrivalOfLastRecord": _iso(last.timestamp_ms / 1000, millis=self.millis),
            "batchSize": len(records),
            "streamArn": self.stream_arn,
        }


def kinesis_shape(stream_arn: str) -> StreamShape:
    return StreamShape(KINESIS_BATCH_INFO, True, stream_arn)


def dynamodb_shape(stream_arn: str) -> StreamShape:
    return StreamShape(DDB_STREAM_BATCH_INFO, False, stream_arn)
