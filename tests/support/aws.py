"""Synchronous AWS clients for test set-up and checks (the runtime itself uses aiobotocore)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import botocore.session
from botocore.config import Config

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def client(service: str, endpoint: str) -> Any:
    return botocore.session.get_session().create_client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(retries={"max_attempts": 2}, max_pool_connections=50),
        **CREDENTIALS,
    )


class Queue:
    """An SQS queue made for one test, with helpers to fill and inspect it."""

    def __init__(self, sqs: Any, name: str, url: str, arn: str) -> None:
        self.sqs, self.name, self.url, self.arn = sqs, name, url, arn

    @classmethod
    def create(
        cls,
        sqs: Any,
        prefix: str = "q",
        *,
        visibility_timeout: int = 30,
        fifo: bool = False,
        dlq: Queue | None = None,
        max_receive_count: int = 2,
        attributes: dict[str, str] | None = None,
    ) -> Queue:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
        attrs = {"VisibilityTimeout": str(visibility_timeout), **(attributes or {})}
        if fifo:
            attrs["FifoQueue"] = "true"
        if dlq is not None:
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": str(max_receive_count)}
            )
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return cls(sqs, name, url, arn)

    def send(self, bodies: Iterable[Any], per_call: int = 10, **extra: Any) -> list[str]:
        """Send bodies (dicts are JSON-encoded); return message ids in order."""
        return self._send_entries(
            ({"MessageBody": _text(body), **extra} for body in bodies), per_call
        )

    def send_fifo(self, messages: Iterable[tuple[str, Any]]) -> list[str]:
        """Send (group, body) pairs in order; return message ids."""
        return self._send_entries(
            {
                "MessageBody": _text(body),
                "MessageGroupId": group,
                "MessageDeduplicationId": uuid.uuid4().hex,
            }
            for group, body in messages
        )

    def _send_entries(self, entries: Iterable[dict[str, Any]], per_call: int = 10) -> list[str]:
        ids: list[str] = []
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            resp = self.sqs.send_message_batch(QueueUrl=self.url, Entries=batch)
            assert not resp.get("Failed"), resp.get("Failed")
            by_id = {e["Id"]: e["MessageId"] for e in resp["Successful"]}
            ids.extend(by_id[e["Id"]] for e in batch)
            batch.clear()

        for i, entry in enumerate(entries):
            batch.append({"Id": str(i), **entry})
            if len(batch) == per_call:
                flush()
        if batch:
            flush()
        return ids

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) as SQS reports them."""
        a = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(
            a["ApproximateNumberOfMessagesNotVisible"]
        )

    def total(self) -> int:
        return sum(self.counts())

    def drain(self, wait: float = 1.0) -> list[dict[str, Any]]:
        """Receive and delete everything visible (for DLQ checks)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            )
            msgs = resp.get("Messages", [])
            for m in msgs:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
            out.extend(msgs)
            if not msgs:
                if time.monotonic() > deadline:
                    return out
                time.sleep(0.1)


def _text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body)


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
