"""Which worker processes a pod runs, and what each one holds.

Each function runs in worker processes of its own, as on Lambda: its handlers see exactly
its own environment variables, and a crash, recycle or memory blow-up of one function never
touches another's in-flight work. A function gets ``Workers`` processes (its YAML field), or
``ESM_WORKERS``, or, when neither is set, the usable cores shared out over the functions that
have enabled mappings (at least one each).

The supervisor decides what each worker of a function holds, per mapping, and passes it on
the worker's command line (and shows it in the logs and in ``esm_worker_mapping_share``):

- SQS: a share of the mapping's concurrency (``MaximumConcurrency`` split over the workers,
  with the scaling start value split alike), which sizes the worker's pollers and batches;
- Kafka: a consumer group membership with a concurrency share (the group protocol then
  spreads partitions over the members of every worker and pod);
- a function's ``ReservedConcurrentExecutions`` is split over its workers and caps each
  worker's shares.

Shares of small limits are rotated by the mapping's UUID so they do not all land on
worker 0; a worker whose share is 0 does not run that mapping.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from runtime.config.resolved import Function, Mapping, RuntimeConfig
from runtime.config.settings import Settings
from runtime.pipeline.scaling import split


@dataclass(frozen=True, slots=True)
class Share:
    """One worker's part of one mapping's concurrency."""

    initial: int
    maximum: int


@dataclass(frozen=True)
class WorkerPlan:
    function: str
    index: int  # among the function's workers
    count: int  # the function's workers
    shares: dict[str, Share] = field(default_factory=dict)  # by mapping UUID
    reserved: int | None = None  # this worker's part of ReservedConcurrentExecutions
    # This worker process's name as a shard lease owner (set by the supervisor per start, so
    # that it can free a dead worker's leases at once).
    lease_owner: str = ""
    # Mappings whose source did not answer the supervisor (set per start): the worker starts
    # them in the background instead of making its readiness wait for their timeouts.
    unreachable: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.function}/{self.index}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "function": self.function,
                "index": self.index,
                "count": self.count,
                "reserved": self.reserved,
                "lease_owner": self.lease_owner,
                "unreachable": list(self.unreachable),
                "shares": {u: [s.initial, s.maximum] for u, s in self.shares.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerPlan:
        d = json.loads(text)
        return cls(
            function=d["function"],
            index=d["index"],
            count=d["count"],
            reserved=d["reserved"],
            lease_owner=d.get("lease_owner", ""),
            unreachable=tuple(d.get("unreachable", ())),
            shares={u: Share(i, m) for u, (i, m) in d["shares"].items()},
        )


def cgroup_cpu_limit(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """The container's CPU limit (cgroup v2 ``cpu.max``: "quota period"), rounded up; None
    when there is none. A pod sees every core of its node, so the limit must be read."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    limit = cgroup_cpu_limit()
    return min(cores, limit) if limit is not None else cores


def workers_for(function: Function, settings: Settings, functions_running: int) -> int:
    if function.workers is not None:
        return function.workers
    if settings.workers is not None:
        return settings.workers
    return max(1, usable_cores() // max(1, functions_running))


def mapping_share(mapping: Mapping, settings: Settings, index: int, count: int) -> Share | None:
    """Split a mapping's limits over ``count`` workers; None if this worker gets nothing.

    With ReservedConcurrentExecutions, only the workers that got a part of it take part (so a
    mapping never ends up with no worker at all), and a share never passes the worker's part.
    """
    reserved = function_share(mapping.function, index, count)
    if reserved == 0:
        return None
    eligible = count
    if mapping.function.reserved_concurrency is not None:
        eligible = min(count, mapping.function.reserved_concurrency)  # workers 0..eligible-1
    # Rotated by the mapping's UUID (stable when other mappings come and go through the API,
    # so an unrelated change never re-plans this mapping's workers).
    slot = (index + int(mapping.uuid.replace("-", "")[:8], 16)) % eligible
    maximum = mapping.maximum_concurrency or settings.default_maximum_concurrency
    share_max = split(maximum, eligible, slot)
    if reserved is not None:
        share_max = min(share_max, reserved)
    if share_max == 0:
        return None
    initial = split(min(settings.scaling_initial_concurrency, maximum), eligible, slot)
    return Share(initial=min(share_max, max(1, initial)), maximum=share_max)


def function_share(function: Function, index: int, count: int) -> int | None:
    """This worker's part of the function's ReservedConcurrentExecutions (None: unlimited)."""
    if function.reserved_concurrency is None:
        return None
    return split(function.reserved_concurrency, count, index)


def plan_workers(config: RuntimeConfig, settings: Settings) -> list[WorkerPlan]:
    """Every worker of the pod: per function with enabled mappings, its workers' shares."""
    enabled: dict[str, list[Mapping]] = {}
    for m in config.mappings:
        if m.enabled:
            enabled.setdefault(m.function.name, []).append(m)
    plans = []
    for name, mappings in enabled.items():
        function = config.functions[name]
        count = workers_for(function, settings, len(enabled))
        for index in range(count):
            shares = {}
            for m in mappings:
                share = mapping_share(m, settings, index, count)
                if share is not None:
                    shares[m.uuid] = share
            if shares:  # a worker with nothing to run is not started
                plans.append(
                    WorkerPlan(name, index, count, shares, function_share(function, index, count))
                )
    return plans
