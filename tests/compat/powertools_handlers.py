"""Unmodified Powertools batch handlers, as users deploy them on Lambda."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    async_process_partial_response,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.SQS)
async_processor = AsyncBatchProcessor(event_type=EventType.SQS)


def _note(record: SQSRecord) -> None:
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"messageId": record.message_id, "body": record.json_body}) + "\n")


def record_handler(record: SQSRecord) -> None:
    _note(record)
    if record.json_body.get("fail"):
        raise ValueError(f"cannot process {record.message_id}")


async def async_record_handler(record: SQSRecord) -> None:
    record_handler(record)


def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


def async_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return async_process_partial_response(
        event=event,
        record_handler=async_record_handler,
        processor=async_processor,
        context=context,
    )


fifo_processor = SqsFifoPartialProcessor()


def fifo_record_handler(record: SQSRecord) -> None:
    """Fails a record marked "fail_once" on its first delivery."""
    body = record.json_body
    first = record.attributes.approximate_receive_count == "1"
    if body.get("fail_once") and first:
        raise ValueError(f"first delivery of {record.message_id} fails")
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"messageId": record.message_id, "body": body}) + "\n")


def fifo_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event, record_handler=fifo_record_handler, processor=fifo_processor, context=context
    )


kafka_processor = BatchProcessor(event_type=EventType.Kafka)


def kafka_record_handler(record: Any) -> None:
    """Powertools' Kafka record: fails records whose JSON value has "fail": true."""
    value = json.loads(base64.b64decode(record.value))
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"partition": record.partition, "offset": record.offset}) + "\n")
    if value.get("fail"):
        raise ValueError(f"cannot process {record.topic}-{record.partition}@{record.offset}")


def kafka_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event,
        record_handler=kafka_record_handler,
        processor=kafka_processor,
        context=context,
    )


kinesis_processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
dynamodb_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def kinesis_record_handler(record: Any) -> None:
    """Powertools' Kinesis record: fails records whose JSON data has "fail": true."""
    value = record.kinesis.data_as_json()
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"sequence": record.kinesis.sequence_number, "value": value}) + "\n")
    if value.get("fail"):
        raise ValueError(f"cannot process {record.kinesis.sequence_number}")


def kinesis_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event,
        record_handler=kinesis_record_handler,
        processor=kinesis_processor,
        context=context,
    )


def dynamodb_record_handler(record: Any) -> None:
    """Powertools' DynamoDB record: fails new images whose "fail" attribute is true."""
    image = record.dynamodb.new_image or {}
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(
            json.dumps(
                {
                    "sequence": record.dynamodb.sequence_number,
                    "id": image.get("id"),
                    "event": record.event_name.name,
                }
            )
            + "\n"
        )
    if image.get("fail"):
        raise ValueError(f"cannot process {record.dynamodb.sequence_number}")


def dynamodb_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return process_partial_response(
        event=event,
        record_handler=dynamodb_record_handler,
        processor=dynamodb_processor,
        context=context,
    )
