"""SQS FIFO throughput and concurrency: how far message groups let the runtime scale out.

    .venv/bin/python -m tests.perf.bench_sqs_fifo [--messages 3000] [--groups 1,10,100]
        [--max-concurrency 10] [--workers 2]

For each group count G of ``--groups``, against one emulator (started here on a free port, or
``--endpoint``):

1. a fresh FIFO queue (VisibilityTimeout 60, an explicit MessageDeduplicationId per message) is
   filled with N messages of about 100 bytes, message i in group ``g{i % G}`` (round-robin),
   sent in order from one thread so each group's order is the send order (not timed);
2. ``python -m runtime run`` starts with one function (:func:`tests.perf.handlers.sleep_10ms`,
   which sleeps 10 ms per batch and records its start and end times) and one mapping (BatchSize
   10, ScalingConfig.MaximumConcurrency = --max-concurrency);
3. timed from ``/readyz`` answering 200 until the queue reports no message (visible or in flight)
   and ``lambda_deleted_events_total`` reaches N, polled every 0.2 s; then SIGTERM must end the
   runtime with 0.

A FIFO queue hands out a message group to one consumer at a time, so at most min(G,
MaximumConcurrency) batches can run at once: that is the ceiling. The achieved concurrency comes
from the recorded invocation intervals: its time-weighted average over the span from the first
start to the last end (handler time only: receive, dispatch and delete happen outside the
intervals, so even a perfect runtime stays a little under the ceiling), and the most invocations
that overlapped. The records also check order: within each group, every message once and in send
order, and never two invocations of one group at the same time.

The exit code is 0 when every run drained and kept order (whatever the figures: this is a
measurement), 1 otherwise. The last line is ``RESULT {json}`` with every figure.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.perf.common import (
    BATCH_SIZE,
    BODY_BYTES,
    VISIBILITY_TIMEOUT,
    BenchError,
    Runtime,
    cpu_text,
    drain,
    make_body,
    send_entries,
    single_mapping_config,
    temporary_queue,
    wait_filled,
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
from tests.support.aws import Queue

HANDLER = "tests.perf.handlers.sleep_10ms"
HANDLER_SLEEP_S = 0.010


# --------------------------------------------------------------------------- fill


def fill_fifo(queue: Queue, n: int, groups: int) -> float:
    """Send n messages round-robin over ``groups`` groups, in order; return the seconds it took.

    One thread: concurrent SendMessageBatch calls could swap two batches of one group.
    """
    started = time.perf_counter()
    for first in range(0, n, 10):
        send_entries(
            queue,
            [
                {
                    "Id": str(i),
                    "MessageBody": make_body(i),
                    "MessageGroupId": f"g{i % groups}",
                    "MessageDeduplicationId": str(i),
                }
                for i in range(first, min(first + 10, n))
            ],
        )
    wait_filled(queue, n)
    return time.perf_counter() - started


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Interval:
    pid: int
    start: float
    end: float
    records: list[tuple[str, int]]  # (MessageGroupId, n) in batch order


def read_intervals(path: Path) -> list[Interval]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            recs = [(str(g), int(n)) for g, n in d["records"]]
            out.append(Interval(int(d["pid"]), float(d["start"]), float(d["end"]), recs))
    out.sort(key=lambda i: i.start)
    return out


def max_overlap(intervals: list[Interval]) -> int:
    """Most intervals open at the same moment (one ending as another starts does not count)."""
    points = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def busy_seconds(intervals: list[Interval], lo: float, hi: float) -> float:
    """Sum of the intervals' lengths within [lo, hi]."""
    return sum(max(0.0, min(i.end, hi) - max(i.start, lo)) for i in intervals)


def order_problems(intervals: list[Interval], n: int, groups: int) -> list[str]:
    """Every way the records break FIFO: a message missing or seen twice, a group's messages out
    of send order, two invocations of one group overlapping. Empty when all is well."""
    problems: list[str] = []
    seen: dict[int, int] = defaultdict(int)
    per_group: dict[str, list[int]] = defaultdict(list)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for inv in intervals:  # in start order
        for g in dict.fromkeys(g for g, _ in inv.records):
            spans[g].append((inv.start, inv.end))
        for g, i in inv.records:
            seen[i] += 1
            per_group[g].append(i)
            if g != f"g{i % groups}":
                problems.append(f"message {i} arrived in group {g}, sent in g{i % groups}")
    missing = [i for i in range(n) if i not in seen]
    if missing:
        problems.append(f"{len(missing)} messages never reached the handler, e.g. {missing[:5]}")
    twice = sorted(i for i, c in seen.items() if c > 1)
    if twice:
        problems.append(f"{len(twice)} messages reached the handler more than once: {twice[:5]}")
    for g, got in sorted(per_group.items()):
        bad = [(a, b) for a, b in itertools.pairwise(got) if b <= a]
        if bad:
            problems.append(f"group {g} out of order ({len(bad)} times), first {bad[0]}")
    for g, ss in sorted(spans.items()):
        clash = [(a, b) for a, b in itertools.pairwise(ss) if b[0] < a[1]]
        if clash:
            problems.append(f"group {g}: {len(clash)} invocations overlapped the previous one")
    return problems


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    groups: int
    seconds: float
    msgs_per_s: float
    ceiling: int
    # Time-weighted average of running invocations from the first start to the last end.
    concurrency_avg: float
    concurrency_max: int
    ratio: float  # concurrency_avg / ceiling
    # The same average over the timed window (/readyz to drained).
    concurrency_avg_window: float
    # Throughput if every slot of the ceiling were always sleeping: ceiling * BatchSize / 10 ms.
    bound_msgs_per_s: float
    fill_seconds: float
    startup_seconds: float
    remaining_at_ready: int
    invocations: int
    msgs_per_batch: float
    pids: int
    order_problems: list[str]
    invocations_metric: float | None = None
    deleted_metric: float | None = None
    function_errors: float | None = None
    polling_errors: float | None = None
    ack_failures: float | None = None
    exit_code: int | None = None
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def run_groups(ctx: QueueContext, groups: int) -> RunResult:
    a = ctx.args
    n = a.messages
    record_file = ctx.workdir / f"invocations-g{groups}.jsonl"
    create = {"visibility_timeout": VISIBILITY_TIMEOUT, "fifo": True}
    with temporary_queue(ctx.sqs, f"bench-fifo-g{groups}", **create) as queue:
        fill_s = fill_fifo(queue, n, groups)
        config = single_mapping_config(queue.arn, HANDLER, a.max_concurrency)
        config["functions"]["bench"]["Environment"] = {
            "Variables": {"RECORD_FILE": str(record_file)}
        }
        rt = Runtime(ctx.workdir, f"g{groups}", config, ctx.endpoint, a.workers, ctx.runtime_env)
        with rt.running() as launched:
            d = drain(rt, queue, n, a.timeout, a.stall_timeout, ctx.extra_pids)
            code = rt.stop_checked()

    m = d.metrics
    intervals = read_intervals(record_file)
    if not intervals:
        raise BenchError(f"no invocation recorded in {record_file}")
    first = min(i.start for i in intervals)
    last = max(i.end for i in intervals)
    span = last - first
    ready_wall, done_wall = d.ready + d.wall_offset, d.done + d.wall_offset
    seconds = d.done - d.ready
    ceiling = min(groups, a.max_concurrency)
    avg = busy_seconds(intervals, first, last) / span if span > 0 else 0.0
    avg_window = busy_seconds(intervals, ready_wall, done_wall) / seconds if seconds > 0 else 0.0
    return RunResult(
        groups=groups,
        seconds=round(seconds, 3),
        msgs_per_s=round(n / seconds, 1),
        ceiling=ceiling,
        concurrency_avg=round(avg, 2),
        concurrency_max=max_overlap(intervals),
        ratio=round(avg / ceiling, 3),
        concurrency_avg_window=round(avg_window, 2),
        bound_msgs_per_s=round(ceiling * BATCH_SIZE / HANDLER_SLEEP_S, 1),
        fill_seconds=round(fill_s, 2),
        startup_seconds=round(d.ready - launched, 2),
        remaining_at_ready=d.remaining_at_ready,
        invocations=len(intervals),
        msgs_per_batch=round(sum(len(i.records) for i in intervals) / len(intervals), 2),
        pids=len({i.pid for i in intervals}),
        order_problems=order_problems(intervals, n, groups),
        invocations_metric=m.get("lambda_invocations_total", 0.0),
        deleted_metric=m.get("lambda_deleted_events_total", 0.0),
        function_errors=m.get("lambda_errors_total", 0.0),
        polling_errors=m.get("esm_polling_errors_total", 0.0),
        ack_failures=m.get("esm_ack_failures_total", 0.0),
        exit_code=code,
        cpu_seconds=d.cpu,
    )


# --------------------------------------------------------------------------- output


def describe(r: RunResult) -> str:
    order = "order ok" if not r.order_problems else "ORDER BROKEN: " + "; ".join(r.order_problems)
    return (
        f"G={r.groups:<4} {r.seconds:8.2f} s {r.msgs_per_s:9.1f} msg/s  "
        f"concurrency avg {r.concurrency_avg:.2f} (window {r.concurrency_avg_window:.2f}) "
        f"max {r.concurrency_max} / ceiling {r.ceiling}\n"
        f"{'':10}start {r.startup_seconds:.2f} s; {r.remaining_at_ready} left at ready; "
        f"{r.invocations} invocations = {r.msgs_per_batch:.2f} msg/batch in {r.pids} worker(s); "
        f"errors {r.function_errors:g}/{r.polling_errors:g}/{r.ack_failures:g}; "
        f"fill {r.fill_seconds:.1f} s; exit code {r.exit_code}; {order}\n"
        f"{'':10}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


def summarize(args: argparse.Namespace, endpoint: str, runs: list[RunResult]) -> dict[str, Any]:
    return {
        "ok": all(not r.order_problems for r in runs),
        "messages": args.messages,
        "body_bytes": BODY_BYTES,
        "batch_size": BATCH_SIZE,
        "handler_sleep_ms": HANDLER_SLEEP_S * 1000,
        "groups": [r.groups for r in runs],
        "max_concurrency": args.max_concurrency,
        "workers": args.workers,
        "endpoint": endpoint,
        "runs": [asdict(r) for r in runs],
    }


def print_summary(s: dict[str, Any]) -> None:
    print()
    print(
        f"SQS FIFO throughput: N={s['messages']} messages of {s['body_bytes']} B, "
        f"BatchSize={s['batch_size']}, handler sleeps {s['handler_sleep_ms']:g} ms per batch, "
        f"MaximumConcurrency={s['max_concurrency']}, workers={s['workers']}"
    )
    head = (
        f"  {'groups':>6} {'seconds':>8} {'msg/s':>9} {'bound':>9} {'batches':>8} "
        f"{'msg/batch':>9} {'conc avg':>8} {'conc max':>8} {'ceiling':>7} "
        f"{'avg/ceiling':>11}  order"
    )
    print(head)
    for r in s["runs"]:
        print(
            f"  {r['groups']:>6} {r['seconds']:>8.2f} {r['msgs_per_s']:>9.1f} "
            f"{r['bound_msgs_per_s']:>9.0f} {r['invocations']:>8} {r['msgs_per_batch']:>9.2f} "
            f"{r['concurrency_avg']:>8.2f} {r['concurrency_max']:>8} {r['ceiling']:>7} "
            f"{r['ratio']:>11.3f}  {'ok' if not r['order_problems'] else 'BROKEN'}"
        )
    print(
        "  bound = ceiling x BatchSize / 10 ms; conc avg = time-weighted over first start to "
        "last end of the recorded handler intervals; ceiling = min(groups, MaximumConcurrency)"
    )


# --------------------------------------------------------------------------- driver


def _groups(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        msg = f"--groups wants integers like 1,10,100, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--groups wants positive integers, got {text!r}")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_sqs_fifo",
        description="SQS FIFO throughput and concurrency by number of message groups.",
    )
    p.add_argument("--messages", type=int, default=3000, help="messages per run (N)")
    p.add_argument(
        "--groups",
        type=_groups,
        default=[1, 10, 100],
        help="comma-separated message group counts, one run each (default 1,10,100)",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=10,
        help="ScalingConfig.MaximumConcurrency of the mapping (2..1000)",
    )
    p.add_argument("--workers", type=int, default=2, help="runtime worker processes")
    p.add_argument("--endpoint", help="use this emulator instead of starting a ministack")
    add_timeout_options(
        p,
        timeout_help="seconds a run may take",
        stall_default=150.0,
        stall_help="seconds without progress before a run fails (> VisibilityTimeout)",
    )
    add_runtime_env_and_keep(p, keep_help="keep the work directory (logs, records)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.messages < 1 or args.workers < 1:
        parser.error("--messages and --workers must be >= 1")
    if not 2 <= args.max_concurrency <= 1000:
        parser.error("--max-concurrency must be within 2..1000 (ScalingConfig.MaximumConcurrency)")
    return run_main(
        "bench_sqs_fifo",
        parser,
        args,
        "esm-bench-fifo-",
        functools.partial(emulator, args.endpoint),
        _run,
    )


def _run(setup: Setup) -> bool:
    ctx = QueueContext.of(setup)
    args, endpoint = ctx.args, ctx.endpoint
    print(
        f"bench_sqs_fifo: N={args.messages} groups={','.join(map(str, args.groups))} "
        f"max_concurrency={args.max_concurrency} workers={args.workers} "
        f"endpoint={endpoint} workdir={ctx.workdir}",
        flush=True,
    )
    runs: list[RunResult] = []
    for groups in args.groups:
        r = run_groups(ctx, groups)
        runs.append(r)
        print(describe(r), flush=True)
    summary = summarize(args, endpoint, runs)
    print_summary(summary)
    if not summary["ok"]:
        print(f"bench_sqs_fifo: ORDER BROKEN; records kept in {ctx.workdir}", file=sys.stderr)
    print(result_line(summary), flush=True)
    return bool(summary["ok"])


if __name__ == "__main__":
    sys.exit(main())
