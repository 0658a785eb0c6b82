"""Taking, renewing, balancing and giving back shard leases: one worker, one mapping.

KCL 2.x's protocol (design lessons §3), with its known trap removed: a lease is never taken
from under a running invocation.

- **Renewal.** Every ``failover / 3`` seconds the owner increments each lease's counter (a
  conditional write). The table is read more often (every 2 s at most) to take free leases
  and see hand-off requests. A renewal whose condition fails means the lease was taken or evicted:
  the shard is dropped at once (``lost``). A renewal that cannot reach the store is tried
  again; once the last success is ``2/3 x failover`` old, the shard is handed off
  (``expiring``) with the rest of the failover time to finish, so it is quiet before anyone
  may consider the lease expired (others measure expiry from when *they* saw the counter
  move, which is never earlier than our last renewal).
- **Expiry.** A lease whose counter has not moved for ``failover`` seconds (measured on this
  worker's monotonic clock, so clocks of different pods never matter), or that has no owner,
  may be taken, conditionally on the owner and counter seen.
- **Balance.** Each worker aims at ``ceil(eligible / live owners)`` leases. It takes free or
  expired leases first; when none are left and another owner holds more than the target, it
  *asks* for one (``pending_owner``): that owner finishes what runs, writes the shard's final
  checkpoint and frees the lease, which the asker then takes. Ownership never overlaps.
- **Eligibility.** Ended shards (checkpoint ``SHARD_END``) are never taken; a shard whose
  parents (known to the table) have not all ended waits, so a child starts only after its
  parent(s) were read to the end and checkpointed as ended.

The coordinator does no shard work: it tells its :class:`LeaseHolder` (the shard source)
what happened, and serialises every write to a lease (renewals, checkpoints, release) so
that each one is conditional on the counter of the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from runtime.leases.store import Lease, LeaseStore, Position

log = structlog.get_logger("runtime.leases")

# How often the lease table is read (to take free leases, see hand-off requests, balance),
# at most: renewals run every third of the failover time, which may be longer.
SCAN_SECONDS = 2.0


class LeaseHolder(Protocol):
    def acquired(self, lease: Lease, token: int) -> None:
        """The shard is ours under ``token`` (a new number per acquisition): start reading."""

    def lost(self, shard: str) -> None:
        """The lease is gone (taken or evicted): drop the shard at once, write nothing."""

    def hand_off(self, shard: str, within: float | None) -> None:
        """Give the shard up: finish what runs (within ``within`` seconds when the lease may
        expire, else the function's timeout), write the final checkpoint, then call
        :meth:`LeaseCoordinator.release`."""


@dataclass(eq=False)
class Held:
    lease: Lease
    token: int
    renewed_at: float  # monotonic time of the last successful write
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    handing_off: bool = False


@dataclass(slots=True)
class _Seen:
    owner: str | None
    counter: int
    since: float


class LeaseCoordinator:
    def __init__(
        self,
        store: LeaseStore,
        holder: LeaseHolder,
        *,
        owner: str,
        failover_seconds: float,
        label: str,
    ) -> None:
        self.store = store
        self.owner = owner
        self._holder = holder
        self._failover = failover_seconds
        self._held: dict[str, Held] = {}
        self._seen: dict[str, _Seen] = {}
        self._tokens = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._asked: str | None = None  # the shard we asked another owner to hand over
        self._log = log.bind(mapping=label, owner=owner)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leases-{self.owner}")

    async def stop(self) -> None:
        """Stop renewing and taking (the holder gives back what it holds first)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Scan now (a shard ended: its children may be ready)."""
        self._wake.set()

    @property
    def held(self) -> dict[str, Held]:
        return self._held

    def token_of(self, shard: str) -> int | None:
        h = self._held.get(shard)
        return None if h is None else h.token

    # ------------------------------------------------------------------ writes of the owner

    async def checkpoint(self, shard: str, token: int, position: Position) -> str | None:
        """Write the shard's checkpoint under the lease; None when written, else why not."""
        h = self._held.get(shard)
        if h is None or h.token != token:
            return "the shard's lease is no longer held"
        async with h.lock:
            if self._held.get(shard) is not h:
                return "the shard's lease is no longer held"
            try:
                got = await self.store.checkpoint(h.lease, position)
            except Exception as exc:
                return f"lease store: {exc!r}"[:500]
            if got is None:
                self._drop(shard, "the lease changed owner; the checkpoint was refused")
                return "the lease changed owner (checkpoint refused)"
            h.lease, h.renewed_at = got, time.monotonic()
            return None

    async def release(self, shard: str, token: int) -> None:
        """Free the lease after the holder's final checkpoint (hand-off, shutdown, shard end)."""
        h = self._held.get(shard)
        if h is None or h.token != token:
            return
        async with h.lock:
            if self._held.pop(shard, None) is None:
                return
            try:
                await self.store.release(h.lease)
            except Exception as exc:
                # It expires instead; nothing of ours runs on it any more.
                self._log.warning("releasing a lease failed", shard=shard, error=repr(exc))
        self.wake()

    def checkpoint_of(self, shard: str) -> Position | None:
        h = self._held.get(shard)
        return None if h is None else h.lease.checkpoint

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        renew_every = self._failover / 3
        interval = min(renew_every, SCAN_SECONDS)
        renewed = 0.0
        while not self._stopped:
            try:
                if time.monotonic() - renewed >= renew_every - 0.05:
                    renewed = time.monotonic()
                    await self._renew_all()
                await self._scan()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("lease round failed; trying again", error=repr(exc)[:500])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)

    async def _renew_all(self) -> None:
        now = time.monotonic()
        for shard, h in list(self._held.items()):
            async with h.lock:
                if self._held.get(shard) is not h:
                    continue
                try:
                    got = await self.store.renew(h.lease)
                except Exception as exc:
                    age = time.monotonic() - h.renewed_at
                    self._log.warning(
                        "lease renewal failed", shard=shard, error=repr(exc)[:300], age=age
                    )
                    if age >= self._failover * 2 / 3 and not h.handing_off:
                        h.handing_off = True
                        remaining = max(0.0, self._failover - age - 0.5)
                        self._log.error(
                            "lease not renewed for too long; handing the shard off before "
                            "it may expire",
                            shard=shard,
                            within=round(remaining, 2),
                        )
                        self._holder.hand_off(shard, remaining)
                    continue
                if got is None:
                    self._drop(shard, "the lease was taken or evicted")
                    continue
                h.lease, h.renewed_at = got, now
                if got.pending_owner and got.pending_owner != self.owner and not h.handing_off:
                    h.handing_off = True
                    self._log.info(
                        "handing a shard over on request", shard=shard, to=got.pending_owner
                    )
                    self._holder.hand_off(shard, None)

    def _drop(self, shard: str, reason: str) -> None:
        if self._held.pop(shard, None) is not None:
            self._log.warning("lease lost", shard=shard, reason=reason)
            self._holder.lost(shard)

    async def _scan(self) -> None:
        if self._stopped:
            return
        leases = await self.store.list()
        now = time.monotonic()
        for lease in leases:
            seen = self._seen.get(lease.shard)
            if seen is None or seen.owner != lease.owner or seen.counter != lease.counter:
                self._seen[lease.shard] = _Seen(lease.owner, lease.counter, now)
        for lease in leases:
            h = self._held.get(lease.shard)
            if (
                h is not None
                and lease.owner == self.owner
                and lease.pending_owner
                and lease.pending_owner != self.owner
                and not h.handing_off
            ):
                h.handing_off = True
                self._log.info(
                    "handing a shard over on request", shard=lease.shard, to=lease.pending_owner
                )
                self._holder.hand_off(lease.shard, None)
        eligible = eligible_leases(leases)
        live = {lz.owner for lz in eligible if lz.owner and not self._expired(lz, now)}
        # A worker that asked for a hand-off is live even before it holds anything.
        live |= {lz.pending_owner for lz in eligible if lz.pending_owner}
        live.add(self.owner)
        target = math.ceil(len(eligible) / len(live)) if eligible else 0
        mine = sum(1 for lz in eligible if lz.shard in self._held)
        if self._asked is not None and (
            self._asked in self._held or all(lz.shard != self._asked for lz in eligible)
        ):
            self._asked = None
        if mine >= target:
            return
        free = [
            lz
            for lz in eligible
            if lz.shard not in self._held
            and self._expired(lz, now)
            and not self._reserved_for_another(lz, now)
        ]
        # Workers start their search at different places so they do not all race for the
        # same lease.
        offset = zlib.crc32(self.owner.encode())
        free.sort(key=lambda lz: zlib.crc32(lz.shard.encode()) ^ offset)
        for lease in free[: target - mine]:
            got = await self.store.take(lease, self.owner)
            if got is None:
                continue  # someone else was quicker
            self._tokens += 1
            h = Held(got, self._tokens, time.monotonic())
            self._held[got.shard] = h
            mine += 1
            self._log.info(
                "lease taken",
                shard=got.shard,
                previous_owner=lease.owner,
                checkpoint=got.checkpoint.encode() if got.checkpoint else None,
            )
            self._holder.acquired(got, h.token)
        if mine >= target or free or self._asked is not None:
            return
        self._ask_for_one(eligible, target, now)
        if self._asked is not None:
            for lease in eligible:
                if lease.shard == self._asked:
                    if not await self.store.request(lease, self.owner):
                        self._asked = None
                    else:
                        self._log.info(
                            "asked for a lease hand-off", shard=lease.shard, owner=lease.owner
                        )

    def _ask_for_one(self, eligible: list[Lease], target: int, now: float) -> None:
        counts: dict[str, list[Lease]] = {}
        for lz in eligible:
            if lz.owner and lz.owner != self.owner and not self._expired(lz, now):
                counts.setdefault(lz.owner, []).append(lz)
        if not counts:
            return
        richest = max(counts.values(), key=len)
        if len(richest) <= target:
            return
        choices = [lz for lz in richest if lz.pending_owner is None]
        if choices:
            self._asked = random.choice(choices).shard

    def _reserved_for_another(self, lease: Lease, now: float) -> bool:
        """A lease handed over on request is left to the worker that asked (for a failover
        time, in case it died meanwhile)."""
        if lease.pending_owner is None or lease.pending_owner == self.owner:
            return False
        seen = self._seen.get(lease.shard)
        return seen is None or now - seen.since < self._failover

    def _expired(self, lease: Lease, now: float) -> bool:
        if lease.owner is None:
            return True
        if lease.shard in self._held:
            return False
        seen = self._seen.get(lease.shard)
        return seen is not None and now - seen.since >= self._failover


def eligible_leases(leases: Iterable[Lease]) -> list[Lease]:
    """Leases that may be read now: not ended, and every parent known to the table ended."""
    leases = list(leases)
    known = {lz.shard for lz in leases}
    ended = {lz.shard for lz in leases if lz.ended}
    return [
        lz
        for lz in leases
        if not lz.ended and all(p in ended or p not in known for p in lz.parents)
    ]
