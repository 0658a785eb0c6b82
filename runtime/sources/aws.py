"""AWS clients for one worker process: one aiobotocore client per (service, region), shared.

Credentials and region come from botocore's standard chain; ``ESM_AWS_ENDPOINT_URL`` overrides
the endpoint for emulators. The connection pool is sized for many concurrent long polls plus
deletes, which the default of 10 would serialise.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.utils import parse_timestamp

from runtime.config.settings import Settings


def fast_timestamp(value: Any) -> dt.datetime:
    """botocore's timestamp parser, without its cost for numbers: JSON services (Kinesis,
    DynamoDB Streams) send epoch seconds, which botocore's default turns into a datetime in the
    host's local zone through dateutil, about half of the parsing time of a GetRecords page.
    Numbers become UTC datetimes here (the same instant); strings go to botocore's parser."""
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    parsed: dt.datetime = parse_timestamp(value)
    return parsed


class AwsClients:
    def __init__(self, settings: Settings, *, max_pool_connections: int = 256) -> None:
        self._settings = settings
        self._session = get_session()
        self._session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=fast_timestamp
        )
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._config = AioConfig(
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=max_pool_connections,
            connect_timeout=5,
            read_timeout=70,  # longer than the longest SQS long poll (20 s)
        )

    async def client(self, service: str, region: str | None) -> Any:
        key = (service, region)
        if key not in self._clients:
            kwargs: dict[str, Any] = {"config": self._config}
            if region:
                kwargs["region_name"] = region
            if self._settings.aws_endpoint_url:
                kwargs["endpoint_url"] = self._settings.aws_endpoint_url
            self._clients[key] = await self._stack.enter_async_context(
                self._session.create_client(service, **kwargs)
            )
        return self._clients[key]

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def is_unreachable(exc: BaseException) -> bool:
    """A failure of the connection or of the service (retrying helps), not of the request
    (a missing queue, denied access, a bad parameter: retrying does not)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, (BotoConnectionError, HTTPClientError, OSError, TimeoutError)):
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    return type(exc).__module__.startswith("aiohttp")


_TABLE_WAIT_SECONDS = 60.0


async def ensure_table(ddb: Any, table: str, keys: list[tuple[str, str]]) -> None:
    """Create a DynamoDB table (on-demand capacity) unless it exists, and wait until ACTIVE.

    ``keys`` are (attribute, HASH|RANGE) string keys. Several pods may race to create it: the
    loser's ResourceInUseException just means the table is on its way. Raises the AWS error
    (or TimeoutError when the table does not become ACTIVE in time)."""
    try:
        desc = await ddb.describe_table(TableName=table)
        status = desc["Table"]["TableStatus"]
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        try:
            await ddb.create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a, _ in keys],
                KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in keys],
                BillingMode="PAY_PER_REQUEST",
            )
        except Exception as create_exc:
            if error_code(create_exc) != "ResourceInUseException":  # another pod's
                raise
        status = "CREATING"
    waited = 0.0
    while status != "ACTIVE":
        if waited > _TABLE_WAIT_SECONDS:
            raise TimeoutError(f"table {table} is not ACTIVE after {waited:.0f} s ({status})")
        await asyncio.sleep(0.5)
        waited += 0.5
        desc = await ddb.describe_table(TableName=table)
        status = desc["Table"]["TableStatus"]
