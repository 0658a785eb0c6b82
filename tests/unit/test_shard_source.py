"""The shard source's shard discovery and shard ends, with a scripted shard API and a real
SQLite lease store: which shards get a lease (with which parents), that a shard read before
is never given a lease again, and that a shard ends only once what was read is checkpointed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from runtime.config.loader import build_config
from runtime.config.settings import Settings
from runtime.leases.sqlite_store import SqliteLeaseStore
from runtime.leases.store import END, Position
from runtime.metrics import MappingMetrics
from runtime.sources.shard_apis import Page, Shard
from runtime.sources.shards import ShardSource
from runtime.sources.stream_records import kinesis_shape

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/s"


class ScriptedApi:
    """A shard API whose listing and pages the test sets."""

    max_page = 100
    default_poll_seconds = 0.01
    push = False
    timestamps = True

    def __init__(self) -> None:
        self.shards: list[Shard] = []
        self.pages: dict[str, list[Page]] = {}

    async def check(self) -> None:
        return None

    async def list_shards(self) -> list[Shard]:
        return list(self.shards)

    async def iterator(self, shard: str, position: Any, start: Any, at: Any) -> Any:
        return shard

    async def read(self, iterator: Any, limit: int) -> Page:
        pages = self.pages.get(iterator, [])
        if pages:
            return pages.pop(0)
        return Page([], iterator, 0.0)

    async def release(self, iterator: Any) -> None:
        return None

    def payload(self, raw: dict[str, Any], shard: str) -> dict[str, Any]:
        return {"seq": raw["SequenceNumber"]}

    def size(self, raw: dict[str, Any], payload: dict[str, Any]) -> int:
        return 10

    def sequence(self, raw: dict[str, Any]) -> str:
        return str(raw["SequenceNumber"])

    def arrival_ms(self, raw: dict[str, Any], payload: dict[str, Any]) -> float:
        return 0.0

    def lane_slot(self, raw: dict[str, Any], factor: int) -> int:
        return 0


def make_source(tmp_path: Path, start: str) -> tuple[ShardSource, ScriptedApi, SqliteLeaseStore]:
    config = build_config(
        {
            "functions": {"fn": {"Handler": "handlers.orders.handler"}},
            "eventSourceMappings": [
                {"FunctionName": "fn", "EventSourceArn": ARN, "StartingPosition": start}
            ],
        },
        "test.yaml",
        Settings(),
        import_handlers=False,
    )
    [mapping] = config.mappings
    api = ScriptedApi()
    store = SqliteLeaseStore(str(tmp_path), mapping.uuid)
    source = ShardSource(
        mapping,
        MappingMetrics.bind("fn", mapping.uuid + str(uuid.uuid4())),
        api,
        kinesis_shape(ARN),
        store,
        owner="me",
        failover_seconds=3.0,
        poll_seconds=0.01,
        sync_seconds=60.0,
    )
    return source, api, store


def leases(store: SqliteLeaseStore) -> dict[str, tuple[str, ...]]:
    return {lz.shard: lz.parents for lz in asyncio.run(store.list())}


def test_latest_reads_open_shards_then_follows_closed_descendants_of_read_ones(
    tmp_path: Path,
) -> None:
    async def scenario() -> dict[str, tuple[str, ...]]:
        source, api, store = make_source(tmp_path, "LATEST")
        # At the start: a closed parent and its open child; LATEST reads the open one only.
        api.shards = [Shard("old", (), False), Shard("p", ("old",), True)]
        await source._sync_shards()
        first = {lz.shard: lz.parents for lz in await store.list()}
        assert first == {"p": ()}
        # Later: p split into c (which already closed, into d) between two listings, and an
        # unrelated closed shard appears: c must be read (after p), the other not.
        api.shards = [
            Shard("old", (), False),
            Shard("p", ("old",), False),
            Shard("d", ("c",), True),  # listed before its parent
            Shard("c", ("p",), False),
            Shard("stray", (), False),
        ]
        await source._sync_shards()
        got = {lz.shard: lz.parents for lz in await store.list()}
        await store.close()
        return got

    assert asyncio.run(scenario()) == {"p": (), "c": ("p",), "d": ("c",)}


def test_a_shard_with_a_leased_descendant_never_gets_a_lease_again(tmp_path: Path) -> None:
    async def scenario() -> dict[str, tuple[str, ...]]:
        source, api, store = make_source(tmp_path, "TRIM_HORIZON")
        # Only the grandchild's lease is left (the ended ones were deleted); the listing
        # still shows the ancestors within the stream's retention.
        await store.open()
        await store.ensure([("g", ("c",))])
        api.shards = [Shard("p", (), False), Shard("c", ("p",), False), Shard("g", ("c",), True)]
        await source._sync_shards()
        got = {lz.shard: lz.parents for lz in await store.list()}
        await store.close()
        return got

    assert asyncio.run(scenario()) == {"g": ("c",)}


def test_trim_horizon_gives_every_listed_shard_a_lease_with_its_parents(tmp_path: Path) -> None:
    async def scenario() -> dict[str, tuple[str, ...]]:
        source, api, store = make_source(tmp_path, "TRIM_HORIZON")
        api.shards = [
            Shard("a", (), False),
            Shard("b", (), False),
            Shard("m", ("a", "b"), True),
            Shard("x", ("expired",), True),  # its parent is past the retention
        ]
        await source._sync_shards()
        got = {lz.shard: lz.parents for lz in await store.list()}
        await store.close()
        return got

    assert asyncio.run(scenario()) == {"a": (), "b": (), "m": ("a", "b"), "x": ()}


class Sink:
    def __init__(self) -> None:
        self.accepted: list[Any] = []
        self.assigned: list[Any] = []
        self.revoked: list[set[Any]] = []

    def assigned_(self, units: list[Any]) -> None:
        self.assigned.extend(units)


def test_a_shard_ends_only_after_what_was_read_is_checkpointed(tmp_path: Path) -> None:
    async def scenario() -> None:
        source, api, store = make_source(tmp_path, "TRIM_HORIZON")
        api.shards = [Shard("s", (), False)]
        records = [{"SequenceNumber": str(n)} for n in (10, 11)]
        api.pages["s"] = [Page(records, None, 0.0)]  # one page, then the shard ends
        accepted: list[Any] = []
        revoked: list[set[Any]] = []

        class CoreSink:
            def assigned(self, units: list[Any]) -> None:
                pass

            def accept(self, recs: list[Any]) -> None:
                accepted.extend(recs)

            async def revoke(self, units: set[Any], **_: Any) -> list[Any]:
                revoked.append(units)
                return []

            def confirm(self, results: list[Any]) -> None:
                pass

            def source_failed(self, reason: str) -> None:
                raise AssertionError(reason)

        await source.start(CoreSink())  # type: ignore[arg-type]
        for _ in range(200):
            if accepted:
                break
            await asyncio.sleep(0.01)
        assert [r.ack for r in accepted] == [10, 11]
        await asyncio.sleep(0.2)
        [lease] = await store.list()
        assert not lease.ended and revoked == [], "not ended before the checkpoint"
        # The core checkpoints the last record: now the shard ends and its lease is freed.
        from runtime.ordered.checkpoints import Checkpoint

        cp = Checkpoint("s", accepted[0].token, 11, 2, None)  # type: ignore[arg-type]
        [result] = await source.write_checkpoints([cp])
        assert result.ok
        for _ in range(200):
            [lease] = await store.list()
            if lease.ended and lease.owner is None:
                break
            await asyncio.sleep(0.01)
        assert lease.checkpoint == END and lease.owner is None
        assert revoked == [{"s"}]
        await source.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_positions_keep_the_width_of_zero_padded_sequence_numbers(tmp_path: Path) -> None:
    async def scenario() -> None:
        source, api, store = make_source(tmp_path, "TRIM_HORIZON")
        api.shards = [Shard("s", (), True)]
        api.pages["s"] = [Page([{"SequenceNumber": "000000000042"}], "s", 0.0)]
        accepted: list[Any] = []

        class CoreSink:
            def assigned(self, units: list[Any]) -> None:
                pass

            def accept(self, recs: list[Any]) -> None:
                accepted.extend(recs)

            async def revoke(self, units: set[Any], **_: Any) -> list[Any]:
                return []

            def confirm(self, results: list[Any]) -> None:
                pass

            def source_failed(self, reason: str) -> None:
                raise AssertionError(reason)

        await source.start(CoreSink())  # type: ignore[arg-type]
        for _ in range(200):
            if accepted:
                break
            await asyncio.sleep(0.01)
        from runtime.ordered.checkpoints import Checkpoint

        cp = Checkpoint("s", accepted[0].token, 42, 1, None)  # type: ignore[arg-type]
        [result] = await source.write_checkpoints([cp])
        assert result.ok
        [lease] = await store.list()
        assert lease.checkpoint == Position("after", "000000000042")
        await source.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_final_checkpoint_that_fails_once_is_written_before_the_lease_is_freed(
    tmp_path: Path,
) -> None:
    """Shutdown (and hand-off) write the last checkpoint, then free the lease for the next
    owner. A lease-store call that fails once (a timeout under load) must be tried again
    while the lease is still ours: freeing the lease at the old checkpoint makes the next
    owner do the last batches again."""

    async def scenario() -> None:
        source, api, store = make_source(tmp_path, "TRIM_HORIZON")
        api.shards = [Shard("s", (), True)]
        api.pages["s"] = [Page([{"SequenceNumber": "7"}], "s", 0.0)]
        accepted: list[Any] = []
        from runtime.ordered.checkpoints import Checkpoint

        class CoreSink:
            def assigned(self, units: list[Any]) -> None:
                pass

            def accept(self, recs: list[Any]) -> None:
                accepted.extend(recs)

            async def revoke(self, units: set[Any], **_: Any) -> list[Any]:
                return [Checkpoint("s", accepted[0].token, 7, 1, None)]  # type: ignore[arg-type]

            def confirm(self, results: list[Any]) -> None:
                pass

            def source_failed(self, reason: str) -> None:
                raise AssertionError(reason)

        await source.start(CoreSink())  # type: ignore[arg-type]
        for _ in range(200):
            if accepted:
                break
            await asyncio.sleep(0.01)
        real = store.checkpoint
        failures = [TimeoutError("the lease table is slow")]

        async def flaky(lease: Any, position: Position) -> Any:
            if failures:
                raise failures.pop()
            return await real(lease, position)

        store.checkpoint = flaky  # type: ignore[method-assign]
        await source.close()
        reopened = SqliteLeaseStore(str(tmp_path), source.mapping.uuid)
        await reopened.open()
        [lease] = await reopened.list()
        await reopened.close()
        assert not failures, "the store was called"
        assert lease.owner is None
        assert lease.checkpoint == Position("after", "7")

    asyncio.run(asyncio.wait_for(scenario(), 30))
