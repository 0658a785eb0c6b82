"""Validated configuration with every default applied: what the rest of the runtime reads.

The YAML model keeps ``None`` for "not given" (as the Lambda API does); these classes carry the
effective value, so no other module needs to know a source's defaults.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from runtime.config.model import EventSourceMappingConfig, FunctionConfig
from runtime.config.sources import EventSource

# Namespace for mapping UUIDs derived from (function, event source). Changing it would change
# every derived UUID, and with it metric series and Kafka consumer groups: never change it.
MAPPING_UUID_NAMESPACE = uuid.UUID("3f0c6f3e-6b0e-4c54-9a53-5d1b3c0e7a11")


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to (``aws``, ``aws-cn``, ``aws-us-gov``...)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso-"):
        return "aws-iso"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("eu-isoe-"):
        return "aws-iso-e"
    if region.startswith("us-isof-"):
        return "aws-iso-f"
    return "aws"


def derive_mapping_uuid(function_name: str, source: EventSource) -> str:
    return str(uuid.uuid5(MAPPING_UUID_NAMESPACE, f"{function_name}|{source.identity}"))


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    handler: str
    timeout_seconds: int
    memory_size: int
    environment: dict[str, str]
    reserved_concurrency: int | None
    region: str
    account: str
    workers: int | None = None  # worker processes per pod (None: the runtime's default)
    role: str | None = None  # the execution role (Kinesis events' invokeIdentityArn)

    @property
    def arn(self) -> str:
        partition = partition_of(self.region)
        return f"arn:{partition}:lambda:{self.region}:{self.account}:function:{self.name}"

    @property
    def role_arn(self) -> str:
        """The execution role: the ``Role`` given, else a role named after the function."""
        if self.role:
            return self.role
        return f"arn:{partition_of(self.region)}:iam::{self.account}:role/{self.name}"

    @classmethod
    def from_config(cls, name: str, cfg: FunctionConfig, region: str, account: str) -> Function:
        return cls(
            name=name,
            handler=cfg.handler,
            timeout_seconds=cfg.timeout,
            memory_size=cfg.memory_size,
            environment=dict(cfg.environment.variables) if cfg.environment else {},
            reserved_concurrency=cfg.reserved_concurrent_executions,
            region=region,
            account=account,
            workers=cfg.workers,
            role=cfg.role,
        )


@dataclass(frozen=True, slots=True)
class Mapping:
    uuid: str
    index: int  # position in the YAML list, for messages
    function: Function
    source: EventSource
    enabled: bool
    batch_size: int
    batching_window_seconds: float
    maximum_concurrency: int | None
    report_batch_item_failures: bool
    filter_patterns: tuple[str, ...]
    raw: EventSourceMappingConfig = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.function.name} <- {self.source.identity}"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    functions: dict[str, Function]
    mappings: tuple[Mapping, ...]
