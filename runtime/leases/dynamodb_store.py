"""The lease table in DynamoDB: leases shared by every pod.

One item per (mapping, shard): partition key ``mapping`` (the mapping UUID), sort key
``shard``, so a worker reads its mapping's leases with one Query. Changes are UpdateItem calls
with a condition on ``leaseOwner`` and ``leaseCounter`` (``ConditionalCheckFailedException``
means someone else changed the lease); the table is created on demand (PAY_PER_REQUEST) when
it is missing. The table name is ``ESM_LEASE_TABLE``.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.leases.store import Lease, LeaseStoreError, Position
from runtime.sources.aws import AwsClients, ensure_table, error_code


def _lease(item: dict[str, Any]) -> Lease:
    def s(name: str) -> str | None:
        v = item.get(name)
        return v["S"] if v is not None and "S" in v else None

    return Lease(
        shard=item["shard"]["S"],
        owner=s("leaseOwner"),
        counter=int(item["leaseCounter"]["N"]),
        checkpoint=Position.decode(s("checkpoint")),
        parents=tuple(json.loads(s("parents") or "[]")),
        pending_owner=s("pendingOwner"),
    )


class DynamoDbLeaseStore:
    def __init__(self, clients: AwsClients, table: str, mapping: str, region: str | None) -> None:
        self._clients = clients
        self.table = table
        self._mapping = mapping
        self._region = region

    async def _ddb(self) -> Any:
        return await self._clients.client("dynamodb", self._region)

    def _key(self, shard: str) -> dict[str, Any]:
        return {"mapping": {"S": self._mapping}, "shard": {"S": shard}}

    async def open(self) -> None:
        try:
            await ensure_table(
                await self._ddb(), self.table, [("mapping", "HASH"), ("shard", "RANGE")]
            )
        except Exception as exc:
            raise LeaseStoreError(f"lease table {self.table}: {exc}") from exc

    async def ensure(self, shards: list[tuple[str, tuple[str, ...]]]) -> None:
        ddb = await self._ddb()
        for shard, parents in shards:
            try:
                await ddb.put_item(
                    TableName=self.table,
                    Item={
                        **self._key(shard),
                        "leaseCounter": {"N": "0"},
                        "parents": {"S": json.dumps(list(parents))},
                    },
                    ConditionExpression="attribute_not_exists(#s)",
                    ExpressionAttributeNames={"#s": "shard"},
                )
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise

    async def list(self) -> list[Lease]:
        ddb = await self._ddb()
        out: list[Lease] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "mapping"},
            "ExpressionAttributeValues": {":m": {"S": self._mapping}},
            "ConsistentRead": True,
        }
        while True:
            page = await ddb.query(**kwargs)
            out.extend(_lease(i) for i in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _update(
        self, lease: Lease, sets: dict[str, str | None], *, extra_condition: str = ""
    ) -> Lease | None:
        names = {"#c": "leaseCounter", "#o": "leaseOwner"}
        values: dict[str, Any] = {":one": {"N": "1"}, ":c": {"N": str(lease.counter)}}
        set_parts = ["#c = #c + :one"]
        remove_parts: list[str] = []
        for i, (attr, value) in enumerate(sets.items()):
            names[f"#a{i}"] = attr
            if value is None:
                remove_parts.append(f"#a{i}")
            else:
                values[f":a{i}"] = {"S": value}
                set_parts.append(f"#a{i} = :a{i}")
        condition = "#c = :c AND "
        if lease.owner is None:
            condition += "attribute_not_exists(#o)"
        else:
            values[":o"] = {"S": lease.owner}
            condition += "#o = :o"
        condition += extra_condition
        expression = "SET " + ", ".join(set_parts)
        if remove_parts:
            expression += " REMOVE " + ", ".join(remove_parts)
        ddb = await self._ddb()
        try:
            got = await ddb.update_item(
                TableName=self.table,
                Key=self._key(lease.shard),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return _lease(got["Attributes"])

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        return await self._update(lease, {"leaseOwner": owner, "pendingOwner": None})

    async def renew(self, lease: Lease) -> Lease | None:
        return await self._update(lease, {})

    async def checkpoint(self, lease: Lease, position: Position) -> Lease | None:
        return await self._update(lease, {"checkpoint": position.encode()})

    async def release(self, lease: Lease) -> Lease | None:
        return await self._update(lease, {"leaseOwner": None})

    async def request(self, lease: Lease, requester: str) -> bool:
        if lease.owner is None:
            return False
        ddb = await self._ddb()
        try:
            await ddb.update_item(
                TableName=self.table,
                Key=self._key(lease.shard),
                UpdateExpression="SET pendingOwner = :r",
                ConditionExpression="leaseOwner = :o AND attribute_not_exists(pendingOwner)",
                ExpressionAttributeValues={":r": {"S": requester}, ":o": {"S": lease.owner}},
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def delete(self, lease: Lease) -> bool:
        ddb = await self._ddb()
        try:
            await ddb.delete_item(
                TableName=self.table,
                Key=self._key(lease.shard),
                ConditionExpression="attribute_not_exists(#o) AND #c = :c",
                ExpressionAttributeNames={"#o": "leaseOwner", "#c": "leaseCounter"},
                ExpressionAttributeValues={":c": {"N": str(lease.counter)}},
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def evict(self, owner: str) -> int:
        n = 0
        for lease in await self.list():
            if lease.owner == owner and await self.release(lease) is not None:
                n += 1
        return n

    async def close(self) -> None:
        return None
