"""Kinesis: the runtime's throughput against a raw aiobotocore loop, ParallelizationFactor 1 vs
10, and idle memory with many shards.

    .venv/bin/python -m tests.perf.bench_kinesis [--records 50000] [--shards 4]
        [--batch-size 100] [--workers 1] [--repeat 1] [--pf-records 2000]
        [--memory-shards 64] [--skip-pf] [--skip-memory] [--endpoint URL]

Every phase runs against one emulator (a ministack started here on a free port, or
``--endpoint``), each run on a fresh stream filled beforehand (PutRecords of 500 from
``--fill-threads`` threads; not timed) with records whose data is a JSON object of exactly 100
bytes (``{"n": i, "pad": "xx..."}``). Each runtime is ``python -m runtime run`` with its own
SQLite lease store (ESM_DATA_DIR in the work directory), ESM_LOG_LEVEL=WARNING and the mapping
``StartingPosition: TRIM_HORIZON``; SIGTERM must end it with 0 after each run.

1. Throughput. A fresh stream of ``--shards`` (4) shards holding N records (``--records``),
   partition key ``k{i}`` (so spread over the shards by hash):

   A. runtime: ``--workers`` (1) worker processes, one no-op function
      (:func:`tests.perf.handlers.noop`), one mapping (BatchSize ``--batch-size``, 100;
      ParallelizationFactor 1), with ESM_STREAM_POLL_INTERVAL_SECONDS ``--poll-interval`` (0.1:
      an idle shard is read again after that, not after the 1 s default) and
      ESM_STREAM_CHECKPOINT_INTERVAL_SECONDS ``--checkpoint-interval`` (0.1). Timed from
      ``/readyz`` answering 200 until ``lambda_committed_events_total`` (records the
      checkpoints moved past) reaches N, ``/metrics`` polled every ``--metrics-poll`` (0.05)
      s: the window holds the lease acquisition, the first GetShardIterator and up to one
      checkpoint interval at the end. Also reported: the rate from the first poll that saw a
      record read (``lambda_polled_events_total`` > 0). With ``--workers`` > 1 the figures
      mean less: /readyz waits for every worker while the first may already be reading, and
      the first worker to scan the lease table may take every shard (balance follows within
      seconds, through hand-offs).
   B. raw: in this process, on uvloop, one aiobotocore client (warmed up with
      DescribeStreamSummary outside the window) and one coroutine per shard, each
      GetShardIterator(TRIM_HORIZON) then GetRecords(Limit=10000) in a loop (sleeping
      ``--poll-interval`` after an empty page) until the coroutines together read N records;
      timed from the first call until the N-th record is read (and, reported too, from the
      arrival of the first record). No records are decoded or checkpointed: what the emulator
      and botocore allow.

   ``ratio`` = runtime / raw records/s (goal >= 0.8); ``ratio_from_first_record`` the same
   from each side's first record read (so without the lease acquisition and first
   GetShardIterator of the runtime, nor the first calls of the raw loop). ``--repeat K``
   alternates A and B K times (``--order``), each on its own fresh stream, and reports
   medians.

2. ParallelizationFactor. Two fresh streams of one shard, each holding ``--pf-records`` (2000)
   records over ``--pf-keys`` (100) partition keys, round-robin (record i has key
   ``i % keys``). The keys are chosen so that the runtime's lane hash (CRC32 of the partition
   key modulo the factor, as :meth:`runtime.sources.shard_apis.KinesisApi.lane_slot`) gives
   every one of the 10 lanes the same number of keys, hence of records: the ideal speed-up is
   exactly 10, not bounded by an uneven hash. The runtime (1 worker) runs
   :func:`tests.perf.handlers.sleep_20ms` (20 ms per batch, recording each invocation's start,
   end and records) with BatchSize ``--pf-batch-size`` (10), once with ParallelizationFactor 1
   and once with 10, same poll and checkpoint settings as 1A. Each is timed from ``/readyz``
   until ``lambda_committed_events_total`` reaches the record count (``seconds``, the figure
   asked for), and from the first poll that saw a record read
   (``seconds_from_first_record``); the recorded invocations give the handler span (first
   start to last end), the average and the most overlapping invocations, and whether each
   partition key's records were handled once each, in order. The speed-up is PF 1 / PF 10 for
   each of the three durations (goal >= 8 on ``seconds``).

3. Idle memory. A fresh stream of ``--memory-shards`` (64) shards, no records; the runtime with
   one worker (ESM_WORKERS=1), the no-op function, runtime defaults otherwise (1 s idle poll).
   After ``esm_owned_units`` reaches the shard count and ``--idle-seconds`` (3) more, the RSS of
   the supervisor and of the worker is read from /proc (and the CPU they used over the idle
   seconds). The same with ``--memory-compare-shards`` (1; 0 skips it) shards for comparison.

CPU seconds of each process (supervisor, workers, this process, the emulator when started
here, ``other`` for the rest of the machine) are read from /proc over each timed window; runs
in which other processes used the cores are flagged NOISY.

The exit code is 0 when every phase completed (whatever the figures: this is a measurement) and
1 when one failed (records not checkpointed in time, the runtime dying or not exiting 0 on
SIGTERM). The last line is ``RESULT {json}`` with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from tests.perf.bench_sqs_fifo import Interval, busy_seconds, max_overlap, read_intervals
from tests.perf.common import (
    BODY_BYTES,
    MIB,
    BenchError,
    Runtime,
    cpu_delta,
    cpu_snapshot,
    cpu_text,
    make_body,
    rss_bytes,
)
from tests.perf.driver import (
    Setup,
    add_runtime_env_and_keep,
    add_timeout_options,
    emulator,
    result_line,
    run_main,
)
from tests.support.aws import CREDENTIALS, REGION, client
from tests.support.streams import create_stream, stream_name

Phase = Literal["runtime", "raw"]

GOAL = 0.8  # runtime / raw records/s
PF_GOAL = 8.0  # PF 1 seconds / PF 10 seconds
PF_FACTOR = 10
NOOP_HANDLER = "tests.perf.handlers.noop"
SLEEP_HANDLER = "tests.perf.handlers.sleep_20ms"
HANDLER_SLEEP_MS = 20
PUT_BATCH = 500  # PutRecords' most records per call
READ_LIMIT = 10_000  # GetRecords' most records per call
OWN_TIMEOUT = 60.0  # seconds the idle runtime may take to own every shard


# --------------------------------------------------------------------------- context


@dataclass
class Context:
    """What the phases use."""

    args: argparse.Namespace
    endpoint: str
    kinesis: Any  # a synchronous client on the endpoint
    workdir: Path
    runtime_env: dict[str, str]  # --runtime-env
    extra_pids: dict[str, int]  # processes whose CPU time is reported too (the emulator)

    @classmethod
    def of(cls, s: Setup) -> Context:
        kinesis = client("kinesis", s.server)
        return cls(s.args, s.server, kinesis, s.workdir, s.runtime_env, s.extra_pids)

    def env(self, tag: str, fast: bool = True) -> dict[str, str]:
        """The runtime's extra environment: its own lease store, the quick poll and checkpoint
        settings unless ``fast`` is False, then --runtime-env."""
        env = {"ESM_DATA_DIR": str(self.workdir / f"data-{tag}")}
        if fast:
            env["ESM_STREAM_POLL_INTERVAL_SECONDS"] = str(self.args.poll_interval)
            env["ESM_STREAM_CHECKPOINT_INTERVAL_SECONDS"] = str(self.args.checkpoint_interval)
        env.update(self.runtime_env)
        return env


# --------------------------------------------------------------------------- streams


@contextlib.contextmanager
def temporary_stream(kinesis: Any, shards: int, prefix: str) -> Iterator[str]:
    """A fresh ACTIVE stream (its ARN), deleted on the way out."""
    try:
        arn = create_stream(kinesis, shards, prefix)
    except TimeoutError as exc:
        raise BenchError(str(exc)) from None
    try:
        yield arn
    finally:
        with contextlib.suppress(Exception):
            kinesis.delete_stream(StreamName=stream_name(arn), EnforceConsumerDeletion=True)


def put_entries(kinesis: Any, name: str, entries: list[dict[str, Any]]) -> None:
    """One PutRecords, putting again the records that failed."""
    for attempt in range(8):
        resp = kinesis.put_records(StreamName=name, Records=entries)
        if not resp.get("FailedRecordCount"):
            return
        entries = [e for e, r in zip(entries, resp["Records"], strict=True) if r.get("ErrorCode")]
        time.sleep(0.1 * (attempt + 1))
    raise BenchError(f"PutRecords kept failing for {len(entries)} records")


def fill_stream(
    kinesis: Any, arn: str, n: int, key: Callable[[int], str], threads: int, ordered: bool = False
) -> float:
    """Put n records (data ``make_body(i)``, partition key ``key(i)``) with PutRecords of 500
    from several threads, or from one in order when ``ordered``; return the seconds."""
    name = stream_name(arn)
    started = time.perf_counter()

    def put(first: int) -> None:
        put_entries(
            kinesis,
            name,
            [
                {"PartitionKey": key(i), "Data": make_body(i).encode()}
                for i in range(first, min(first + PUT_BATCH, n))
            ],
        )

    chunks = range(0, n, PUT_BATCH)
    if ordered:
        for first in chunks:
            put(first)
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fill") as pool:
            list(pool.map(put, chunks))
    return time.perf_counter() - started


def shard_ids(kinesis: Any, arn: str) -> list[str]:
    out: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name(arn)}
    while True:
        page = kinesis.list_shards(**kwargs)
        out.extend(s["ShardId"] for s in page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return out
        kwargs = {"NextToken": token}


@contextlib.contextmanager
def filled_stream(
    ctx: Context,
    shards: int,
    prefix: str,
    n: int,
    key: Callable[[int], str],
    ordered: bool = False,
) -> Iterator[tuple[str, float]]:
    """(ARN, fill seconds) of a fresh stream holding n records, deleted on the way out."""
    with temporary_stream(ctx.kinesis, shards, prefix) as arn:
        yield arn, fill_stream(ctx.kinesis, arn, n, key, ctx.args.fill_threads, ordered)


def throughput_key(i: int) -> str:
    return f"k{i}"


def lane_slot(key: str, factor: int) -> int:
    """The runtime's ParallelizationFactor lane of a partition key
    (:meth:`runtime.sources.shard_apis.KinesisApi.lane_slot`)."""
    return zlib.crc32(key.encode()) % factor


def balanced_keys(count: int, factor: int) -> list[str]:
    """``count`` partition keys ``pk-j``, the first ``count / factor`` of each lane slot, so
    that every lane of ``factor`` gets as many (count must be a multiple of factor)."""
    per_slot = count // factor
    by_slot: dict[int, list[str]] = defaultdict(list)
    j = 0
    while any(len(by_slot[s]) < per_slot for s in range(factor)):
        key = f"pk-{j}"
        slot = lane_slot(key, factor)
        if len(by_slot[slot]) < per_slot:
            by_slot[slot].append(key)
        j += 1
    # Interleaved over the slots, so consecutive records go to different lanes.
    return [by_slot[s][i] for i in range(per_slot) for s in range(factor)]


# --------------------------------------------------------------------------- the runtime


def stream_config(
    arn: str,
    handler: str,
    batch_size: int,
    factor: int = 1,
    variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One function ``bench`` running ``handler``, one Kinesis mapping from TRIM_HORIZON."""
    function: dict[str, Any] = {"Handler": handler, "Timeout": 30}
    if variables:
        function["Environment"] = {"Variables": variables}
    return {
        "functions": {"bench": function},
        "eventSourceMappings": [
            {
                "FunctionName": "bench",
                "EventSourceArn": arn,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": batch_size,
                "ParallelizationFactor": factor,
            }
        ],
    }


@dataclass
class Committed:
    """A runtime's window from /readyz until every record was checkpointed."""

    ready: float  # perf_counter time /readyz first answered 200
    done: float  # perf_counter time of the poll that saw N checkpointed
    first: float  # perf_counter time of the first poll that saw a record read
    polled_at_ready: float  # records read at the first poll (before or at /readyz)
    cpu: dict[str, float]  # CPU seconds of the watched processes over the window
    metrics: dict[str, float]  # the runtime's, at the end of the window


def wait_committed(
    rt: Runtime,
    n: int,
    timeout: float,
    stall_timeout: float,
    extra_pids: dict[str, int],
    poll: float,
    on_sample: Callable[[float, dict[str, float]], None] | None = None,
) -> Committed:
    """Wait until the started runtime is ready, then until it checkpointed n records, polling
    /metrics every ``poll`` seconds (``on_sample`` sees each poll's perf_counter time and
    metrics). Fails after ``timeout`` from /readyz, or ``stall_timeout`` without a record
    checkpointed."""
    ready = rt.wait_ready(60)
    watched = rt.watched(extra_pids)
    cpu0 = cpu_snapshot(watched)
    first: float | None = None
    polled_at_ready: float | None = None
    last_progress, last_count = time.monotonic(), -1.0
    next_poll = time.perf_counter()
    while True:
        rt.check_alive()
        polled_at = time.perf_counter()
        m = rt.metrics()
        if on_sample is not None:
            on_sample(polled_at, m)
        committed = m.get("lambda_committed_events_total", 0.0)
        polled = m.get("lambda_polled_events_total", 0.0)
        if polled_at_ready is None:
            polled_at_ready = polled
        if first is None and polled > 0:
            first = polled_at
        if committed >= n:
            break
        now = time.monotonic()
        if committed != last_count:
            last_count, last_progress = committed, now
        if polled_at - ready > timeout or now - last_progress > stall_timeout:
            raise BenchError(
                f"runtime checkpointed {committed:g} of {n} records ({polled:g} read) after "
                f"{polled_at - ready:.0f}s\n{rt.log_tail()}"
            )
        next_poll += poll
        time.sleep(max(0.0, next_poll - time.perf_counter()))
    cpu = cpu_delta(cpu0, cpu_snapshot(watched))
    assert first is not None and polled_at_ready is not None
    return Committed(ready, polled_at, first, polled_at_ready, cpu, rt.metrics())


# --------------------------------------------------------------------------- 1: throughput


@dataclass
class ThroughputRun:
    phase: Phase
    round: int
    seconds: float
    records_per_s: float
    fill_seconds: float
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # From the first record read (runtime: the first /metrics poll that saw one) to the end.
    seconds_from_first_record: float | None = None
    records_per_s_from_first_record: float | None = None
    first_record_seconds: float | None = None  # start of the window to the first record
    # Runtime only.
    read_at_ready: float | None = None
    startup_seconds: float | None = None
    invocations: float | None = None
    committed_metric: float | None = None
    polled_metric: float | None = None
    function_errors: float | None = None
    polling_errors: float | None = None
    checkpoint_failures: float | None = None
    exit_code: int | None = None
    # Raw only.
    get_records_calls: int | None = None
    empty_pages: int | None = None
    records_read: int | None = None


def run_runtime(ctx: Context, round_no: int) -> ThroughputRun:
    a = ctx.args
    with filled_stream(ctx, a.shards, "bench-rt", a.records, throughput_key) as (arn, fill_s):
        return runtime_throughput(ctx, round_no, arn, a.records, fill_s)


def runtime_throughput(
    ctx: Context, round_no: int, arn: str, n: int, fill_s: float
) -> ThroughputRun:
    """Phase 1A on the stream ``arn`` (Kinesis or DynamoDB) holding n records."""
    a = ctx.args
    config = stream_config(arn, NOOP_HANDLER, a.batch_size)
    tag = f"rt-{round_no}"
    rt = Runtime(ctx.workdir, tag, config, ctx.endpoint, a.workers, ctx.env(tag))
    with rt.running() as launched:
        c = wait_committed(rt, n, a.timeout, a.stall_timeout, ctx.extra_pids, poll=a.metrics_poll)
        code = rt.stop_checked()
    seconds = c.done - c.ready
    from_first = c.done - c.first
    m = c.metrics
    return ThroughputRun(
        phase="runtime",
        round=round_no,
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1),
        fill_seconds=round(fill_s, 2),
        cpu_seconds=c.cpu,
        seconds_from_first_record=round(from_first, 3),
        records_per_s_from_first_record=round(n / from_first, 1) if from_first > 0 else 0.0,
        first_record_seconds=round(c.first - c.ready, 3),
        read_at_ready=c.polled_at_ready,
        startup_seconds=round(c.ready - launched, 2),
        invocations=m.get("lambda_invocations_total", 0.0),
        committed_metric=m.get("lambda_committed_events_total", 0.0),
        polled_metric=m.get("lambda_polled_events_total", 0.0),
        function_errors=m.get("lambda_errors_total", 0.0),
        polling_errors=m.get("esm_polling_errors_total", 0.0),
        checkpoint_failures=m.get("esm_checkpoint_failures_total", 0.0),
        exit_code=code,
    )


@dataclass
class RawStats:
    read: int = 0
    calls: int = 0
    empty: int = 0
    first_at: float = 0.0  # perf_counter time the first record arrived
    done_at: float = 0.0


def raw_client_config(shards: int) -> AioConfig:
    """The raw loops' aiobotocore settings: a connection per reading coroutine, and more."""
    return AioConfig(
        max_pool_connections=max(2 * shards, 10),
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
    )


async def read_shards(
    streams: Any,
    shards: list[str],
    open_iterator: Callable[[str], Awaitable[str]],
    n: int,
    read_limit: int,
    idle_sleep: float,
    limit_seconds: float,
    extra_pids: dict[str, int],
    list_shards: Callable[[], Awaitable[list[str]]] | None = None,
) -> tuple[float, float, dict[str, float], RawStats]:
    """The raw loop on an aiobotocore Kinesis or DynamoDB Streams client ``streams``: one
    coroutine per shard, each ``open_iterator(shard)`` then GetRecords(Limit=read_limit) in a
    loop (sleeping ``idle_sleep`` after an empty page) until together they read n records.

    With ``list_shards``, the shards are listed by it inside the timed window (``shards`` is
    then ignored). Returns (seconds from the first call to the N-th record, from the first
    record read to the N-th, CPU seconds by process, stats)."""
    stats = RawStats()
    done = asyncio.Event()

    async def read(shard: str) -> None:
        iterator: str | None = await open_iterator(shard)
        while iterator is not None and not done.is_set():
            page = await streams.get_records(ShardIterator=iterator, Limit=read_limit)
            stats.calls += 1
            records = page.get("Records") or []
            if records and not stats.read:
                stats.first_at = time.perf_counter()
            stats.read += len(records)
            if stats.read >= n and not done.is_set():
                stats.done_at = time.perf_counter()
                done.set()
            iterator = page.get("NextShardIterator")
            if not records:
                stats.empty += 1
                await asyncio.sleep(idle_sleep)

    watched = {"bench": os.getpid(), **extra_pids}
    cpu0 = cpu_snapshot(watched)
    started = time.perf_counter()
    if list_shards is not None:
        shards = await list_shards()
    tasks = [asyncio.create_task(read(s)) for s in shards]
    finished: asyncio.Task[Any] = asyncio.create_task(done.wait())
    try:
        deadline = time.monotonic() + limit_seconds
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"raw loop read {stats.read} of {n} records in time")
            await asyncio.wait(
                {finished, *tasks}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if done.is_set():
                break
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise BenchError(f"raw loop failed: {t.exception()!r}")
            if all(t.done() for t in tasks):
                raise BenchError(f"raw loop: every shard ended after {stats.read} records")
        cpu = cpu_delta(cpu0, cpu_snapshot(watched))
    finally:
        for t in (*tasks, finished):
            t.cancel()
        await asyncio.gather(*tasks, finished, return_exceptions=True)
    return stats.done_at - started, stats.done_at - stats.first_at, cpu, stats


async def _raw(
    endpoint: str,
    name: str,
    shards: list[str],
    n: int,
    idle_sleep: float,
    limit_seconds: float,
    extra_pids: dict[str, int],
) -> tuple[float, float, dict[str, float], RawStats]:
    """Read n records from the Kinesis stream ``name`` (:func:`read_shards`)."""
    async with get_session().create_client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        config=raw_client_config(len(shards)),
        **CREDENTIALS,
    ) as kinesis:
        # Warm up (client, connection) outside the window, as the runtime does before ready.
        await kinesis.describe_stream_summary(StreamName=name)

        async def open_iterator(shard: str) -> str:
            got = await kinesis.get_shard_iterator(
                StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )
            return str(got["ShardIterator"])

        return await read_shards(
            kinesis, shards, open_iterator, n, READ_LIMIT, idle_sleep, limit_seconds, extra_pids
        )


def run_raw(ctx: Context, round_no: int) -> ThroughputRun:
    a = ctx.args
    n = a.records
    with filled_stream(ctx, a.shards, "bench-raw", n, throughput_key) as (arn, fill_s):
        shards = shard_ids(ctx.kinesis, arn)
        seconds, from_first, cpu, stats = uvloop.run(
            _raw(
                ctx.endpoint,
                stream_name(arn),
                shards,
                n,
                a.poll_interval,
                a.timeout,
                ctx.extra_pids,
            )
        )
    return raw_throughput(round_no, n, fill_s, seconds, from_first, cpu, stats)


def raw_throughput(
    round_no: int,
    n: int,
    fill_s: float,
    seconds: float,
    from_first: float,
    cpu: dict[str, float],
    stats: RawStats,
) -> ThroughputRun:
    """Phase 1B's figures from what :func:`read_shards` returned."""
    return ThroughputRun(
        phase="raw",
        round=round_no,
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1),
        fill_seconds=round(fill_s, 2),
        cpu_seconds=cpu,
        seconds_from_first_record=round(from_first, 3),
        records_per_s_from_first_record=round(n / from_first, 1) if from_first > 0 else 0.0,
        first_record_seconds=round(seconds - from_first, 3),
        get_records_calls=stats.calls,
        empty_pages=stats.empty,
        records_read=stats.read,
    )


def describe_throughput(r: ThroughputRun) -> str:
    head = f"{r.phase:<8} {r.seconds:8.2f} s {r.records_per_s:10.1f} rec/s"
    if r.phase == "runtime":
        per_call = (r.committed_metric or 0.0) / r.invocations if r.invocations else 0.0
        return (
            f"{head}  (first record seen read at {r.first_record_seconds:.2f} s, then "
            f"{r.records_per_s_from_first_record:.1f} rec/s; {r.read_at_ready:g} read at ready; "
            f"start {r.startup_seconds:.2f} s; "
            f"{r.invocations:g} invocations = {per_call:.1f} rec/batch; errors "
            f"{r.function_errors:g}/{r.polling_errors:g}/{r.checkpoint_failures:g}; "
            f"exit code {r.exit_code})\n"
            f"{'':14}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
        )
    return (
        f"{head}  (first record read at {r.first_record_seconds:.2f} s, then "
        f"{r.records_per_s_from_first_record:.1f} rec/s; {r.get_records_calls} GetRecords, "
        f"{r.empty_pages} empty, {r.records_read} records read)\n"
        f"{'':14}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


# --------------------------------------------------------------------------- 2: PF


@dataclass
class PfRun:
    factor: int
    records: int
    seconds: float  # /readyz to every record checkpointed
    seconds_from_first_record: float  # first poll that saw a record read to the same
    handler_span_seconds: float  # first handler start to last handler end
    first_record_seconds: float  # /readyz to the first poll that saw a record read
    invocations: int  # recorded by the handler
    records_handled: int
    concurrency_avg: float  # handler time / span
    concurrency_max: int
    order_problems: list[str]
    committed_metric: float
    function_errors: float
    fill_seconds: float
    startup_seconds: float
    exit_code: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def pf_order_problems(intervals: list[Interval], keys: list[str], n: int) -> list[str]:
    """Records not handled exactly once, or out of order within a partition key (record i has
    key ``keys[i % len(keys)]``); the first ten problems."""
    problems: list[str] = []
    seen: dict[str, list[int]] = defaultdict(list)
    for iv in intervals:  # sorted by start: one key's batches never overlap
        for key, i in iv.records:
            seen[key].append(i)
    count = len(keys)
    for j, key in enumerate(keys):
        want = list(range(j, n, count))
        got = seen.pop(key, [])
        if got != want:
            problems.append(f"key {key}: {len(got)} records, wanted {len(want)} in order")
    problems.extend(f"unexpected key {k}" for k in seen)
    return problems[:10]


def run_pf(ctx: Context, factor: int, keys: list[str]) -> PfRun:
    a = ctx.args
    n = a.pf_records
    count = len(keys)

    def key(i: int) -> str:
        return keys[i % count]

    with filled_stream(ctx, 1, f"bench-pf{factor}", n, key, ordered=True) as (arn, fill_s):
        record_file = ctx.workdir / f"pf-{factor}.jsonl"
        record_file.unlink(missing_ok=True)
        config = stream_config(
            arn, SLEEP_HANDLER, a.pf_batch_size, factor, {"RECORD_FILE": str(record_file)}
        )
        tag = f"pf-{factor}"
        rt = Runtime(ctx.workdir, tag, config, ctx.endpoint, 1, ctx.env(tag))
        with rt.running() as launched:
            c = wait_committed(
                rt, n, a.timeout, a.stall_timeout, ctx.extra_pids, poll=a.metrics_poll
            )
            code = rt.stop_checked()
    intervals = read_intervals(record_file)
    if not intervals:
        raise BenchError(f"PF {factor}: the handler recorded no invocation")
    lo = min(i.start for i in intervals)
    hi = max(i.end for i in intervals)
    span = hi - lo
    return PfRun(
        factor=factor,
        records=n,
        seconds=round(c.done - c.ready, 3),
        seconds_from_first_record=round(c.done - c.first, 3),
        handler_span_seconds=round(span, 3),
        first_record_seconds=round(c.first - c.ready, 3),
        invocations=len(intervals),
        records_handled=sum(len(i.records) for i in intervals),
        concurrency_avg=round(busy_seconds(intervals, lo, hi) / span, 2) if span > 0 else 0.0,
        concurrency_max=max_overlap(intervals),
        order_problems=pf_order_problems(intervals, keys, n),
        committed_metric=c.metrics.get("lambda_committed_events_total", 0.0),
        function_errors=c.metrics.get("lambda_errors_total", 0.0),
        fill_seconds=round(fill_s, 2),
        startup_seconds=round(c.ready - launched, 2),
        exit_code=code,
        cpu_seconds=c.cpu,
    )


def describe_pf(r: PfRun) -> str:
    per_call = r.records_handled / r.invocations if r.invocations else 0.0
    order = "order per key kept" if not r.order_problems else f"ORDER: {r.order_problems[:3]}"
    return (
        f"PF {r.factor:<3} {r.seconds:8.2f} s from /readyz, {r.seconds_from_first_record:.2f} s "
        f"from the first record read (at {r.first_record_seconds:.2f} s), handler span "
        f"{r.handler_span_seconds:.2f} s; {r.invocations} invocations = {per_call:.1f} "
        f"rec/batch; concurrency avg {r.concurrency_avg:.2f} max {r.concurrency_max}; "
        f"{order}; errors {r.function_errors:g}; exit code {r.exit_code}\n"
        f"{'':8}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


def run_pf_phase(ctx: Context) -> dict[str, Any]:
    a = ctx.args
    keys = balanced_keys(a.pf_keys, PF_FACTOR)
    runs = []
    for factor in (1, PF_FACTOR):
        r = run_pf(ctx, factor, keys)
        print(describe_pf(r), flush=True)
        runs.append(r)
    one, many = runs

    def speedup(attr: str) -> float:
        low: float = getattr(many, attr)
        return round(getattr(one, attr) / low, 2) if low > 0 else 0.0

    per_lane = [0] * PF_FACTOR
    for key in keys:
        per_lane[lane_slot(key, PF_FACTOR)] += 1
    s = speedup("seconds")
    return {
        "records": a.pf_records,
        "batch_size": a.pf_batch_size,
        "keys": len(keys),
        "keys_per_lane": per_lane,
        "handler_sleep_ms": HANDLER_SLEEP_MS,
        "factor": PF_FACTOR,
        "seconds_pf1": one.seconds,
        "seconds_pf10": many.seconds,
        "speedup": s,
        "speedup_from_first_record": speedup("seconds_from_first_record"),
        "speedup_handler_span": speedup("handler_span_seconds"),
        "ideal_speedup": float(PF_FACTOR),
        "goal": PF_GOAL,
        "goal_met": s >= PF_GOAL,
        "order_kept": not one.order_problems and not many.order_problems,
        "runs": [asdict(r) for r in runs],
    }


# --------------------------------------------------------------------------- 3: idle memory


@dataclass
class IdleRun:
    shards: int
    own_seconds: float  # /readyz to esm_owned_units == shards
    idle_seconds: float
    rss_supervisor_mib: float
    rss_worker_mib: float
    rss_total_mib: float
    idle_cpu_seconds: dict[str, float]  # over the idle seconds
    startup_seconds: float
    exit_code: int


def run_idle(ctx: Context, shards: int) -> IdleRun:
    a = ctx.args
    with temporary_stream(ctx.kinesis, shards, f"bench-idle{shards}") as arn:
        config = stream_config(arn, NOOP_HANDLER, a.batch_size)
        tag = f"idle-{shards}"
        rt = Runtime(ctx.workdir, tag, config, ctx.endpoint, 1, ctx.env(tag, fast=False))
        with rt.running() as launched:
            ready = rt.wait_ready(60)
            deadline = time.monotonic() + OWN_TIMEOUT
            while (owned := rt.metrics().get("esm_owned_units", 0.0)) < shards:
                rt.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"the runtime owns {owned:g} of {shards} shards after "
                        f"{OWN_TIMEOUT:.0f}s\n{rt.log_tail()}"
                    )
                time.sleep(0.1)
            owned_at = time.perf_counter()
            workers = rt.worker_pids()
            if len(workers) != 1:
                raise BenchError(f"expected one worker, found {workers}")
            watched = rt.watched(ctx.extra_pids)
            cpu0 = cpu_snapshot(watched)
            time.sleep(a.idle_seconds)
            cpu = cpu_delta(cpu0, cpu_snapshot(watched))
            rt.check_alive()
            if rt.worker_pids() != workers:
                raise BenchError(f"workers changed while idle: {workers} -> {rt.worker_pids()}")
            owned = rt.metrics().get("esm_owned_units", 0.0)
            if owned != shards:
                raise BenchError(f"the runtime owned {owned:g} of {shards} shards after idling")
            sup = rss_bytes(rt.pid) / MIB
            worker = rss_bytes(workers[0]) / MIB
            code = rt.stop_checked()
    return IdleRun(
        shards=shards,
        own_seconds=round(owned_at - ready, 2),
        idle_seconds=a.idle_seconds,
        rss_supervisor_mib=round(sup, 1),
        rss_worker_mib=round(worker, 1),
        rss_total_mib=round(sup + worker, 1),
        idle_cpu_seconds=cpu,
        startup_seconds=round(ready - launched, 2),
        exit_code=code,
    )


def describe_idle(r: IdleRun) -> str:
    return (
        f"idle {r.shards:>3} shards: RSS supervisor {r.rss_supervisor_mib:.1f} MiB, worker "
        f"{r.rss_worker_mib:.1f} MiB, total {r.rss_total_mib:.1f} MiB (all owned "
        f"{r.own_seconds:.2f} s after /readyz; start {r.startup_seconds:.2f} s; exit code "
        f"{r.exit_code})\n"
        f"{'':8}CPU s over the {r.idle_seconds:g} idle s: "
        f"{cpu_text(r.idle_cpu_seconds, r.idle_seconds)}"
    )


# --------------------------------------------------------------------------- output


def summarize(ctx: Context, runs: list[ThroughputRun]) -> dict[str, Any]:
    a = ctx.args
    rt = [r for r in runs if r.phase == "runtime"]
    raw = [r for r in runs if r.phase == "raw"]
    rt_rate = statistics.median(r.records_per_s for r in rt)
    raw_rate = statistics.median(r.records_per_s for r in raw)
    ratio = rt_rate / raw_rate
    return {
        "ok": True,
        "records": a.records,
        "body_bytes": BODY_BYTES,
        "shards": a.shards,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "order": a.order,
        "repeat": a.repeat,
        "poll_interval": a.poll_interval,
        "checkpoint_interval": a.checkpoint_interval,
        "endpoint": ctx.endpoint,
        "runtime_env": ctx.runtime_env,
        "runtime_records_per_s": round(rt_rate, 1),
        "runtime_records_per_s_from_first_record": round(
            statistics.median(r.records_per_s_from_first_record or 0.0 for r in rt), 1
        ),
        "raw_records_per_s": round(raw_rate, 1),
        "raw_records_per_s_from_first_record": round(
            statistics.median(r.records_per_s_from_first_record or 0.0 for r in raw), 1
        ),
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "goal_met": ratio >= GOAL,
        "ratio_from_first_record": round(
            statistics.median(r.records_per_s_from_first_record or 0.0 for r in rt)
            / statistics.median(r.records_per_s_from_first_record or 0.0 for r in raw),
            3,
        ),
        "pair_ratios": [
            round(x.records_per_s / y.records_per_s, 3) for x, y in zip(rt, raw, strict=True)
        ],
        "runs": [asdict(r) for r in runs],
    }


def print_summary(s: dict[str, Any]) -> None:
    k = s["repeat"]
    label = f"median of {k}" if k > 1 else "1 run"
    print()
    print(
        f"Kinesis throughput: N={s['records']} records of {s['body_bytes']} B on {s['shards']} "
        f"shards, BatchSize={s['batch_size']}, workers={s['workers']}, idle poll "
        f"{s['poll_interval']:g} s, checkpoint interval {s['checkpoint_interval']:g} s "
        f"({label}, {s['order']})"
    )
    print(f"  {'':9} {'rec/s':>10} {'from the first record read':>28}")
    for label, key in (("runtime", "runtime"), ("raw", "raw")):
        print(
            f"  {label:<9} {s[key + '_records_per_s']:10.1f} "
            f"{s[key + '_records_per_s_from_first_record']:28.1f}"
        )
    verdict = "met" if s["goal_met"] else "NOT met"
    pairs = ", ".join(f"{r:.2f}" for r in s["pair_ratios"])
    print(
        f"  ratio runtime/raw {s['ratio']:.3f} (goal >= {GOAL}: {verdict}); per round: {pairs}; "
        f"from the first record read: {s['ratio_from_first_record']:.3f}"
    )
    pf = s.get("parallelization")
    if pf is not None:
        print(
            f"ParallelizationFactor 1 vs {pf['factor']}: {pf['records']} records on 1 shard, "
            f"{pf['keys']} partition keys ({pf['keys_per_lane'][0]} per lane), "
            f"BatchSize={pf['batch_size']}, handler sleeps {pf['handler_sleep_ms']} ms per batch"
        )
        one, many = pf["runs"]
        for label, key in (
            ("/readyz to all checkpointed", "seconds"),
            ("first record read to all checkpointed", "seconds_from_first_record"),
            ("handler span (first start to last end)", "handler_span_seconds"),
        ):
            ratio = one[key] / many[key] if many[key] > 0 else 0.0
            print(
                f"  {label:<40} PF 1 {one[key]:7.2f} s  PF {pf['factor']} {many[key]:6.2f} s  "
                f"speed-up {ratio:5.2f}x"
            )
        verdict = "met" if pf["goal_met"] else "NOT met"
        print(
            f"  speed-up {pf['speedup']:.2f}x (ideal {pf['ideal_speedup']:g}x, goal >= "
            f"{pf['goal']:g}x: {verdict}); order per key "
            + ("kept" if pf["order_kept"] else "BROKEN")
        )
    memory = s.get("memory")
    if memory is not None:
        print("Idle memory, 1 worker (RSS from /proc):")
        for r in memory:
            print(
                f"  {r['shards']:>3} shards: supervisor {r['rss_supervisor_mib']:6.1f} MiB, "
                f"worker {r['rss_worker_mib']:6.1f} MiB, total {r['rss_total_mib']:6.1f} MiB"
            )


# --------------------------------------------------------------------------- driver


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_kinesis",
        description="Kinesis throughput (runtime vs raw GetRecords), ParallelizationFactor 1 vs "
        "10, idle memory with many shards.",
    )
    p.add_argument("--records", type=int, default=50_000, help="records for throughput (N)")
    p.add_argument("--shards", type=int, default=4, help="shards for throughput")
    p.add_argument("--batch-size", type=int, default=100, help="BatchSize for throughput")
    p.add_argument("--workers", type=int, default=1, help="runtime workers for throughput")
    p.add_argument("--order", choices=("runtime-first", "raw-first"), default="runtime-first")
    p.add_argument("--repeat", type=int, default=1, help="alternate runtime and raw K times")
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.1,
        help="ESM_STREAM_POLL_INTERVAL_SECONDS for phases 1 and 2, and the raw loop's sleep "
        "after an empty page",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=0.1,
        help="ESM_STREAM_CHECKPOINT_INTERVAL_SECONDS for phases 1 and 2",
    )
    p.add_argument(
        "--metrics-poll",
        type=float,
        default=0.05,
        help="seconds between /metrics polls while waiting for the checkpoints (phases 1, 2)",
    )
    p.add_argument("--pf-records", type=int, default=2000, help="records for phase 2")
    p.add_argument("--pf-keys", type=int, default=100, help="partition keys for phase 2")
    p.add_argument("--pf-batch-size", type=int, default=10, help="BatchSize for phase 2")
    p.add_argument("--skip-pf", action="store_true", help="skip phase 2")
    p.add_argument("--memory-shards", type=int, default=64, help="shards for phase 3")
    p.add_argument(
        "--memory-compare-shards",
        type=int,
        default=1,
        help="phase 3 again with this many shards, for comparison (0: not)",
    )
    p.add_argument("--idle-seconds", type=float, default=3.0, help="phase 3's idle time")
    p.add_argument("--skip-memory", action="store_true", help="skip phase 3")
    p.add_argument("--endpoint", help="use this emulator instead of starting a ministack")
    p.add_argument("--fill-threads", type=int, default=4)
    add_timeout_options(
        p,
        timeout_help="seconds a phase may take",
        stall_default=60.0,
        stall_help="seconds without a record checkpointed before a runtime phase fails",
    )
    add_runtime_env_and_keep(p, keep_help="keep the work directory (logs, configs, records)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if min(args.records, args.shards, args.workers, args.repeat, args.fill_threads) < 1:
        parser.error("--records, --shards, --workers, --repeat and --fill-threads must be >= 1")
    if not 1 <= args.batch_size <= 10000 or not 1 <= args.pf_batch_size <= 10000:
        parser.error("--batch-size and --pf-batch-size must be within 1..10000")
    if args.pf_keys < PF_FACTOR or args.pf_keys % PF_FACTOR:
        parser.error(f"--pf-keys must be a positive multiple of {PF_FACTOR}")
    if args.pf_records < args.pf_keys:
        parser.error("--pf-records must be >= --pf-keys")
    if args.memory_shards < 1 or args.memory_compare_shards < 0 or args.idle_seconds < 0:
        parser.error("--memory-shards must be >= 1, the other memory options >= 0")
    if min(args.poll_interval, args.checkpoint_interval, args.metrics_poll) <= 0:
        parser.error("--poll-interval, --checkpoint-interval and --metrics-poll must be > 0")
    return run_main(
        "bench_kinesis",
        parser,
        args,
        "esm-bench-kinesis-",
        functools.partial(emulator, args.endpoint),
        _run,
    )


def _run(setup: Setup) -> bool:
    ctx = Context.of(setup)
    a = ctx.args
    print(
        f"bench_kinesis: N={a.records} shards={a.shards} batch_size={a.batch_size} "
        f"workers={a.workers} order={a.order} repeat={a.repeat} pf_records="
        f"{'skip' if a.skip_pf else a.pf_records} memory_shards="
        f"{'skip' if a.skip_memory else a.memory_shards} endpoint={ctx.endpoint} "
        f"workdir={ctx.workdir}",
        flush=True,
    )
    phases: list[Phase] = ["runtime", "raw"]
    if a.order == "raw-first":
        phases.reverse()
    runs: list[ThroughputRun] = []
    for round_no in range(1, a.repeat + 1):
        for phase in phases:
            r = (run_runtime if phase == "runtime" else run_raw)(ctx, round_no)
            runs.append(r)
            print(f"[{round_no}/{a.repeat}] {describe_throughput(r)}", flush=True)
    summary = summarize(ctx, runs)
    if not a.skip_pf:
        summary["parallelization"] = run_pf_phase(ctx)
    if not a.skip_memory:
        memory = []
        for shards in (a.memory_shards, a.memory_compare_shards):
            if shards:
                idle = run_idle(ctx, shards)
                print(describe_idle(idle), flush=True)
                memory.append(asdict(idle))
        summary["memory"] = memory
    print_summary(summary)
    print(result_line(summary), flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
