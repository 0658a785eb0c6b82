"""The lease coordinator against a real SQLite lease store: taking, balancing by asked-for
hand-offs, expiry, parents before children, and what an owner does when it cannot renew."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.leases import coordinator as coordinator_module
from runtime.leases.coordinator import LeaseCoordinator, eligible_leases
from runtime.leases.sqlite_store import SqliteLeaseStore
from runtime.leases.store import END, Lease, LeaseStoreError, Position


class Holder:
    """Records what the coordinator tells it; hands shards back at once when asked."""

    def __init__(self) -> None:
        self.coordinator: LeaseCoordinator | None = None
        self.acquired: list[str] = []
        self.lost: list[str] = []
        self.hand_offs: list[tuple[str, float | None]] = []
        self.release_on_hand_off = True

    def acquired_(self, lease: Lease, token: int) -> None:
        self.acquired.append(lease.shard)

    def lost_(self, shard: str) -> None:
        self.lost.append(shard)
        self.lost_at = time.monotonic()

    def hand_off_(self, shard: str, within: float | None) -> None:
        self.hand_offs.append((shard, within))
        if self.release_on_hand_off and self.coordinator is not None:
            token = self.coordinator.token_of(shard)
            assert token is not None
            asyncio.get_running_loop().create_task(self.coordinator.release(shard, token))


def make(
    store: SqliteLeaseStore, owner: str, failover: float = 1.5
) -> tuple[LeaseCoordinator, Holder]:
    holder = Holder()
    # The holder protocol's method names, bound to the recorder.
    adapter: Any = type(
        "Adapter",
        (),
        {
            "acquired": lambda self, lz, t: holder.acquired_(lz, t),
            "lost": lambda self, s: holder.lost_(s),
            "hand_off": lambda self, s, w: holder.hand_off_(s, w),
        },
    )()
    c = LeaseCoordinator(store, adapter, owner=owner, failover_seconds=failover, label="m")
    holder.coordinator = c
    return c, holder


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def fast_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coordinator_module, "SCAN_SECONDS", 0.05)


def test_two_workers_balance_by_asking_and_never_share_a_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        store_a = SqliteLeaseStore(str(tmp_path), "m")
        store_b = SqliteLeaseStore(str(tmp_path), "m")
        await store_a.open()
        await store_a.ensure([(f"s{i}", ()) for i in range(4)])
        a, ha = make(store_a, "a")
        a.start()
        await until(lambda: len(a.held) == 4)
        b, _ = make(store_b, "b")
        b.start()
        # b finds nothing free, asks a for what is above the target, a hands over: 2 and 2.
        await until(lambda: len(a.held) == 2 and len(b.held) == 2)
        assert len(ha.hand_offs) == 2 and all(w is None for _, w in ha.hand_offs)
        assert not set(a.held) & set(b.held)
        owners = {lz.shard: lz.owner for lz in await store_a.list()}
        assert sorted(owners.values()) == ["a", "a", "b", "b"]
        await asyncio.sleep(0.5)  # stable: no ping-pong
        assert len(a.held) == 2 and len(b.held) == 2 and len(ha.hand_offs) == 2
        await a.stop()
        await b.stop()
        await store_a.close()
        await store_b.close()

    run(scenario)


def test_a_joining_worker_asks_for_its_share_a_quarter_at_a_time_and_no_more(
    tmp_path: Path,
) -> None:
    """32 shards held by a: b's target is 16; it asks for 4 a scan (KCL's one a scan made a
    worker joining one that held 512 shards wait minutes) until 16 are asked, never more,
    even while a has handed none over yet."""

    async def scenario() -> None:
        store_a = SqliteLeaseStore(str(tmp_path), "m")
        store_b = SqliteLeaseStore(str(tmp_path), "m")
        await store_a.open()
        await store_a.ensure([(f"s{i}", ()) for i in range(32)])
        a, ha = make(store_a, "a")
        ha.release_on_hand_off = False  # a holds on: b's asks pile up
        a.start()
        await until(lambda: len(a.held) == 32)
        b, _ = make(store_b, "b")
        b.start()
        await until(lambda: len(ha.hand_offs) == 16)
        await asyncio.sleep(0.5)  # ten more scans: no more asks
        pending = [lz.pending_owner for lz in await store_a.list() if lz.pending_owner]
        assert pending == ["b"] * 16 and len(ha.hand_offs) == 16
        for shard, _ in ha.hand_offs:
            token = a.token_of(shard)
            assert token is not None
            await a.release(shard, token)
        await until(lambda: len(a.held) == 16 and len(b.held) == 16)
        assert not set(a.held) & set(b.held)
        await a.stop()
        await b.stop()
        await store_a.close()
        await store_b.close()

    run(scenario)


def test_a_silent_owner_s_leases_are_taken_after_the_failover_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteLeaseStore(str(tmp_path), "m")
        await store.open()
        await store.ensure([("s0", ()), ("s1", ())])
        [s0, s1] = await store.list()
        assert await store.take(s0, "dead") is not None
        assert await store.take(s1, "dead") is not None
        b, _ = make(store, "b", failover=1.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        b.start()
        await until(lambda: len(b.held) == 2)
        assert loop.time() - started >= 1.5, "taken only once the counter stood still"
        await b.stop()
        await store.close()

    run(scenario)


def test_children_wait_until_their_parents_ended(tmp_path: Path) -> None:
    leases = [
        Lease("p", None, 0, None),
        Lease("c1", None, 0, None, ("p",)),
        Lease("m", None, 0, None, ("c1", "c2")),
        Lease("c2", None, 0, END, ("p",)),
        Lease("orphan", None, 0, None, ("trimmed-away",)),
    ]
    assert [lz.shard for lz in eligible_leases(leases)] == ["p", "orphan"]
    ended_parent = [Lease("p", None, 0, END), *leases[1:]]
    assert [lz.shard for lz in eligible_leases(ended_parent)] == ["c1", "orphan"]


def test_an_owner_that_cannot_renew_hands_off_before_its_lease_may_expire(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = SqliteLeaseStore(str(tmp_path), "m")
        await store.open()
        await store.ensure([("s0", ())])
        a, ha = make(store, "a", failover=1.5)
        ha.release_on_hand_off = False
        a.start()
        await until(lambda: len(a.held) == 1)

        async def unreachable(*_: Any, **__: Any) -> Any:
            raise LeaseStoreError("disk gone")

        held = a.held["s0"]
        store.renew = unreachable  # type: ignore[method-assign]
        store.list = unreachable  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        cut = loop.time()
        await until(lambda: bool(ha.hand_offs), 5)
        elapsed = loop.time() - cut
        [(shard, within)] = ha.hand_offs
        assert shard == "s0" and within is not None
        # Told three quarters of the way to the fence (1.0 s), with what remains until it...
        assert elapsed < 1.0 and within <= 0.25
        # ... and dropped at the fence, before the lease may expire (others may take it one
        # failover time after our last successful write started), though no store call
        # answers.
        await until(lambda: ha.lost == ["s0"], 5)
        assert 1.0 <= ha.lost_at - held.renewed_at < 1.5 - 0.25 and "s0" not in a.held
        await a.stop()
        await store.close()

    run(scenario)


def test_a_lease_taken_by_another_is_lost_and_its_checkpoint_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteLeaseStore(str(tmp_path), "m")
        await store.open()
        await store.ensure([("s0", ())])
        a, ha = make(store, "a", failover=3.0)
        a.start()
        await until(lambda: len(a.held) == 1)
        token = a.token_of("s0")
        assert token is not None
        assert await a.checkpoint("s0", token, Position("after", "5")) is None
        # An operator (or a supervisor that saw the worker die) frees it; someone takes it.
        assert await store.evict("a") == 1
        [free] = await store.list()
        assert await store.take(free, "b") is not None
        error = await a.checkpoint("s0", token, Position("after", "9"))
        assert error is not None and "owner" in error
        assert ha.lost == ["s0"] and "s0" not in a.held
        [now] = await store.list()
        assert now.owner == "b" and now.checkpoint == Position("after", "5")
        await a.stop()
        await store.close()

    run(scenario)


def test_a_write_of_ours_whose_answer_was_lost_does_not_lose_the_lease(tmp_path: Path) -> None:
    """A checkpoint call cancelled (or timed out) after the store applied it leaves the
    owner with an older counter. The next write's condition fails, yet the lease is still
    ours (same owner): the owner adopts what is stored and writes on top of it, instead of
    dropping the shard and leaving its newest checkpoint unwritten."""

    async def scenario() -> None:
        store = SqliteLeaseStore(str(tmp_path), "m")
        await store.open()
        await store.ensure([("s0", ())])
        a, ha = make(store, "a", failover=3.0)
        a.start()
        await until(lambda: len(a.held) == 1)
        token = a.token_of("s0")
        assert token is not None
        # The store applies a checkpoint whose answer never reaches the owner.
        assert await store.checkpoint(a.held["s0"].lease, Position("after", "5")) is not None
        assert await a.checkpoint("s0", token, Position("after", "9")) is None
        assert ha.lost == [] and "s0" in a.held
        [now] = await store.list()
        assert now.owner == "a" and now.checkpoint == Position("after", "9")
        # Renewals carry on from there.
        before = now.counter
        await until(lambda: a.held["s0"].lease.counter > before)
        await a.stop()
        await store.close()

    run(scenario)


def test_a_renewal_after_a_lost_answer_keeps_the_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteLeaseStore(str(tmp_path), "m")
        await store.open()
        await store.ensure([("s0", ())])
        a, ha = make(store, "a", failover=1.5)
        a.start()
        await until(lambda: len(a.held) == 1)
        # Two writes of ours landed unseen (the counter moved by two).
        lease = a.held["s0"].lease
        moved = await store.checkpoint(lease, Position("after", "5"))
        assert moved is not None and await store.renew(moved) is not None
        counter = moved.counter + 1
        await until(lambda: a.held["s0"].lease.counter > counter)
        assert ha.lost == []
        await a.stop()
        await store.close()

    run(scenario)


def test_a_release_after_a_lost_answer_frees_the_lease_at_once(tmp_path: Path) -> None:
    """Otherwise the next owner waits the failover time for a lease nobody works on."""

    async def scenario() -> None:
        store = SqliteLeaseStore(str(tmp_path), "m")
        await store.open()
        await store.ensure([("s0", ())])
        a, _ = make(store, "a", failover=3.0)
        a.start()
        await until(lambda: len(a.held) == 1)
        token = a.token_of("s0")
        assert token is not None
        assert await store.checkpoint(a.held["s0"].lease, Position("after", "5")) is not None
        await a.stop()
        await a.release("s0", token)
        [now] = await store.list()
        assert now.owner is None and now.checkpoint == Position("after", "5")
        await store.close()

    run(scenario)
