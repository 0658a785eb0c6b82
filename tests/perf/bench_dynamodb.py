"""DynamoDB Streams: the runtime's throughput against a raw aiobotocore loop on the same stream.

    .venv/bin/python -m tests.perf.bench_dynamodb [--records 20000] [--batch-size 100]
        [--workers 1] [--repeat 1] [--endpoint URL]

bench_kinesis measures Kinesis only; DynamoDB Streams go through the same ordered core but
another API (DescribeStream for shards, GetRecords of at most 1,000 records, the DynamoDB
record format), so they get their own figure. Both phases come from bench_kinesis (phase 1A's
runtime run and 1B's raw reading loop); only the table, its items and the raw loop's calls
differ. Against one emulator (a ministack started here on a free port, or ``--endpoint``), each
run on a fresh table filled beforehand (not timed):

- the table is keyed by ``id`` (S) with a stream (``--view``, NEW_AND_OLD_IMAGES); N items
  (``--records``) ``{"id": "i<n>", "pad": "xx..."}`` of about 100 bytes are written with
  BatchWriteItem of 25 from ``--fill-threads`` threads, so the stream holds N INSERT records.
  ministack keeps one shard per stream (real tables have shards DynamoDB chooses), so both
  sides read a single shard.

A. runtime: ``python -m runtime run`` with ``--workers`` (1) worker processes, one no-op
   function (:func:`tests.perf.handlers.noop`), one mapping on the stream (StartingPosition
   TRIM_HORIZON, BatchSize ``--batch-size``, 100), its own SQLite lease store,
   ESM_STREAM_POLL_INTERVAL_SECONDS ``--poll-interval`` (0.1) and
   ESM_STREAM_CHECKPOINT_INTERVAL_SECONDS ``--checkpoint-interval`` (0.1). Timed from
   ``/readyz`` answering 200 until ``lambda_committed_events_total`` reaches N, /metrics
   polled every ``--metrics-poll`` (0.05) s: the window holds the shard listing, the lease
   acquisition, the first GetShardIterator and up to one checkpoint interval at the end
   (bench_kinesis 1A). Also reported: the rate from the first poll that saw a record read.
B. raw: in this process, on uvloop, one aiobotocore ``dynamodbstreams`` client (warmed up
   outside the window with DescribeStream(Limit=1), the call the runtime makes before it
   reports ready); in the window, DescribeStream (paged with ExclusiveStartShardId) lists the
   shards, then one coroutine per shard runs GetShardIterator(TRIM_HORIZON) and GetRecords
   (Limit=1000, the API's most) in a loop, sleeping ``--poll-interval`` after an empty page,
   until the coroutines together read N records. Records are counted, never decoded or
   checkpointed: what the emulator and botocore allow (bench_kinesis 1B).

``ratio`` = runtime / raw records/s, ``ratio_from_first_record`` the same from each side's
first record read. ``--repeat K`` alternates A and B K times (``--order``), each on a fresh
table, and reports medians.

CPU seconds of each process (supervisor, workers, this process, the emulator when started
here, ``other`` for the rest of the machine) are read from /proc over each timed window; runs
in which other processes used the cores are flagged NOISY.

The exit code is 0 when every phase completed (whatever the figures: this is a measurement) and
1 when one failed. The last line is ``RESULT {json}`` with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import uvloop
from aiobotocore.session import get_session

from tests.perf.bench_kinesis import (
    Context,
    Phase,
    RawStats,
    ThroughputRun,
    describe_throughput,
    raw_client_config,
    raw_throughput,
    read_shards,
    runtime_throughput,
)
from tests.perf.common import BODY_BYTES, BenchError
from tests.perf.driver import (
    Setup,
    add_runtime_env_and_keep,
    add_timeout_options,
    emulator,
    result_line,
    run_main,
)
from tests.support.aws import CREDENTIALS, REGION, client
from tests.support.streams import create_table_with_stream

WRITE_BATCH = 25  # BatchWriteItem's most items per call
READ_LIMIT = 1000  # DynamoDB Streams GetRecords' most records per call
VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY")


# --------------------------------------------------------------------------- tables


def item(i: int) -> dict[str, Any]:
    """Item i: ``{"id": "i<n>", "pad": "xx..."}``, about BODY_BYTES bytes of attribute names
    and values."""
    key = f"i{i}"
    return {"id": {"S": key}, "pad": {"S": "x" * (BODY_BYTES - len(key) - len("idpad"))}}


def write_items(ddb: Any, table: str, items: list[dict[str, Any]]) -> None:
    """One BatchWriteItem (up to 25 puts), writing again what came back unprocessed."""
    requests: list[dict[str, Any]] = [{"PutRequest": {"Item": it}} for it in items]
    for attempt in range(8):
        resp = ddb.batch_write_item(RequestItems={table: requests})
        requests = (resp.get("UnprocessedItems") or {}).get(table) or []
        if not requests:
            return
        time.sleep(0.1 * (attempt + 1))
    raise BenchError(f"BatchWriteItem kept leaving {len(requests)} items unprocessed")


def fill_table(ddb: Any, table: str, n: int, threads: int) -> float:
    """Write items 0..n-1 with BatchWriteItem from several threads; return the seconds."""
    started = time.perf_counter()

    def write(first: int) -> None:
        write_items(ddb, table, [item(i) for i in range(first, min(first + WRITE_BATCH, n))])

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fill") as pool:
        list(pool.map(write, range(0, n, WRITE_BATCH)))
    return time.perf_counter() - started


@contextlib.contextmanager
def filled_table(ddb: Any, n: int, view: str, threads: int) -> Iterator[tuple[str, float]]:
    """(stream ARN, fill seconds) of a fresh table with a stream holding n INSERT records,
    deleted on the way out."""
    table, arn = create_table_with_stream(ddb, view)
    try:
        yield arn, fill_table(ddb, table, n, threads)
    finally:
        with contextlib.suppress(Exception):
            ddb.delete_table(TableName=table)


# --------------------------------------------------------------------------- phases


async def _raw(
    endpoint: str, arn: str, n: int, idle_sleep: float, limit_seconds: float, pids: dict[str, int]
) -> tuple[float, float, dict[str, float], RawStats, int]:
    """Phase B: list the stream's shards and read n records from them (:func:`read_shards`);
    its figures and the number of shards listed."""
    listed: list[str] = []
    async with get_session().create_client(
        "dynamodbstreams",
        endpoint_url=endpoint,
        region_name=REGION,
        config=raw_client_config(1),
        **CREDENTIALS,
    ) as streams:
        # Warm up (client, connection) outside the window, as the runtime's check before ready.
        await streams.describe_stream(StreamArn=arn, Limit=1)

        async def list_shards() -> list[str]:
            shards: list[str] = []
            kwargs: dict[str, Any] = {"StreamArn": arn}
            while True:
                desc = (await streams.describe_stream(**kwargs))["StreamDescription"]
                shards.extend(s["ShardId"] for s in desc.get("Shards", []))
                last = desc.get("LastEvaluatedShardId")
                if not last:
                    listed.extend(shards)
                    return shards
                kwargs["ExclusiveStartShardId"] = last

        async def open_iterator(shard: str) -> str:
            got = await streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )
            return str(got["ShardIterator"])

        seconds, from_first, cpu, stats = await read_shards(
            streams,
            [],
            open_iterator,
            n,
            READ_LIMIT,
            idle_sleep,
            limit_seconds,
            pids,
            list_shards=list_shards,
        )
    return seconds, from_first, cpu, stats, len(listed)


def run_runtime(ctx: Context, ddb: Any, round_no: int) -> tuple[ThroughputRun, int | None]:
    a = ctx.args
    with filled_table(ddb, a.records, a.view, a.fill_threads) as (arn, fill_s):
        return runtime_throughput(ctx, round_no, arn, a.records, fill_s), None


def run_raw(ctx: Context, ddb: Any, round_no: int) -> tuple[ThroughputRun, int | None]:
    """Phase B on a fresh table: its figures and the shards the stream had."""
    a = ctx.args
    n = a.records
    with filled_table(ddb, n, a.view, a.fill_threads) as (arn, fill_s):
        seconds, from_first, cpu, stats, shards = uvloop.run(
            _raw(ctx.endpoint, arn, n, a.poll_interval, a.timeout, ctx.extra_pids)
        )
    return raw_throughput(round_no, n, fill_s, seconds, from_first, cpu, stats), shards


# --------------------------------------------------------------------------- output


def _median(runs: list[ThroughputRun], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) or 0.0 for r in runs))


def summarize(ctx: Context, runs: list[ThroughputRun], shards: list[int]) -> dict[str, Any]:
    a = ctx.args
    rt = [r for r in runs if r.phase == "runtime"]
    raw = [r for r in runs if r.phase == "raw"]
    rt_rate, raw_rate = _median(rt, "records_per_s"), _median(raw, "records_per_s")
    rt_first = _median(rt, "records_per_s_from_first_record")
    raw_first = _median(raw, "records_per_s_from_first_record")
    return {
        "ok": True,
        "records": a.records,
        "item_bytes": BODY_BYTES,
        "view": a.view,
        "shards": shards,  # listed by each raw run
        "batch_size": a.batch_size,
        "workers": a.workers,
        "order": a.order,
        "repeat": a.repeat,
        "poll_interval": a.poll_interval,
        "checkpoint_interval": a.checkpoint_interval,
        "endpoint": ctx.endpoint,
        "runtime_env": ctx.runtime_env,
        "runtime_records_per_s": round(rt_rate, 1),
        "runtime_records_per_s_from_first_record": round(rt_first, 1),
        "raw_records_per_s": round(raw_rate, 1),
        "raw_records_per_s_from_first_record": round(raw_first, 1),
        "ratio": round(rt_rate / raw_rate, 3),
        "ratio_from_first_record": round(rt_first / raw_first, 3) if raw_first else 0.0,
        "pair_ratios": [
            round(x.records_per_s / y.records_per_s, 3) for x, y in zip(rt, raw, strict=True)
        ],
        "runs": [asdict(r) for r in runs],
    }


def print_summary(s: dict[str, Any]) -> None:
    k = s["repeat"]
    print()
    print(
        f"DynamoDB Streams throughput: N={s['records']} INSERT records ({s['view']}) of items "
        f"of ~{s['item_bytes']} B, BatchSize={s['batch_size']}, workers={s['workers']}, idle "
        f"poll {s['poll_interval']:g} s, checkpoint interval {s['checkpoint_interval']:g} s "
        f"({f'median of {k}' if k > 1 else '1 run'}, {s['order']})"
    )
    print(f"  {'':9} {'rec/s':>10} {'from the first record read':>28}")
    for label in ("runtime", "raw"):
        print(
            f"  {label:<9} {s[label + '_records_per_s']:10.1f} "
            f"{s[label + '_records_per_s_from_first_record']:28.1f}"
        )
    pairs = ", ".join(f"{r:.2f}" for r in s["pair_ratios"])
    print(
        f"  ratio runtime/raw {s['ratio']:.3f}; per round: {pairs}; from the first record "
        f"read: {s['ratio_from_first_record']:.3f}"
    )


# --------------------------------------------------------------------------- driver


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_dynamodb",
        description="DynamoDB Streams throughput: the runtime against a raw GetRecords loop.",
    )
    p.add_argument("--records", type=int, default=20_000, help="items written = records (N)")
    p.add_argument("--batch-size", type=int, default=100, help="the mapping's BatchSize")
    p.add_argument("--workers", type=int, default=1, help="runtime worker processes")
    p.add_argument("--view", choices=VIEWS, default=VIEWS[0], help="the stream's view type")
    p.add_argument("--order", choices=("runtime-first", "raw-first"), default="runtime-first")
    p.add_argument("--repeat", type=int, default=1, help="alternate runtime and raw K times")
    p.add_argument(
        "--poll-interval",
        type=float,
        default=0.1,
        help="ESM_STREAM_POLL_INTERVAL_SECONDS, and the raw loop's sleep after an empty page",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=0.1,
        help="ESM_STREAM_CHECKPOINT_INTERVAL_SECONDS",
    )
    p.add_argument(
        "--metrics-poll", type=float, default=0.05, help="seconds between /metrics polls"
    )
    p.add_argument("--fill-threads", type=int, default=4)
    p.add_argument("--endpoint", help="use this emulator instead of starting a ministack")
    add_timeout_options(
        p,
        timeout_help="seconds a phase may take",
        stall_default=60.0,
        stall_help="seconds without a record checkpointed before the runtime phase fails",
    )
    add_runtime_env_and_keep(p, keep_help="keep the work directory (logs, configs)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if min(args.records, args.workers, args.repeat, args.fill_threads) < 1:
        parser.error("--records, --workers, --repeat and --fill-threads must be >= 1")
    if not 1 <= args.batch_size <= 10000:
        parser.error("--batch-size must be within 1..10000")
    if min(args.poll_interval, args.checkpoint_interval, args.metrics_poll) <= 0:
        parser.error("--poll-interval, --checkpoint-interval and --metrics-poll must be > 0")
    return run_main(
        "bench_dynamodb",
        parser,
        args,
        "esm-bench-dynamodb-",
        functools.partial(emulator, args.endpoint),
        _run,
    )


def _run(setup: Setup) -> bool:
    # bench_kinesis's context gives the runtime phase its environment; its Kinesis client
    # goes unused here.
    ctx = Context.of(setup)
    ddb = client("dynamodb", ctx.endpoint)
    a = ctx.args
    print(
        f"bench_dynamodb: N={a.records} view={a.view} batch_size={a.batch_size} "
        f"workers={a.workers} order={a.order} repeat={a.repeat} endpoint={ctx.endpoint} "
        f"workdir={ctx.workdir}",
        flush=True,
    )
    phases: list[Phase] = ["runtime", "raw"]
    if a.order == "raw-first":
        phases.reverse()
    runs: list[ThroughputRun] = []
    shards: list[int] = []
    for round_no in range(1, a.repeat + 1):
        for phase in phases:
            r, listed = (run_runtime if phase == "runtime" else run_raw)(ctx, ddb, round_no)
            runs.append(r)
            if listed is not None:
                shards.append(listed)
            print(f"[{round_no}/{a.repeat}] {describe_throughput(r)}", flush=True)
    summary = summarize(ctx, runs, shards)
    print_summary(summary)
    print(result_line(summary), flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
