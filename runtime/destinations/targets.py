"""Parsing ``DestinationConfig.OnFailure.Destination`` into what the sender needs.

Lambda accepts some destinations it can never deliver to (FIFO queues and topics count as
``DestinationDeliveryFailures`` at run time) and ``kafka://`` topics only in provisioned mode.
A self-hosted runtime can do better than fail at 3 a.m.: everything that cannot work is
rejected here, when the config is loaded, with a message that says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

TargetKind = Literal["sqs", "sns", "s3"]

FIFO_UNSUPPORTED: Final = (
    "FIFO SQS queues and SNS topics are not supported as on-failure destinations"
)
KAFKA_UNSUPPORTED: Final = (
    "kafka:// destinations need Lambda's provisioned mode, which this runtime does not have"
)
NOT_A_DESTINATION: Final = (
    "an on-failure destination must be an SQS queue, SNS topic or S3 bucket ARN"
)

# The OnFailure API's own patterns for the partition and region parts of an ARN.
_ARN = re.compile(
    r"arn:(?P<partition>aws[a-zA-Z0-9-]*):(?P<service>[a-z0-9-]+):"
    r"(?P<region>[^:]*):(?P<account>[^:]*):(?P<resource>.+)"
)
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d")
_ACCOUNT = re.compile(r"\d{12}")
# Queue names: up to 80 characters including a ".fifo" suffix; topic names: up to 256.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
# General purpose bucket names (a bucket ARN has neither region nor account).
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_FIFO_SUFFIX = ".fifo"


@dataclass(frozen=True, slots=True)
class Target:
    """A vetted on-failure destination.

    ``region`` and ``account`` are None for S3, whose bucket ARNs carry neither (the sender
    finds the bucket's region itself).
    """

    kind: TargetKind
    arn: str
    region: str | None
    account: str | None
    name: str


def _invalid(reason: str, arn: str) -> ValueError:
    return ValueError(f"{reason} (got {arn!r})")


def _named(name: str, pattern: re.Pattern[str], max_len: int, arn: str) -> bool:
    """Whether name is valid for the service; a FIFO name (else valid) raises instead."""
    if name.endswith(_FIFO_SUFFIX) and len(name) <= max_len:
        base = name[: -len(_FIFO_SUFFIX)]
        if pattern.fullmatch(base):
            raise _invalid(FIFO_UNSUPPORTED, arn)
    return pattern.fullmatch(name) is not None


def parse_destination(arn: str) -> Target:
    """Parse an SQS queue, SNS topic or S3 bucket ARN; raise ValueError for anything else."""
    if arn.startswith("kafka://"):
        raise _invalid(KAFKA_UNSUPPORTED, arn)
    m = _ARN.fullmatch(arn)
    if m is None:
        raise _invalid(NOT_A_DESTINATION, arn)
    service, region, account, resource = m.group("service", "region", "account", "resource")
    if service in ("sqs", "sns"):
        if not _REGION.fullmatch(region) or not _ACCOUNT.fullmatch(account):
            raise _invalid(NOT_A_DESTINATION, arn)
        if service == "sqs" and _named(resource, _QUEUE_NAME, 80, arn):
            return Target("sqs", arn, region, account, resource)
        if service == "sns" and _named(resource, _TOPIC_NAME, 256, arn):
            return Target("sns", arn, region, account, resource)
    elif service == "s3" and not region and not account and _BUCKET_NAME.fullmatch(resource):
        return Target("s3", arn, None, None, resource)
    raise _invalid(NOT_A_DESTINATION, arn)
