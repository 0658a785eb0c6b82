"""SQS throughput: the runtime as a real process tree against a plain aiobotocore loop.

    .venv/bin/python -m tests.perf.bench_sqs --messages 20000 --concurrency 10 [--workers 2]

Both phases run against the same emulator (one started here on a free port, or ``--endpoint``),
each on a fresh standard queue (VisibilityTimeout 60) filled beforehand with N messages of about
100 bytes (the fill is not timed):

A. runtime: ``python -m runtime run`` with one no-op function (:func:`tests.perf.handlers.noop`)
   and one mapping (BatchSize 10, ScalingConfig.MaximumConcurrency = --concurrency). Timed from
   ``/readyz`` answering 200 until the queue reports no message (visible or in flight) and
   ``lambda_deleted_events_total`` reaches N, polled every 0.2 s. After 2 s of idleness the RSS
   of the supervisor and of each worker is read from /proc, then SIGTERM must end it with 0.
B. baseline: in this process, on uvloop, --concurrency coroutines sharing one aiobotocore
   client, each looping ReceiveMessage(10, WaitTimeSeconds=1) then DeleteMessageBatch, timed
   from the first receive until the N-th message is deleted.

With ``--filter-share``, after those rounds, phase A runs twice more, each on a fresh queue of N
JSON bodies of 1 KB (``{"a": "x", "b": 42, "c": "abcdef", "n": i, "pad": "xx..."}``): once
without FilterCriteria and once with
``{"body": {"a": ["x"], "b": [{"numeric": [">", 10]}], "c": [{"prefix": "ab"}]}}``, which every
message matches, so the handler does the same work. The workers' CPU seconds in each window give
CPU µs per message without and with filtering and the share of the runtime's CPU spent filtering,
(with - without) / with; ``RecordFilter`` timed in this process on the same kind of records
(decode + match) cross-checks the difference. FilteredOutEventCount must stay 0. The figures go
under ``filter_share`` in the RESULT.

With ``--per-worker-limits 1,2,5``, phase A also runs once per limit L on a fresh queue with
BatchSize ``--limit-batch-size`` (100), a 1 s batching window and MaximumConcurrency L x
workers, so each worker's share of the concurrency is L: it prints the rate and the mean batch
size, which must stay near BatchSize while the backlog lasts whatever L (figures under
``per_worker_limits``).

The emulator is noisy, so ``--repeat K`` alternates A and B K times and reports medians. The
exit code is 0 whatever the ratio (this is a measurement, not an assertion) and 1 when a phase
failed: messages left after the timeout, the runtime dying or not exiting 0 on SIGTERM. The last
line of a successful run is ``RESULT {json}`` with every figure, for scripts and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from runtime.config.sources import SourceKind
from runtime.sources.sqs import lambda_record
from tests.perf.common import (
    BATCH_SIZE,
    BODY_BYTES,
    IDLE_SECONDS,
    MIB,
    VISIBILITY_TIMEOUT,
    BenchError,
    Runtime,
    cpu_delta,
    cpu_snapshot,
    cpu_text,
    drain,
    fill,
    filter_body,
    filter_pattern,
    filter_share_figures,
    filter_share_run,
    inprocess_filter_cost,
    make_body,
    print_filter_share,
    rss_bytes,
    single_mapping_config,
    temporary_queue,
    with_filter,
)
from tests.perf.driver import (
    QueueContext,
    Setup,
    add_runtime_env_and_keep,
    add_timeout_options,
    emulator,
    result_line,
    run_main,
)
from tests.support.aws import CREDENTIALS, REGION, Queue

Phase = Literal["runtime", "baseline"]

GOAL = 0.8
HANDLER = "tests.perf.handlers.noop"


# --------------------------------------------------------------------------- queues


@contextlib.contextmanager
def fresh_queue(
    sqs: Any, tag: str, n: int, threads: int, body: Callable[[int], str] = make_body
) -> Iterator[tuple[Queue, float]]:
    with temporary_queue(sqs, f"bench-{tag}", visibility_timeout=VISIBILITY_TIMEOUT) as queue:
        yield queue, fill(queue, n, threads, body)


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    phase: Phase
    round: int
    seconds: float
    msgs_per_s: float
    fill_seconds: float
    # CPU seconds each process spent inside the timed window.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # Runtime phase only.
    remaining_at_ready: int | None = None
    # remaining_at_ready / seconds: workers that got ready before /readyz said so start early.
    msgs_per_s_after_ready: float | None = None
    startup_seconds: float | None = None
    invocations: float | None = None
    deleted_metric: float | None = None
    function_errors: float | None = None
    polling_errors: float | None = None
    ack_failures: float | None = None
    rss_supervisor_mib: float | None = None
    rss_workers_mib: list[float] | None = None
    exit_code: int | None = None
    # Baseline phase only.
    receives: int | None = None
    empty_receives: int | None = None
    delete_failures: int | None = None


# --------------------------------------------------------------------------- phase A: runtime


def runtime_config(
    queue_arn: str, concurrency: int, batch_size: int = BATCH_SIZE, window: int = 0
) -> dict[str, Any]:
    config = single_mapping_config(queue_arn, HANDLER, concurrency, batch_size)
    if window:
        config["eventSourceMappings"][0]["MaximumBatchingWindowInSeconds"] = window
    return config


def run_runtime(ctx: QueueContext, round_no: int) -> RunResult:
    return _runtime_phase(ctx, round_no, f"{round_no}", "rt")[0]


def _runtime_phase(
    ctx: QueueContext,
    round_no: int,
    tag: str,
    queue_tag: str,
    body: Callable[[int], str] = make_body,
    pattern: str | None = None,
    config_of: Callable[[str], dict[str, Any]] | None = None,
) -> tuple[RunResult, dict[str, float]]:
    """Phase A on a fresh queue of ``body(i)`` messages, with FilterCriteria ``pattern`` when
    given (and ``config_of(queue_arn)`` instead of the default mapping); the result and the
    runtime's metrics at the end of the timed window."""
    a = ctx.args
    n = a.messages
    with fresh_queue(ctx.sqs, queue_tag, n, a.fill_threads, body) as (queue, fill_s):
        config = (config_of or (lambda arn: runtime_config(arn, a.concurrency)))(queue.arn)
        if pattern is not None:
            config = with_filter(config, pattern)
        rt = Runtime(ctx.workdir, tag, config, ctx.endpoint, a.workers, ctx.runtime_env)
        with rt.running() as launched:
            d = drain(rt, queue, n, a.timeout, a.stall_timeout, ctx.extra_pids)
            if rt.worker_pids() != d.workers:
                raise BenchError(
                    f"workers changed during the run: {d.workers} -> {rt.worker_pids()}"
                )

            time.sleep(IDLE_SECONDS)
            rss_sup = rss_bytes(rt.pid) / MIB
            rss_workers = [rss_bytes(p) / MIB for p in rt.worker_pids()]
            code = rt.stop_checked()
        seconds = d.done - d.ready
        m = d.metrics
        result = RunResult(
            phase="runtime",
            round=round_no,
            seconds=round(seconds, 3),
            msgs_per_s=round(n / seconds, 1),
            fill_seconds=round(fill_s, 2),
            cpu_seconds=d.cpu,
            remaining_at_ready=d.remaining_at_ready,
            msgs_per_s_after_ready=round(d.remaining_at_ready / seconds, 1),
            startup_seconds=round(d.ready - launched, 2),
            invocations=m.get("lambda_invocations_total", 0.0),
            deleted_metric=m.get("lambda_deleted_events_total", 0.0),
            function_errors=m.get("lambda_errors_total", 0.0),
            polling_errors=m.get("esm_polling_errors_total", 0.0),
            ack_failures=m.get("esm_ack_failures_total", 0.0),
            rss_supervisor_mib=round(rss_sup, 1),
            rss_workers_mib=[round(r, 1) for r in rss_workers],
            exit_code=code,
        )
        return result, m


# --------------------------------------------------------------------------- phase B: baseline


@dataclass
class BaselineStats:
    deleted: int = 0
    receives: int = 0
    empty_receives: int = 0
    delete_failures: int = 0
    done_at: float = 0.0


async def _baseline(
    endpoint: str,
    url: str,
    n: int,
    concurrency: int,
    limit_seconds: float,
    extra_pids: dict[str, int],
) -> tuple[float, dict[str, float], BaselineStats]:
    """Drain the queue; return (seconds to the N-th delete, CPU seconds by process, stats)."""
    config = AioConfig(
        max_pool_connections=max(2 * concurrency, 10),
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
    )
    stats = BaselineStats()
    done = asyncio.Event()
    async with get_session().create_client(
        "sqs", endpoint_url=endpoint, region_name=REGION, config=config, **CREDENTIALS
    ) as sqs:
        # Warm up (client, connection) outside the timed window, as the runtime does before ready.
        await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])

        async def consume() -> None:
            while not done.is_set():
                resp = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                stats.receives += 1
                messages = resp.get("Messages") or []
                if not messages:
                    stats.empty_receives += 1
                    continue
                result = await sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
                stats.deleted += len(result.get("Successful") or ())
                stats.delete_failures += len(result.get("Failed") or ())
                if stats.deleted >= n and not done.is_set():
                    stats.done_at = time.perf_counter()
                    done.set()

        started = time.perf_counter()
        watched = {"bench": os.getpid(), **extra_pids}
        cpu0 = cpu_snapshot(watched)
        tasks: set[asyncio.Task[Any]] = {asyncio.create_task(consume()) for _ in range(concurrency)}
        finished: asyncio.Task[Any] = asyncio.create_task(done.wait())
        try:
            deadline = time.monotonic() + limit_seconds
            while not done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(
                        f"baseline did not drain the queue in {limit_seconds:.0f}s "
                        f"({stats.deleted}/{n} deleted)"
                    )
                await asyncio.wait(
                    {finished, *tasks}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for t in tasks:
                    if t.done() and not done.is_set():
                        raise BenchError(f"baseline consumer failed: {t.exception()!r}")
            cpu = cpu_delta(cpu0, cpu_snapshot(watched))
        finally:
            for t in (*tasks, finished):
                t.cancel()
            await asyncio.gather(*tasks, finished, return_exceptions=True)
    return stats.done_at - started, cpu, stats


def run_baseline(ctx: QueueContext, round_no: int) -> RunResult:
    a = ctx.args
    n = a.messages
    with fresh_queue(ctx.sqs, "bl", n, a.fill_threads) as (queue, fill_s):
        seconds, cpu, stats = uvloop.run(
            _baseline(ctx.endpoint, queue.url, n, a.concurrency, a.timeout, ctx.extra_pids)
        )
        left = queue.total()
        if left:
            raise BenchError(f"baseline deleted {stats.deleted} but {left} messages are left")
    return RunResult(
        phase="baseline",
        round=round_no,
        seconds=round(seconds, 3),
        msgs_per_s=round(n / seconds, 1),
        fill_seconds=round(fill_s, 2),
        cpu_seconds=cpu,
        receives=stats.receives,
        empty_receives=stats.empty_receives,
        delete_failures=stats.delete_failures,
    )


# --------------------------------------------------------------------------- filter share


def sqs_payloads(count: int) -> list[dict[str, Any]]:
    """Records as the SQS source builds them (:func:`runtime.sources.sqs.lambda_record` of a
    ReceiveMessage message) with :func:`filter_body` bodies, for the in-process cross-check."""
    arn = f"arn:aws:sqs:{REGION}:000000000000:bench-fs"
    out = []
    for i in range(count):
        body = filter_body(i)
        message = {
            "MessageId": f"00000000-0000-4000-8000-{i:012d}",
            "ReceiptHandle": f"AQEB{i:012d}" + "r" * 160,
            "Body": body,
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "Attributes": {
                "SenderId": "000000000000",
                "SentTimestamp": "1700000000000",
                "ApproximateReceiveCount": "1",
                "ApproximateFirstReceiveTimestamp": "1700000000001",
            },
        }
        out.append(lambda_record(message, arn, REGION))
    return out


def run_filter_share(ctx: QueueContext) -> dict[str, Any]:
    """Phase A twice on fresh queues of FILTER_BODY_BYTES JSON bodies, without and with a
    pattern every message matches; the ``filter_share`` figures."""
    n = ctx.args.messages
    pattern = filter_pattern("body")
    runs: dict[str, dict[str, Any]] = {}
    for key, with_pattern in (("without", None), ("with", pattern)):
        r, m = _runtime_phase(ctx, 0, f"fs-{key}", f"fs-{key}", filter_body, with_pattern)
        print(f"[filter share, {key} filter] {describe(r)}", flush=True)
        before = n - (r.remaining_at_ready or 0)
        runs[key] = filter_share_run(n, before, r.seconds, r.cpu_seconds, m)
    inprocess = inprocess_filter_cost(SourceKind.SQS, sqs_payloads(1000), pattern, BATCH_SIZE)
    return filter_share_figures(n, pattern, runs["without"], runs["with"], inprocess)


# --------------------------------------------------------------------------- small shares


def run_per_worker_limits(ctx: QueueContext) -> list[dict[str, Any]]:
    """Phase A at each per-worker concurrency limit: rate and mean batch size."""
    a = ctx.args
    out = []
    for limit in a.per_worker_limits:
        concurrency = max(2, limit * a.workers)
        r, m = _runtime_phase(
            ctx,
            0,
            f"limit-{limit}",
            f"limit-{limit}",
            config_of=lambda arn, c=concurrency: runtime_config(arn, c, a.limit_batch_size, 1),
        )
        batches = m.get("esm_batch_records_count", 0.0)
        mean = m.get("esm_batch_records_sum", 0.0) / batches if batches else 0.0
        print(f"[per-worker limit {limit}] {describe(r)}", flush=True)
        out.append(
            {
                "per_worker_limit": limit,
                "maximum_concurrency": concurrency,
                "batch_size": a.limit_batch_size,
                "msgs_per_s": r.msgs_per_s,
                "mean_batch_records": round(mean, 1),
                "batches": batches,
            }
        )
    return out


# --------------------------------------------------------------------------- driver


def describe(r: RunResult) -> str:
    head = f"{r.phase:<8} {r.seconds:8.2f} s {r.msgs_per_s:9.1f} msg/s"
    if r.phase == "runtime":
        assert r.rss_workers_mib is not None
        per_call = (r.deleted_metric or 0.0) / r.invocations if r.invocations else 0.0
        return (
            f"{head}  (start {r.startup_seconds:.2f} s; {r.remaining_at_ready} left at ready "
            f"= {r.msgs_per_s_after_ready:.1f} msg/s; "
            f"{r.invocations:g} invocations = {per_call:.2f} msg/batch, "
            f"errors {r.function_errors:g}/{r.polling_errors:g}/{r.ack_failures:g})\n"
            f"{'':14}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}\n"
            f"{'':14}idle RSS: supervisor {r.rss_supervisor_mib:.1f} MiB, workers "
            + ", ".join(f"{x:.1f}" for x in r.rss_workers_mib)
            + f" MiB; exit code {r.exit_code}"
        )
    return (
        f"{head}  ({r.receives} receives, {r.empty_receives} empty, "
        f"{r.delete_failures} delete failures)\n"
        f"{'':14}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


def summarize(args: argparse.Namespace, endpoint: str, runs: list[RunResult]) -> dict[str, Any]:
    rt = [r for r in runs if r.phase == "runtime"]
    bl = [r for r in runs if r.phase == "baseline"]
    rt_rate = statistics.median(r.msgs_per_s for r in rt)
    bl_rate = statistics.median(r.msgs_per_s for r in bl)
    ratio = rt_rate / bl_rate
    last = rt[-1]
    assert last.rss_workers_mib is not None and last.rss_supervisor_mib is not None
    return {
        "ok": True,
        "messages": args.messages,
        "body_bytes": BODY_BYTES,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "order": args.order,
        "repeat": args.repeat,
        "endpoint": endpoint,
        "runtime_msgs_per_s": round(rt_rate, 1),
        "baseline_msgs_per_s": round(bl_rate, 1),
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "goal_met": ratio >= GOAL,
        "pair_ratios": [round(a.msgs_per_s / b.msgs_per_s, 3) for a, b in zip(rt, bl, strict=True)],
        "rss_supervisor_mib": last.rss_supervisor_mib,
        "rss_workers_mib": last.rss_workers_mib,
        "rss_total_mib": round(last.rss_supervisor_mib + sum(last.rss_workers_mib), 1),
        "runs": [asdict(r) for r in runs],
    }


def print_summary(s: dict[str, Any]) -> None:
    k = s["repeat"]
    label = "median of " + str(k) if k > 1 else "1 run"
    print()
    print(
        f"SQS throughput: N={s['messages']} messages of {s['body_bytes']} B, "
        f"concurrency={s['concurrency']}, workers={s['workers']}, BatchSize={BATCH_SIZE} "
        f"({label}, {s['order']})"
    )
    print(f"  runtime   {s['runtime_msgs_per_s']:9.1f} msg/s")
    print(f"  baseline  {s['baseline_msgs_per_s']:9.1f} msg/s")
    verdict = "met" if s["goal_met"] else "NOT met"
    pairs = ", ".join(f"{r:.2f}" for r in s["pair_ratios"])
    print(f"  ratio runtime/baseline {s['ratio']:.3f} (goal >= {GOAL}: {verdict})")
    print(f"  per-round ratios: {pairs}")
    workers = ", ".join(f"{x:.1f}" for x in s["rss_workers_mib"])
    print(
        f"  idle RSS: supervisor {s['rss_supervisor_mib']:.1f} MiB, workers [{workers}] MiB, "
        f"total {s['rss_total_mib']:.1f} MiB"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_sqs",
        description="SQS throughput of the runtime against a plain aiobotocore loop.",
    )
    p.add_argument("--messages", type=int, default=20000, help="messages per phase (N)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="MaximumConcurrency of the mapping = coroutines of the baseline (>= 2)",
    )
    p.add_argument("--workers", type=int, default=2, help="runtime worker processes")
    p.add_argument("--endpoint", help="use this emulator instead of starting a ministack")
    p.add_argument("--order", choices=("runtime-first", "baseline-first"), default="runtime-first")
    p.add_argument("--repeat", type=int, default=1, help="alternate the two phases K times")
    add_timeout_options(
        p,
        timeout_help="seconds a phase may take",
        stall_default=150.0,
        stall_help="seconds without progress before a runtime phase fails (> VisibilityTimeout)",
    )
    p.add_argument("--fill-threads", type=int, default=8)
    p.add_argument(
        "--per-worker-limits",
        type=lambda text: [int(x) for x in text.split(",") if x],
        default=[],
        metavar="L1,L2,...",
        help="also run the runtime at these per-worker concurrency limits (e.g. 1,2,5) with "
        "BatchSize --limit-batch-size and a 1 s window; print rate and mean batch size",
    )
    p.add_argument("--limit-batch-size", type=int, default=100)
    add_runtime_env_and_keep(
        p,
        keep_help="keep the work directory (logs, configs)",
        filter_share_help="also run phase A without and with a FilterCriteria pattern every "
        "message matches, on 1 KB JSON bodies, and report the share of worker CPU spent filtering",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.messages < 1 or args.repeat < 1 or args.workers < 1 or args.fill_threads < 1:
        parser.error("--messages, --repeat, --workers and --fill-threads must be >= 1")
    if not 2 <= args.concurrency <= 1000:
        parser.error("--concurrency must be within 2..1000 (ScalingConfig.MaximumConcurrency)")
    return run_main(
        "bench_sqs", parser, args, "esm-bench-", functools.partial(emulator, args.endpoint), _run
    )


def _run(setup: Setup) -> bool:
    """Every round, then the summary and the RESULT line."""
    ctx = QueueContext.of(setup)
    args, endpoint = ctx.args, ctx.endpoint
    phases: list[Phase] = ["runtime", "baseline"]
    if args.order == "baseline-first":
        phases.reverse()
    print(
        f"bench_sqs: N={args.messages} concurrency={args.concurrency} workers={args.workers} "
        f"order={args.order} repeat={args.repeat} endpoint={endpoint} workdir={ctx.workdir}"
        + (" filter-share" if args.filter_share else ""),
        flush=True,
    )
    runs: list[RunResult] = []
    for round_no in range(1, args.repeat + 1):
        for phase in phases:
            run = run_runtime if phase == "runtime" else run_baseline
            r = run(ctx, round_no)
            runs.append(r)
            print(f"[{round_no}/{args.repeat}] {describe(r)}", flush=True)
    summary = summarize(args, endpoint, runs)
    if args.filter_share:
        summary["filter_share"] = run_filter_share(ctx)
    if args.per_worker_limits:
        summary["per_worker_limits"] = run_per_worker_limits(ctx)
    print_summary(summary)
    for row in summary.get("per_worker_limits", []):
        print(
            f"  per-worker limit {row['per_worker_limit']}: {row['msgs_per_s']:.1f} msg/s, "
            f"{row['mean_batch_records']:.1f} records per batch (BatchSize {row['batch_size']})"
        )
    if args.filter_share:
        print_filter_share(summary["filter_share"], "message")
    print(result_line(summary), flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
