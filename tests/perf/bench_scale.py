"""How the runtime's cost grows with work units: Kafka partitions and Kinesis shards.

    .venv/bin/python -m tests.perf.bench_scale [--sources kafka,kinesis] [--units 1,64,512]
        [--kafka-records 100000] [--kinesis-records 20000] [--workers 2] [--quick]
        [--bootstrap HOST:PORT] [--endpoint URL]

Every partition or shard a mapping owns is a unit of the ordered core with its own reader,
buffers, checkpoint tracker and metrics series, so memory and idle CPU should grow with the
unit count, and a deployment with hundreds of them needs to know by how much. For each source
of ``--sources`` and each unit count U of ``--units`` (default 1, 64, 512), two runs, each a
fresh ``python -m runtime run`` with ``--workers`` (2) worker processes, one no-op function
(:func:`tests.perf.handlers.noop`) and one mapping (BatchSize ``--batch-size``, 100;
MaximumBatchingWindowInSeconds 0; StartingPosition TRIM_HORIZON) on a fresh topic or stream of
U units. The runtime keeps its default settings (polling, checkpoints, commit interval) but for
ESM_KAFKA_SESSION_TIMEOUT_MS ``--kafka-session-timeout-ms`` (6000: Tansu holds a group join for
half the session timeout) and a lease store (ESM_DATA_DIR) of its own per run;
``--runtime-env`` adds more.

(a) idle: on an empty topic or stream, wait until ``esm_owned_units`` (summed over the workers)
    reaches U; for Kinesis, also until the run's lease table (its SQLite file) shows the shards
    balanced over the workers, none holding more than one over another (the first worker to scan
    the table takes every free lease, the other then asks for its share, up to a quarter of its
    target per 2 s scan, so 512 shards balance in about 10 s; after ``--balance-timeout``, 900
    s, it is measured anyway and said so); then ``--settle-seconds`` (5) for the last hand-off
    and first reads to finish; then read the CPU time of every process over ``--idle-seconds``
    (10) and, at the end, the RSS of the supervisor and of each worker from /proc. CPU is
    reported as cores (CPU seconds per second): the runtime's (supervisor + workers) and the
    server's (broker or emulator, when started here): an idle unit still costs polls on both
    sides. ``own_seconds`` and ``balanced_seconds`` are from /readyz; the leases each worker
    held when the window opened and closed are reported. Nothing polls the runtime during the
    window; after it (and the RSS), 20 ``/metrics`` requests in a row give the supervisor's CPU
    per request and the response's size, a scrape's cost, which grows with the per-unit series.
(b) under load: a fresh topic or stream of U units is filled beforehand (not timed) with R
    records of 100 bytes spread evenly over the units (``--kafka-records``, 100,000: record i
    to partition i mod U; ``--kinesis-records``, 20,000: round-robin over one partition key
    per shard, chosen from the shards' hash key ranges). From the runtime's launch, this
    process polls ``/readyz`` and ``/metrics`` every ``--metrics-poll`` (0.2) s until
    ``lambda_committed_events_total`` reaches R. The window runs from the first poll that saw
    a record read (``lambda_polled_events_total`` > 0) to that last poll: the workers start
    reading before the supervisor reports ready (a Kinesis worker may have read everything by
    then), so ``/readyz`` is no start line here, and the window still holds the rest of the
    group join or lease taking (a unit is read as soon as it is owned) and up to one commit or
    checkpoint interval (1 s by default) at the end. Reported: records/s over the window and
    to the first poll that saw every record invoked (``lambda_invoked_events_total``, without
    the checkpoint wait), ``steady`` between the polls that first saw 10 % and 90 % committed
    (none when they were the same poll), and from /readyz as the other benchmarks time it;
    when each stage was reached, from the launch; the CPU seconds of each process over the
    window (what the workers did before the first poll saw a read, at most one poll interval
    of it, is not in it) and the workers' CPU µs per record, plus the runtime's CPU since the
    launch (start-up included); the RSS of each process right after the last record was
    committed. The supervisor's CPU in the window is mostly this process's polls (at 512 units
    a /metrics request costs it tens of ms), hence the workers' figure per record.

Kinesis: ministack has no shard limit (its CreateStream takes any ShardCount >= 1 and its
ListShards returns up to 10,000 shards a page); a stream of 512 shards is ACTIVE at once. Real
Kinesis allows 20,000 shards per account by default in us-east-1, us-west-2 and eu-west-1 and
1,000 or 6,000 elsewhere (its quotas page), so 512 is within what a deployment may meet.
ministack's Kinesis, though, keeps every shard iterator it hands out for 5 minutes and scans
them all on every request, so its CPU per GetRecords grows with the shards and with how long
it has been serving them: its idle cores with 64 and more shards, and the load rates at 512
(where it saturates a core), are the emulator's, not what Kinesis would do.
DynamoDB is left out: a table's stream has the shards DynamoDB chooses (ministack keeps one
per table). Tansu keeps topics in memory: the topics made here are not deleted, and go with
the broker when it stops.

``--quick`` (a smoke test, not figures): units 1,4, 2,000 Kafka and 400 Kinesis records, 1 s
to settle, 2 s idle, a Kafka session timeout of 2000 ms, 3 s to balance; explicit options
still win.

The exit code is 0 when every run completed (whatever the figures: this is a measurement) and 1
when one failed (units not owned in time, records not committed, the runtime dying or not
exiting 0 on SIGTERM). The last line is ``RESULT {json}`` with every figure.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.perf.bench_kinesis import fill_stream, stream_config, temporary_stream
from tests.perf.common import (
    BODY_BYTES,
    MIB,
    BenchError,
    Runtime,
    cpu_delta,
    cpu_seconds,
    cpu_snapshot,
    cpu_text,
    rss_bytes,
    worker_cpu_seconds,
)
from tests.perf.driver import (
    Setup,
    add_runtime_env_and_keep,
    add_timeout_options,
    broker,
    emulator,
    result_line,
    run_main,
)
from tests.perf.kafka_common import (
    SESSION_TIMEOUT_MS,
    UNUSED_AWS_ENDPOINT,
    create_topic,
    fill_topic,
    fresh_group,
    kafka_config,
)
from tests.perf.kafka_throughput import steady_rate
from tests.support.aws import client
from tests.support.streams import owners, sqlite_leases, stream_name

NOOP_HANDLER = "tests.perf.handlers.noop"
SOURCES = ("kafka", "kinesis")
SCRAPES = 20  # /metrics requests timed after the idle window
QUICK = {
    "units": [1, 4],
    "kafka_records": 2000,
    "kinesis_records": 400,
    "settle_seconds": 1.0,
    "idle_seconds": 2.0,
    "kafka_session_timeout_ms": 2000,
    "balance_timeout": 3.0,
}
DEFAULTS = {
    "units": [1, 64, 512],
    "kafka_records": 100_000,
    "kinesis_records": 20_000,
    "settle_seconds": 5.0,
    "idle_seconds": 10.0,
    "kafka_session_timeout_ms": SESSION_TIMEOUT_MS,
    "balance_timeout": 900.0,
}


# --------------------------------------------------------------------------- sources


class Source(Protocol):
    """What a run needs from a source: fresh topics or streams of U units, filled or not, and
    the runtime's configuration for them."""

    @property
    def name(self) -> str: ...

    @property
    def unit(self) -> str:
        """What a unit is called: "partition" or "shard"."""
        ...

    @property
    def records(self) -> int:
        """Records for the load run."""
        ...

    @property
    def aws_endpoint(self) -> str:
        """The runtime's AWS endpoint."""
        ...

    @property
    def server_pids(self) -> dict[str, int]:
        """The broker or emulator, when started here."""
        ...

    def fresh(self, units: int, tag: str) -> contextlib.AbstractContextManager[str]:
        """A fresh topic or stream of ``units`` units (its name or ARN)."""
        ...

    def fill(self, target: str, units: int, n: int) -> float:
        """Put n records spread evenly over the units; the seconds it took."""
        ...

    def config(self, target: str, tag: str) -> dict[str, Any]: ...

    def env(self, tag: str) -> dict[str, str]: ...

    def held(self, tag: str) -> list[int] | None:
        """Units held by each lease owner of the run, most first, when the source has a lease
        table to read them from (None for Kafka: its group coordinator assigns at once)."""
        ...


@dataclass
class KafkaSource:
    bootstrap: str
    server_pids: dict[str, int]
    records: int
    batch_size: int
    session_timeout_ms: int
    runtime_env: dict[str, str]
    name: str = "kafka"
    unit: str = "partition"
    aws_endpoint: str = UNUSED_AWS_ENDPOINT

    @contextlib.contextmanager
    def fresh(self, units: int, tag: str) -> Iterator[str]:
        yield create_topic(self.bootstrap, units, f"bench-scale-{tag}")

    def fill(self, target: str, units: int, n: int) -> float:
        """Produce record i (make_body(i)) to partition i mod units."""
        return fill_topic(self.bootstrap, target, n, partitions=units)

    def config(self, target: str, tag: str) -> dict[str, Any]:
        return kafka_config(self.bootstrap, target, NOOP_HANDLER, self.batch_size, fresh_group(tag))

    def env(self, tag: str) -> dict[str, str]:
        return {"ESM_KAFKA_SESSION_TIMEOUT_MS": str(self.session_timeout_ms), **self.runtime_env}

    def held(self, tag: str) -> list[int] | None:
        return None


def shard_keys(kinesis: Any, arn: str) -> list[str]:
    """One partition key per open shard of the stream (``k<j>``, the first j whose MD5 falls in
    the shard's hash key range), in shard order: putting record i with key i mod shards spreads
    the records evenly whatever the shard count."""
    shards = kinesis.list_shards(StreamName=stream_name(arn))["Shards"]
    ranges = sorted(
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards
    )
    starts = [lo for lo, _ in ranges]
    keys: list[str | None] = [None] * len(ranges)
    missing, j = len(ranges), 0
    while missing:
        key = f"k{j}"
        h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        slot = bisect.bisect_right(starts, h) - 1
        if slot >= 0 and h <= ranges[slot][1] and keys[slot] is None:
            keys[slot] = key
            missing -= 1
        j += 1
        if j > 10_000_000:
            raise BenchError(f"no partition key found for {missing} shards of {arn}")
    return [k for k in keys if k is not None]


@dataclass
class KinesisSource:
    endpoint: str
    server_pids: dict[str, int]
    records: int
    batch_size: int
    runtime_env: dict[str, str]
    workdir: Path
    fill_threads: int
    name: str = "kinesis"
    unit: str = "shard"
    kinesis: Any = field(init=False)

    def __post_init__(self) -> None:
        self.kinesis = client("kinesis", self.endpoint)

    @property
    def aws_endpoint(self) -> str:
        return self.endpoint

    def fresh(self, units: int, tag: str) -> contextlib.AbstractContextManager[str]:
        return temporary_stream(self.kinesis, units, f"bench-scale-{tag}")

    def fill(self, target: str, units: int, n: int) -> float:
        keys = shard_keys(self.kinesis, target)
        if len(keys) != units:
            raise BenchError(f"{target} lists {len(keys)} shards, not {units}")
        return fill_stream(self.kinesis, target, n, lambda i: keys[i % units], self.fill_threads)

    def config(self, target: str, tag: str) -> dict[str, Any]:
        return stream_config(target, NOOP_HANDLER, self.batch_size)

    def env(self, tag: str) -> dict[str, str]:
        return {"ESM_DATA_DIR": str(self.data_dir(tag)), **self.runtime_env}

    def data_dir(self, tag: str) -> Path:
        return self.workdir / f"data-{tag}"

    def held(self, tag: str) -> list[int] | None:
        return sorted(owners(sqlite_leases(self.data_dir(tag))).values(), reverse=True)


# --------------------------------------------------------------------------- runs


def wait_owned(rt: Runtime, units: int, timeout: float) -> float:
    """Wait until the mapping's workers own ``units`` units (``esm_owned_units``); the
    perf_counter time they first did."""
    deadline = time.monotonic() + timeout
    while (owned := rt.metrics().get("esm_owned_units", 0.0)) < units:
        rt.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(
                f"the runtime owns {owned:g} of {units} units after {timeout:.0f}s\n{rt.log_tail()}"
            )
        time.sleep(0.1)
    return time.perf_counter()


def balanced(held: list[int] | None, units: int, workers: int) -> bool:
    """Whether every unit has an owner and no worker holds more than one unit over another
    (workers holding none count as 0); True when the source has no lease table."""
    if held is None:
        return True
    counts = held + [0] * (workers - len(held))
    return sum(counts) == units and max(counts) - min(counts) <= 1


def wait_balanced(
    src: Source, tag: str, units: int, workers: int, timeout: float
) -> tuple[float | None, list[int] | None]:
    """Wait (up to ``timeout`` s) until the lease table shows the units :func:`balanced` over
    the workers: (the perf_counter time it first did or None, the last counts read)."""
    deadline = time.monotonic() + timeout
    while True:
        held = src.held(tag)
        if balanced(held, units, workers):
            return time.perf_counter(), held
        if time.monotonic() > deadline:
            return None, held
        time.sleep(0.5)


def scrape_cost(rt: Runtime, count: int = SCRAPES) -> tuple[float, int]:
    """(the supervisor's CPU ms per ``/metrics`` request, the response's bytes), over ``count``
    requests in a row: what a Prometheus scrape costs, which grows with the unit series."""
    before = cpu_seconds(rt.pid)
    size = 0
    for _ in range(count):
        status, text = rt.get("/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        size = len(text.encode())
    return round((cpu_seconds(rt.pid) - before) / count * 1000, 2), size


def rss_mib(rt: Runtime) -> tuple[float, list[float]]:
    """RSS of the supervisor and of each worker, MiB."""
    return (
        round(rss_bytes(rt.pid) / MIB, 1),
        [round(rss_bytes(p) / MIB, 1) for p in rt.worker_pids()],
    )


def runtime_cpu(cpu: dict[str, float]) -> float:
    """CPU seconds of the supervisor and the workers in a :func:`cpu_delta`."""
    return round(sum(v for k, v in cpu.items() if k == "supervisor" or k.startswith("worker")), 3)


@dataclass
class IdleRun:
    units: int
    own_seconds: float  # /readyz to esm_owned_units == units
    # /readyz to the lease table balanced over the workers (None: not within --balance-timeout;
    # Kafka: as own_seconds, its coordinator assigns every partition at once).
    balanced_seconds: float | None
    held_at_start: list[int] | None  # units per lease owner when the idle window opened
    held_at_end: list[int] | None  # ... and when it closed (Kinesis)
    owned_at_end: float  # esm_owned_units when it closed (a hand-off in progress: one less)
    settle_seconds: float
    idle_seconds: float
    rss_supervisor_mib: float
    rss_workers_mib: list[float]
    rss_total_mib: float
    runtime_cores: float  # supervisor + workers CPU seconds / idle seconds
    server_cores: float | None  # the broker's or emulator's, when started here
    # After the window (and the RSS): the supervisor's CPU per /metrics request, its size.
    metrics_scrape_cpu_ms: float
    metrics_bytes: int
    startup_seconds: float
    exit_code: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # over the idle window


def run_idle(src: Source, a: argparse.Namespace, workdir: Path, units: int) -> IdleRun:
    tag = f"{src.name}-idle-{units}"
    with src.fresh(units, tag) as target:
        rt = Runtime(
            workdir, tag, src.config(target, tag), src.aws_endpoint, a.workers, src.env(tag)
        )
        with rt.running() as launched:
            ready = rt.wait_ready(60)
            owned_at = wait_owned(rt, units, a.own_timeout)
            balanced_at, _ = wait_balanced(src, tag, units, a.workers, a.balance_timeout)
            time.sleep(a.settle_seconds)
            workers = rt.worker_pids()
            watched = rt.watched(src.server_pids)
            held_at_start = src.held(tag)
            cpu0 = cpu_snapshot(watched)
            time.sleep(a.idle_seconds)
            cpu = cpu_delta(cpu0, cpu_snapshot(watched))
            rt.check_alive()
            if rt.worker_pids() != workers:
                raise BenchError(f"workers changed while idle: {workers} -> {rt.worker_pids()}")
            owned = rt.metrics().get("esm_owned_units", 0.0)
            held_at_end = src.held(tag)
            sup, workers_mib = rss_mib(rt)
            scrape_ms, scrape_bytes = scrape_cost(rt)
            code = rt.stop_checked()
    server = [v for k, v in cpu.items() if k in src.server_pids]
    return IdleRun(
        units=units,
        own_seconds=round(owned_at - ready, 2),
        balanced_seconds=None if balanced_at is None else round(balanced_at - ready, 2),
        held_at_start=held_at_start,
        held_at_end=held_at_end,
        owned_at_end=owned,
        settle_seconds=a.settle_seconds,
        idle_seconds=a.idle_seconds,
        rss_supervisor_mib=sup,
        rss_workers_mib=workers_mib,
        rss_total_mib=round(sup + sum(workers_mib), 1),
        runtime_cores=round(runtime_cpu(cpu) / a.idle_seconds, 3),
        server_cores=round(sum(server) / a.idle_seconds, 3) if server else None,
        metrics_scrape_cpu_ms=scrape_ms,
        metrics_bytes=scrape_bytes,
        startup_seconds=round(ready - launched, 2),
        exit_code=code,
        cpu_seconds=cpu,
    )


@dataclass
class LoadRun:
    units: int
    records: int
    # The window: from the first /metrics poll that saw a record read to the first that saw
    # every record committed. Times below are seconds from the launch of the runtime.
    seconds: float
    records_per_s: float
    # To the first poll that saw every record invoked (none when it was the window's first).
    records_per_s_to_invoked: float | None
    steady_records_per_s: float | None  # between the polls first at 10 % and 90 % committed
    records_per_s_from_ready: float  # /readyz to all committed, as the other benchmarks time
    ready_seconds: float  # /readyz first answered 200
    first_record_seconds: float
    owned_seconds: float | None  # the first poll that saw every unit owned
    invoked_seconds: float
    committed_seconds: float
    read_at_ready: float  # records read at the first poll after /readyz
    # CPU over the window. The supervisor's includes rendering /metrics for this process's
    # polls (``metrics_polls`` of them; see metrics_scrape_cpu_ms of the idle run).
    worker_cpu_seconds: float
    worker_cpu_us_per_record: float
    supervisor_cpu_seconds: float
    runtime_cpu_seconds: float  # supervisor + workers
    runtime_cpu_us_per_record: float
    runtime_cpu_seconds_since_launch: float  # start-up, join or lease taking included
    metrics_polls: int  # in the window
    rss_supervisor_mib: float  # right after the last record was committed
    rss_workers_mib: list[float]
    rss_total_mib: float
    held_at_end: list[int] | None  # units per lease owner then (Kinesis)
    invocations: float
    committed_metric: float
    function_errors: float
    polling_errors: float
    fill_seconds: float
    exit_code: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # over the window


@dataclass
class Watch:
    """What :func:`watch_load` saw, perf_counter times."""

    ready: float | None = None
    first: float | None = None
    owned: float | None = None
    invoked: float | None = None
    done: float | None = None
    read_at_ready: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time, committed)


def watch_load(
    rt: Runtime, units: int, n: int, a: argparse.Namespace, server_pids: dict[str, int]
) -> Watch:
    """Poll the started runtime's /readyz and /metrics every ``--metrics-poll`` s from launch
    (workers read before the supervisor reports ready, so /readyz is not where reading
    starts) until n records are committed; CPU times are read at the first poll that saw a
    record read and at the end. Fails after ``--timeout`` s, or ``--stall-timeout`` s without
    a record read or committed."""
    w = Watch()
    started = last_progress = time.monotonic()
    last_count = -1.0
    cpu0: dict[str, float] = {}
    watched: dict[str, int] = {}
    next_poll = time.perf_counter()
    while True:
        rt.check_alive()
        at = time.perf_counter()
        with contextlib.suppress(OSError):
            if w.ready is None and rt.get("/readyz")[0] == 200:
                w.ready = at
        m: dict[str, float] = {}
        with contextlib.suppress(OSError, BenchError):
            m = rt.metrics()
        polled = m.get("lambda_polled_events_total", 0.0)
        committed = m.get("lambda_committed_events_total", 0.0)
        if m:
            w.samples.append((at, committed))
        if w.ready is not None and w.read_at_ready is None and m:
            w.read_at_ready = polled
        if w.first is None and polled > 0:
            w.first = at
            watched = rt.watched(server_pids)
            cpu0 = cpu_snapshot(watched)
        if w.owned is None and m.get("esm_owned_units", 0.0) >= units:
            w.owned = at
        if w.invoked is None and m.get("lambda_invoked_events_total", 0.0) >= n:
            w.invoked = at
        if committed >= n and w.ready is not None:
            w.done = at
            w.cpu = cpu_delta(cpu0, cpu_snapshot(watched))
            w.metrics = m
            return w
        now = time.monotonic()
        if polled + committed != last_count:
            last_count, last_progress = polled + committed, now
        if now - started > a.timeout or now - last_progress > a.stall_timeout:
            raise BenchError(
                f"the runtime committed {committed:g} of {n} records ({polled:g} read) after "
                f"{now - started:.0f}s\n{rt.log_tail()}"
            )
        next_poll += a.metrics_poll
        time.sleep(max(0.0, next_poll - time.perf_counter()))


def run_load(src: Source, a: argparse.Namespace, workdir: Path, units: int) -> LoadRun:
    n = src.records
    tag = f"{src.name}-load-{units}"
    with src.fresh(units, tag) as target:
        fill_s = src.fill(target, units, n)
        rt = Runtime(
            workdir, tag, src.config(target, tag), src.aws_endpoint, a.workers, src.env(tag)
        )
        with rt.running() as launched:
            w = watch_load(rt, units, n, a, src.server_pids)
            sup, workers_mib = rss_mib(rt)
            held = src.held(tag)
            # Cumulative CPU times: every process started at the launch.
            since_launch = sum(cpu_seconds(pid) for pid in (rt.pid, *rt.worker_pids()))
            code = rt.stop_checked()
    assert w.ready is not None and w.first is not None and w.done is not None
    invoked = w.invoked if w.invoked is not None else w.done
    seconds = w.done - w.first
    cpu_rt = runtime_cpu(w.cpu)
    cpu_workers = worker_cpu_seconds(w.cpu)
    steady = steady_rate(w.samples, n)
    m = w.metrics

    def since(t: float | None) -> float | None:
        return None if t is None else round(t - launched, 3)

    return LoadRun(
        units=units,
        records=n,
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1) if seconds > 0 else 0.0,
        records_per_s_to_invoked=round(n / (invoked - w.first), 1) if invoked > w.first else None,
        steady_records_per_s=round(steady, 1) if steady > 0 else None,
        records_per_s_from_ready=round(n / (w.done - w.ready), 1),
        ready_seconds=round(w.ready - launched, 3),
        first_record_seconds=round(w.first - launched, 3),
        owned_seconds=since(w.owned),
        invoked_seconds=round(invoked - launched, 3),
        committed_seconds=round(w.done - launched, 3),
        read_at_ready=w.read_at_ready or 0.0,
        worker_cpu_seconds=cpu_workers,
        worker_cpu_us_per_record=round(cpu_workers / n * 1e6, 2),
        supervisor_cpu_seconds=w.cpu.get("supervisor", 0.0),
        runtime_cpu_seconds=cpu_rt,
        runtime_cpu_us_per_record=round(cpu_rt / n * 1e6, 2),
        runtime_cpu_seconds_since_launch=round(since_launch, 2),
        metrics_polls=sum(1 for at, _ in w.samples if w.first <= at <= w.done),
        rss_supervisor_mib=sup,
        rss_workers_mib=workers_mib,
        rss_total_mib=round(sup + sum(workers_mib), 1),
        held_at_end=held,
        invocations=m.get("lambda_invocations_total", 0.0),
        committed_metric=m.get("lambda_committed_events_total", 0.0),
        function_errors=m.get("lambda_errors_total", 0.0),
        polling_errors=m.get("esm_polling_errors_total", 0.0),
        fill_seconds=round(fill_s, 2),
        exit_code=code,
        cpu_seconds=w.cpu,
    )


def describe_idle(src: Source, r: IdleRun) -> str:
    server = "" if r.server_cores is None else f", server {r.server_cores:.3f} cores"
    workers = " + ".join(f"{w:.1f}" for w in r.rss_workers_mib)
    balanced = "NOT in time" if r.balanced_seconds is None else f"{r.balanced_seconds:.2f} s"
    return (
        f"{src.name} idle {r.units:>4} {src.unit}s: RSS supervisor {r.rss_supervisor_mib:.1f} "
        f"MiB, workers {workers} MiB, total {r.rss_total_mib:.1f} MiB; runtime "
        f"{r.runtime_cores:.3f} cores{server} (all owned {r.own_seconds:.2f} s after /readyz, "
        f"balanced {balanced}; leases per worker {r.held_at_start} -> {r.held_at_end}, "
        f"owned at the end {r.owned_at_end:g}; /metrics {r.metrics_bytes} B, "
        f"{r.metrics_scrape_cpu_ms:.1f} ms supervisor CPU each; start {r.startup_seconds:.2f} s; "
        f"exit code {r.exit_code})\n"
        f"{'':8}CPU s over the {r.idle_seconds:g} idle s: "
        f"{cpu_text(r.cpu_seconds, r.idle_seconds)}"
    )


def describe_load(src: Source, r: LoadRun) -> str:
    workers = " + ".join(f"{w:.1f}" for w in r.rss_workers_mib)
    owned = "never seen" if r.owned_seconds is None else f"{r.owned_seconds:.2f}"
    steady = "-" if r.steady_records_per_s is None else f"{r.steady_records_per_s:.0f}"
    invoked = "-" if r.records_per_s_to_invoked is None else f"{r.records_per_s_to_invoked:.0f}"
    return (
        f"{src.name} load {r.units:>4} {src.unit}s: {r.records} records in {r.seconds:.2f} s "
        f"from the first read = {r.records_per_s:.0f} rec/s (to all invoked "
        f"{invoked}; steady {steady}; from /readyz "
        f"{r.records_per_s_from_ready:.0f}); worker CPU {r.worker_cpu_seconds:.2f} s = "
        f"{r.worker_cpu_us_per_record:.1f} µs/record, supervisor {r.supervisor_cpu_seconds:.2f} s "
        f"({r.metrics_polls} /metrics polls), runtime since launch "
        f"{r.runtime_cpu_seconds_since_launch:.2f} s; RSS supervisor {r.rss_supervisor_mib:.1f} "
        f"MiB, workers {workers} MiB; leases per worker at the end {r.held_at_end}\n"
        f"{'':8}seconds from launch: ready {r.ready_seconds:.2f}, first read "
        f"{r.first_record_seconds:.2f}, all owned {owned}, all invoked {r.invoked_seconds:.2f}, "
        f"all committed {r.committed_seconds:.2f}; {r.read_at_ready:g} read at /readyz; "
        f"{r.invocations:g} invocations, errors {r.function_errors:g}/{r.polling_errors:g}; "
        f"fill {r.fill_seconds:.1f} s; exit code {r.exit_code}\n"
        f"{'':8}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


def run_source(src: Source, a: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    runs = []
    for units in a.units:
        idle = run_idle(src, a, workdir, units)
        print(describe_idle(src, idle), flush=True)
        load = run_load(src, a, workdir, units)
        print(describe_load(src, load), flush=True)
        runs.append({"units": units, "idle": asdict(idle), "load": asdict(load)})
    return {"unit": src.unit, "records": src.records, "runs": runs}


# --------------------------------------------------------------------------- output


def print_summary(s: dict[str, Any]) -> None:
    print()
    print(
        f"Scale with units: {s['workers']} workers, no-op handler, BatchSize {s['batch_size']}, "
        f"records of {s['body_bytes']} B; idle: {s['settle_seconds']:g} s settle then "
        f"{s['idle_seconds']:g} s measured"
    )
    for name, src in s["sources"].items():
        print(f"  {name}, {src['records']} records under load:")
        print(
            f"    {src['unit'] + 's':>10} {'idle RSS sup/workers MiB':>26} "
            f"{'idle cores rt/srv':>18} {'own s':>6} {'bal. s':>7} | {'rec/s':>8} {'invoked':>8} "
            f"{'steady':>8} {'wrk µs/rec':>10} {'RSS total MiB':>13}"
        )
        for run in src["runs"]:
            i, ld = run["idle"], run["load"]
            rss = f"{i['rss_supervisor_mib']:.1f}/" + "+".join(
                f"{w:.1f}" for w in i["rss_workers_mib"]
            )
            srv = "-" if i["server_cores"] is None else f"{i['server_cores']:.3f}"
            st, inv = ld["steady_records_per_s"], ld["records_per_s_to_invoked"]
            steady = "-" if st is None else f"{st:.0f}"
            invoked = "-" if inv is None else f"{inv:.0f}"
            bal = "never" if i["balanced_seconds"] is None else f"{i['balanced_seconds']:.1f}"
            print(
                f"    {run['units']:>10} {rss:>26} {i['runtime_cores']:>8.3f}/{srv:<9} "
                f"{i['own_seconds']:>6.2f} {bal:>7} | {ld['records_per_s']:>8.0f} "
                f"{invoked:>8} "
                f"{steady:>8} {ld['worker_cpu_us_per_record']:>10.1f} "
                f"{ld['rss_total_mib']:>13.1f}"
            )


# --------------------------------------------------------------------------- driver


def _int_list(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants integers like 1,64,512, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"wants positive integers, got {text!r}")
    return out


def _sources(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    if not out or any(x not in SOURCES for x in out):
        raise argparse.ArgumentTypeError(f"wants some of {','.join(SOURCES)}, got {text!r}")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_scale",
        description="Idle and loaded cost of the runtime by Kafka partitions and Kinesis shards.",
    )
    p.add_argument("--sources", type=_sources, default=list(SOURCES), help="kafka,kinesis")
    p.add_argument(
        "--units", type=_int_list, help="partitions / shards, one run each (default 1,64,512)"
    )
    p.add_argument("--kafka-records", type=int, help="records under load (default 100000)")
    p.add_argument("--kinesis-records", type=int, help="records under load (default 20000)")
    p.add_argument("--settle-seconds", type=float, help="idle: wait after all owned (5)")
    p.add_argument("--idle-seconds", type=float, help="idle: the measured window (10)")
    p.add_argument(
        "--kafka-session-timeout-ms",
        type=int,
        help="ESM_KAFKA_SESSION_TIMEOUT_MS: Tansu holds a join for half of it (6000)",
    )
    p.add_argument("--quick", action="store_true", help="smoke-test sizes (see the module doc)")
    p.add_argument("--workers", type=int, default=2, help="runtime worker processes")
    p.add_argument("--batch-size", type=int, default=100, help="the mapping's BatchSize")
    p.add_argument(
        "--own-timeout", type=float, default=180.0, help="seconds to wait for all units owned"
    )
    p.add_argument(
        "--balance-timeout",
        type=float,
        help="idle: seconds to wait for the shard leases to balance over the workers before "
        "measuring anyway (900)",
    )
    p.add_argument(
        "--metrics-poll",
        type=float,
        default=0.2,
        help="load: seconds between /metrics polls (each costs the supervisor CPU that grows "
        "with the units)",
    )
    p.add_argument("--fill-threads", type=int, default=4, help="Kinesis PutRecords threads")
    p.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    p.add_argument("--endpoint", help="use this emulator instead of starting a ministack")
    add_timeout_options(
        p,
        timeout_help="seconds a load run may take from /readyz",
        stall_default=180.0,
        stall_help="seconds without a committed record before a load run fails",
    )
    add_runtime_env_and_keep(p, keep_help="keep the work directory (logs, configs)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.kafka_records, args.kinesis_records, args.workers, args.fill_threads) < 1:
        parser.error("--kafka-records, --kinesis-records, --workers, --fill-threads must be >= 1")
    if min(args.settle_seconds, args.idle_seconds) < 0 or args.idle_seconds == 0:
        parser.error("--settle-seconds must be >= 0 and --idle-seconds > 0")
    if not 1 <= args.batch_size <= 10000:
        parser.error("--batch-size must be within 1..10000")
    if args.metrics_poll <= 0:
        parser.error("--metrics-poll must be > 0")
    if not 1000 <= args.kafka_session_timeout_ms <= 300_000:
        parser.error("--kafka-session-timeout-ms must be within 1000..300000")
    # The servers are started per source in _run (a Tansu, then a ministack), not here.
    return run_main(
        "bench_scale",
        parser,
        args,
        "esm-bench-scale-",
        lambda _workdir: contextlib.nullcontext(("", {})),
        _run,
    )


def _run(setup: Setup) -> bool:
    a, workdir = setup.args, setup.workdir
    print(
        f"bench_scale: sources={','.join(a.sources)} units={','.join(map(str, a.units))} "
        f"kafka_records={a.kafka_records} kinesis_records={a.kinesis_records} "
        f"workers={a.workers} batch_size={a.batch_size} settle={a.settle_seconds:g} "
        f"idle={a.idle_seconds:g} workdir={workdir}",
        flush=True,
    )
    sources: dict[str, Any] = {}
    servers: dict[str, str] = {}
    makers: dict[str, Callable[[str, dict[str, int]], Source]] = {
        "kafka": lambda address, pids: KafkaSource(
            address,
            pids,
            a.kafka_records,
            a.batch_size,
            a.kafka_session_timeout_ms,
            setup.runtime_env,
        ),
        "kinesis": lambda address, pids: KinesisSource(
            address,
            pids,
            a.kinesis_records,
            a.batch_size,
            setup.runtime_env,
            workdir,
            a.fill_threads,
        ),
    }
    for name in a.sources:
        served = broker(a.bootstrap, workdir) if name == "kafka" else emulator(a.endpoint, workdir)
        with served as (address, pids):
            servers[name] = address
            sources[name] = run_source(makers[name](address, pids), a, workdir)
    summary = {
        "ok": True,
        "workers": a.workers,
        "batch_size": a.batch_size,
        "body_bytes": BODY_BYTES,
        "units": a.units,
        "settle_seconds": a.settle_seconds,
        "idle_seconds": a.idle_seconds,
        "metrics_poll": a.metrics_poll,
        "quick": a.quick,
        "kafka_session_timeout_ms": a.kafka_session_timeout_ms,
        "servers": servers,
        "runtime_env": setup.runtime_env,
        "sources": sources,
    }
    print_summary(summary)
    print(result_line(summary), flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
