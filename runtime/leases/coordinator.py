"""Taking, renewing, balancing and giving back shard leases: one worker, one mapping.

KCL 2.x's protocol (design lessons §3), with its known trap removed: a lease is never taken
from under a running invocation.

- **Renewal.** Every ``failover / 3`` seconds the owner increments each lease's counter (a
  conditional write; a failed condition is read back, since a write applied whose answer was
  lost and retried by the client fails its own condition). A failed condition means the lease
  was taken or evicted: the shard is dropped at once (``lost``). The table is read more often
  (every 2 s at most) to take free leases and see hand-off requests. Every store call is
  bounded (a third of the failover time), so a hanging call delays nothing else.
- **Fencing.** Independently of store calls, an owner whose last successful write *started*
  ``2/3 x failover`` ago hands the shard off (``hand_off`` with what remains until the fence)
  and at the fence, ``failover`` less 10 % (at least 0.5 s), drops it (``lost``: running
  invocations are cancelled, and a handler that cannot be stopped ends the worker). Others
  measure expiry from when *they* saw the counter move, which is never before our last write
  started, so nothing of ours runs when another worker may take the lease.
- **Expiry.** A lease whose counter has not moved for ``failover`` seconds (measured on this
  worker's monotonic clock, so clocks of different pods never matter), or that has no owner,
  may be taken, conditionally on the owner and counter seen.
- **Balance.** Each worker aims at ``ceil(eligible / live owners)`` leases. It takes free or
  expired leases first; when none are left and other owners hold more than the target, it
  *asks* for leases (``pending_owner``): each owner finishes what runs, writes the shard's
  final checkpoint and frees the lease, which the asker then takes. Ownership never overlaps.
  A scan asks for up to a quarter of the target at once (KCL steals one lease per scan by
  default: a worker joining one that took all 512 shards waited minutes for its half), never
  for more than brings the asker to the target or takes an owner below it.
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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog

from runtime.leases.store import Lease, LeaseStore, Position

log = structlog.get_logger("runtime.leases")
T = TypeVar("T")

# How often the lease table is read (to take free leases, see hand-off requests, balance),
# at most: renewals run every third of the failover time, which may be longer.
SCAN_SECONDS = 2.0
# An owner drops a lease it could not renew once its last successful write is this old: the
# failover time less a margin (10 %, at least half a second, which covers the fence's own
# checking interval), before anyone else may take it.
FENCE_CHECK_SECONDS = 0.1
# How a checkpoint refused by the store itself (a timeout, a throttle) begins: the lease is
# still ours, so the write may be tried again; every other refusal is final.
STORE_FAILED = "lease store: "


def fence_after(failover: float) -> float:
    return failover - max(0.1 * failover, 0.5)


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
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopped = False
        self._taking = True
        # The shard we asked another owner to hand over, and that owner.
        self._asked: dict[str, str] = {}
        # Every store call is bounded by this: a call that hangs must not keep a renewal (or
        # the fence) from happening in time.
        self._call_timeout = max(0.5, failover_seconds / 3)
        self._log = log.bind(mapping=label, owner=owner)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._renew_loop(), name=f"lease-renewals-{self.owner}"),
            asyncio.create_task(self._scan_loop(), name=f"lease-scans-{self.owner}"),
            asyncio.create_task(self._fence_loop(), name=f"lease-fence-{self.owner}"),
        ]

    def stop_taking(self) -> None:
        """Shutdown begins: take and ask for nothing more (renewals go on)."""
        self._taking = False

    async def stop(self) -> None:
        """Stop renewing and taking (the holder gives back what it holds first). A round in
        progress finishes (a write cancelled half-way could land without us knowing its new
        counter); every store call is bounded, so this is quick."""
        self._stopped = True
        self._taking = False
        self._wake.set()
        self._stop_event.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._call_timeout + 1)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

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

    async def _call(self, call: Awaitable[T]) -> T:
        """A store call, bounded: a call that hangs must not outlive the lease it serves."""
        return await asyncio.wait_for(call, timeout=self._call_timeout)

    async def _read_back(self, shard: str) -> Lease | None:
        """The lease as stored now (after a conditional write failed: the write may have
        been applied and its answer lost, then retried by the client)."""
        with contextlib.suppress(Exception):
            for lease in await self._call(self.store.list()):
                if lease.shard == shard:
                    return lease
        return None

    async def checkpoint(self, shard: str, token: int, position: Position) -> str | None:
        """Write the shard's checkpoint under the lease; None when written, else why not."""
        h = self._held.get(shard)
        if h is None or h.token != token:
            return "the shard's lease is no longer held"
        async with h.lock:
            if self._held.get(shard) is not h:
                return "the shard's lease is no longer held"
            if h.lease.ended and not position.ended:
                return "the shard has ended"
            started = time.monotonic()
            try:
                got, found = await self._write_held(
                    shard,
                    h,
                    lambda lease: self.store.checkpoint(lease, position),
                    lambda now: now.checkpoint == position,
                )
            except Exception as exc:
                return f"{STORE_FAILED}{exc!r}"[:500]
            if got is None:
                if self._held.get(shard) is not h:
                    return "the shard's lease is no longer held"
                self._drop(
                    shard,
                    "the lease changed owner; the checkpoint was refused",
                    held=h.lease,
                    found=found,
                )
                return "the lease changed owner (checkpoint refused)"
            h.lease, h.renewed_at = got, started
            return None

    async def _write_held(
        self,
        shard: str,
        h: Held,
        write: Callable[[Lease], Awaitable[Lease | None]],
        applied: Callable[[Lease], bool],
    ) -> tuple[Lease | None, Lease | None]:
        """A conditional write under a lease we hold: (the lease written, None) or, when the
        lease changed owner, (None, the lease as stored). A failed condition while the
        stored owner is still us means writes of ours landed whose answers we never saw (a
        call cancelled or timed out after the store applied it, or retried by the client):
        nobody else can have written since, so when it is this very write (``applied``) it
        counts, and otherwise we adopt what is stored and write again on top of it."""
        found: Lease | None = None
        for _ in range(3):
            got = await self._call(write(h.lease))
            if got is not None:
                return got, None
            found = await self._read_back(shard)
            if found is None or found.owner != self.owner or self._held.get(shard) is not h:
                return None, found
            if found.counter == h.lease.counter + 1 and applied(found):
                return found, None
            h.lease = found  # renewed_at stays: when that write started is unknown
        return None, found

    async def release(self, shard: str, token: int) -> None:
        """Free the lease after the holder's final checkpoint (hand-off, shutdown, shard end)."""
        h = self._held.get(shard)
        if h is None or h.token != token:
            return
        async with h.lock:
            if self._held.get(shard) is not h:
                return
            try:
                got, found = await self._write_held(
                    shard, h, self.store.release, lambda now: now.owner is None
                )
                if got is None and found is not None and found.owner is not None:
                    self._log.warning(
                        "releasing a lease found it changed", shard=shard, found=_describe(found)
                    )
            except Exception as exc:
                # It expires instead; nothing of ours runs on it any more.
                self._log.warning("releasing a lease failed", shard=shard, error=repr(exc))
            finally:
                if self._held.get(shard) is h:
                    del self._held[shard]
        self.wake()

    # ------------------------------------------------------------------ the loops

    async def _sleep(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)

    async def _renew_loop(self) -> None:
        while not self._stopped:
            await asyncio.gather(
                *(self._renew(shard, h) for shard, h in list(self._held.items())),
                return_exceptions=True,
            )
            await self._sleep(self._stop_event, self._failover / 3)

    async def _scan_loop(self) -> None:
        while not self._stopped:
            try:
                await self._scan()
            except Exception as exc:
                self._log.warning("lease scan failed; trying again", error=repr(exc)[:500])
            self._wake.clear()
            await self._sleep(self._wake, min(self._failover / 3, SCAN_SECONDS))

    async def _fence_loop(self) -> None:
        """Independent of every store call: an owner whose last successful write is getting
        old hands its shard off (at 2/3 of the failover time, with what remains of it), and
        drops it for good before anyone may take the lease (others measure expiry from when
        they saw our counter move, never before our last write started)."""
        while not self._stopped:
            now = time.monotonic()
            drop_after = fence_after(self._failover)
            hand_off_after = min(self._failover * 2 / 3, drop_after * 0.75)
            for shard, h in list(self._held.items()):
                age = now - h.renewed_at
                if age >= drop_after:
                    self._drop(shard, f"not renewed for {age:.1f} s: the lease may expire")
                elif age >= hand_off_after and not h.handing_off:
                    h.handing_off = True
                    within = max(0.0, drop_after - age)
                    self._log.error(
                        "lease not renewed for too long; handing the shard off before it "
                        "may expire",
                        shard=shard,
                        within=round(within, 2),
                    )
                    self._holder.hand_off(shard, within)
            await self._sleep(self._stop_event, FENCE_CHECK_SECONDS)

    async def _renew(self, shard: str, h: Held) -> None:
        async with h.lock:
            if self._held.get(shard) is not h:
                return
            started = time.monotonic()
            try:
                got, found = await self._write_held(shard, h, self.store.renew, lambda now: True)
            except Exception as exc:
                self._log.warning(
                    "lease renewal failed",
                    shard=shard,
                    error=repr(exc)[:300],
                    age=round(time.monotonic() - h.renewed_at, 2),
                )
                return
            if got is None:
                if self._held.get(shard) is h:
                    self._drop(shard, "the lease was taken or evicted", held=h.lease, found=found)
                return
            h.lease, h.renewed_at = got, started
            if got.pending_owner and got.pending_owner != self.owner and not h.handing_off:
                h.handing_off = True
                self._log.info("handing a shard over on request", shard=shard, to=got.pending_owner)
                self._holder.hand_off(shard, None)

    def _drop(
        self, shard: str, reason: str, *, held: Lease | None = None, found: Lease | None = None
    ) -> None:
        """``held``/``found``: the lease as we knew it and as the store has it now (the log
        line then shows who moved it, and how)."""
        if self._held.pop(shard, None) is not None:
            detail = {}
            if held is not None:
                detail["held"] = _describe(held)
                detail["found"] = _describe(found) if found is not None else "no lease"
            self._log.warning("lease lost", shard=shard, reason=reason, **detail)
            self._holder.lost(shard)

    async def _scan(self) -> None:
        if self._stopped:
            return
        leases = await self._call(self.store.list())
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
        await self._clean_up(leases)
        eligible = eligible_leases(leases)
        live = {lz.owner for lz in eligible if lz.owner and not self._expired(lz, now)}
        # A worker that asked for a hand-off is live even before it holds anything.
        live |= {lz.pending_owner for lz in eligible if lz.pending_owner}
        live.add(self.owner)
        target = math.ceil(len(eligible) / len(live)) if eligible else 0
        mine = sum(1 for lz in eligible if lz.shard in self._held)
        if self._asked:
            by_shard = {lz.shard: lz for lz in eligible}
            for shard, asked_of in list(self._asked.items()):
                current = by_shard.get(shard)
                if current is None or shard in self._held or current.owner not in (asked_of, None):
                    del self._asked[shard]  # done, gone, or taken by a third worker
        if mine >= target or not self._taking:
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
            if not self._taking:
                return
            started = time.monotonic()
            got = await self._call(self.store.take(lease, self.owner))
            if got is None:
                continue  # someone else was quicker
            self._tokens += 1
            h = Held(got, self._tokens, started)
            self._held[got.shard] = h
            mine += 1
            self._log.info(
                "lease taken",
                shard=got.shard,
                previous_owner=lease.owner,
                checkpoint=got.checkpoint.encode() if got.checkpoint else None,
            )
            self._holder.acquired(got, h.token)
        short = target - mine - len(self._asked)
        if short <= 0 or free:
            return
        for wanted in self._ask_for(eligible, target, now, min(short, max(1, target // 4))):
            if not self._taking:
                return
            if wanted.owner is not None and await self._call(
                self.store.request(wanted, self.owner)
            ):
                self._asked[wanted.shard] = wanted.owner
                self._log.info("asked for a lease hand-off", shard=wanted.shard, owner=wanted.owner)

    async def _clean_up(self, leases: list[Lease]) -> None:
        """Delete ended leases whose children all started (have a checkpoint): the table
        would otherwise grow with every reshard (DynamoDB Streams rolls shards every few
        hours)."""
        children: dict[str, list[Lease]] = {}
        for lz in leases:
            for p in lz.parents:
                children.setdefault(p, []).append(lz)
        for lz in leases:
            kids = children.get(lz.shard)
            if (
                lz.ended
                and lz.owner is None
                and kids
                and all(k.checkpoint is not None for k in kids)
                and await self._call(self.store.delete(lz))
            ):
                self._seen.pop(lz.shard, None)
                self._log.info("ended lease deleted", shard=lz.shard)

    def _ask_for(self, eligible: list[Lease], target: int, now: float, n: int) -> list[Lease]:
        """Up to ``n`` leases to ask for, richest owners first, each owner giving at most what
        it holds above the target (counting hand-offs already asked of it, by anyone)."""
        held: dict[str, list[Lease]] = {}
        for lz in eligible:
            if lz.owner and lz.owner != self.owner and not self._expired(lz, now):
                held.setdefault(lz.owner, []).append(lz)
        out: list[Lease] = []
        for leases in sorted(held.values(), key=len, reverse=True):
            asked = [lz for lz in leases if lz.pending_owner is None]
            spare = len(leases) - target - (len(leases) - len(asked))
            if spare <= 0:
                break
            out += random.sample(asked, min(spare, n - len(out)))
            if len(out) >= n:
                break
        return out

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


def _describe(lease: Lease) -> str:
    checkpoint = lease.checkpoint.encode() if lease.checkpoint else None
    return f"owner={lease.owner} counter={lease.counter} checkpoint={checkpoint}"


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
