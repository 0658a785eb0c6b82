"""Stored mappings in a DynamoDB table shared by every pod (``ESM_MAPPING_TABLE``).

One item per mapping: key ``uuid``, a ``revision`` number and the ``record`` as JSON; one item
per pod (key ``pod#<name>``) with its last sync, so that changes settle once every pod applied
them. Writes
are conditional on the revision (``ConditionalCheckFailedException`` means another pod or call
changed it first); reads are a consistent Scan, which is cheap for the few hundred mappings a
deployment has and is what every pod polls to converge. The table is created on demand.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.api.store import MappingStoreError, PodState, StoreConflict, StoredMapping
from runtime.sources.aws import AwsClients, ensure_table, error_code

# Items of pod states share the table; mapping UUIDs never start so.
_POD = "pod#"


class DynamoDbMappingStore:
    def __init__(self, clients: AwsClients, table: str, region: str | None) -> None:
        self._clients = clients
        self.table = table
        self._region = region

    async def _ddb(self) -> Any:
        return await self._clients.client("dynamodb", self._region)

    async def open(self) -> None:
        try:
            await ensure_table(await self._ddb(), self.table, [("uuid", "HASH")])
        except Exception as exc:
            raise MappingStoreError(f"mapping table {self.table}: {exc}") from exc

    async def close(self) -> None:
        """The clients belong to the caller."""

    async def _scan(self) -> list[dict[str, Any]]:
        ddb = await self._ddb()
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        try:
            while True:
                page = await ddb.scan(**kwargs)
                out.extend(page.get("Items", []))
                if not page.get("LastEvaluatedKey"):
                    return out
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise MappingStoreError(f"mapping table {self.table}: {exc}") from exc

    async def all(self) -> list[StoredMapping]:
        return [
            StoredMapping.from_json(
                item["uuid"]["S"], int(item["revision"]["N"]), json.loads(item["record"]["S"])
            )
            for item in await self._scan()
            if not item["uuid"]["S"].startswith(_POD)
        ]

    async def heartbeat(self, state: PodState) -> None:
        item = {
            "uuid": {"S": _POD + state.pod},
            "at": {"N": repr(state.at)},
            "applied": {"S": json.dumps(state.applied)},
        }
        await self._write("put_item", "pod state", Item=item)

    async def pods(self) -> list[PodState]:
        return [
            PodState(
                item["uuid"]["S"][len(_POD) :],
                float(item["at"]["N"]),
                json.loads(item["applied"]["S"]),
            )
            for item in await self._scan()
            if item["uuid"]["S"].startswith(_POD)
        ]

    async def forget_pod(self, pod: str) -> None:
        await self._write("delete_item", "pod state", Key={"uuid": {"S": _POD + pod}})

    async def _write(self, call: str, what: str, **kwargs: Any) -> None:
        ddb = await self._ddb()
        try:
            await getattr(ddb, call)(TableName=self.table, **kwargs)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise StoreConflict(what) from None
            raise MappingStoreError(f"mapping table {self.table}: {exc}") from exc

    def _item(self, record: StoredMapping, revision: int) -> dict[str, Any]:
        return {
            "uuid": {"S": record.uuid},
            "revision": {"N": str(revision)},
            "record": {"S": json.dumps(record.to_json())},
        }

    async def create(self, record: StoredMapping) -> StoredMapping:
        await self._write(
            "put_item",
            f"mapping {record.uuid} exists",
            Item=self._item(record, 1),
            ConditionExpression="attribute_not_exists(#u)",
            ExpressionAttributeNames={"#u": "uuid"},
        )
        return record.replace(revision=1)

    async def replace(self, record: StoredMapping) -> StoredMapping:
        await self._write(
            "put_item",
            f"mapping {record.uuid} changed meanwhile",
            Item=self._item(record, record.revision + 1),
            ConditionExpression="#r = :r",
            ExpressionAttributeNames={"#r": "revision"},
            ExpressionAttributeValues={":r": {"N": str(record.revision)}},
        )
        return record.replace(revision=record.revision + 1)

    async def delete(self, record: StoredMapping) -> None:
        await self._write(
            "delete_item",
            f"mapping {record.uuid} changed meanwhile",
            Key={"uuid": {"S": record.uuid}},
            ConditionExpression="#r = :r",
            ExpressionAttributeNames={"#r": "revision"},
            ExpressionAttributeValues={":r": {"N": str(record.revision)}},
        )
