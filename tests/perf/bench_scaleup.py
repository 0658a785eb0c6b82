"""SQS scale-up: how long the runtime takes from a backlog to ScalingConfig.MaximumConcurrency.

    .venv/bin/python -m tests.perf.bench_scaleup [--messages 5000] [--max-concurrency 20]
        [--sleep-ms 100] [--workers 2] [--sample-interval 0.1] [--endpoint URL]

Lambda starts an SQS mapping with five concurrent batches and adds more while messages are
there (esm-spec §5.1); how fast the runtime gets to its ceiling decides how fast a backlog that
built up while it was down (a deploy, an outage) is worked off. One run, against one emulator (a
ministack started here on a free port, or ``--endpoint``):

1. a fresh standard queue (VisibilityTimeout 60) is filled with N messages (``--messages``) of
   100 bytes from ``--fill-threads`` threads; not timed;
2. ``python -m runtime run`` starts with ``--workers`` worker processes, one function
   (:func:`tests.perf.handlers.sleep_env`: sleeps ``--sleep-ms`` per batch, so each batch holds
   a concurrency slot that long, and appends its start and end time to a file) and one mapping
   (BatchSize 10, ScalingConfig.MaximumConcurrency ``--max-concurrency``); the runtime's own
   scaling settings are its defaults (ESM_SCALING_*, unless ``--runtime-env`` says otherwise);
3. from the launch, a thread reads ``/metrics`` every ``--sample-interval`` s (0.1):
   ``lambda_concurrent_executions`` (handlers running, summed over the workers),
   ``esm_inflight_batches`` and ``esm_concurrency_limit``;
4. the drain is timed from ``/readyz`` answering 200 until the queue reports no message
   (visible or in flight) and ``lambda_deleted_events_total`` reaches N (polled every 0.2 s);
   SIGTERM must then end the runtime with 0.

Concurrency over time comes from the handlers' recorded intervals (exact: the number of
invocations running at each start), and, as a cross-check, from the sampled gauge (which can
miss short peaks between two samples). For each of 50 %, 90 % and 100 % of MaximumConcurrency
(rounded up to whole batches) the result gives the time from ``/readyz`` until that many
invocations first ran at once, by both measures, and when ``esm_concurrency_limit`` first
reached it. Negative times mean it happened before ``/readyz`` answered (the workers start
before the supervisor reports ready).

Lambda's documented ramp is modelled, not measured: five concurrent batches at once, then up to
300 more per minute (the current rate; 60 per minute before 2023), linearly:
``max(0, target - 5) / rate``. That is the best Lambda promises, from the moment its pollers
see the backlog. The ideal drain is N / (MaximumConcurrency x 10 / sleep), every slot busy
from the first second.

The emulator can hold the runtime below its ceiling: each ReceiveMessage and DeleteMessageBatch
scans the queue, and ministack serves ~1,100-1,300 messages/s in all, so with
MaximumConcurrency x 10 / sleep well above that (20 x 10 / 0.1 s = 2,000/s) batches wait on the
emulator rather than on the scaler. ``--sleep-ms`` trades the two: longer sleeps ask less of
the emulator. When the ceiling is never reached the times are null and the peak says how far
it got.

The exit code is 0 when the queue was drained and the runtime stopped cleanly (whatever the
figures: this is a measurement), 1 otherwise. The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

from tests.perf.bench_sqs import fresh_queue
from tests.perf.bench_sqs_fifo import Interval, busy_seconds, max_overlap, read_intervals
from tests.perf.common import (
    BATCH_SIZE,
    BODY_BYTES,
    BenchError,
    Runtime,
    cpu_text,
    drain,
    single_mapping_config,
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

HANDLER = "tests.perf.handlers.sleep_env"
SHARES = (0.5, 0.9, 1.0)  # of MaximumConcurrency
# Lambda, esm-spec §5.1: "starts processing five batches at a time with five concurrent
# invocations", then "up to 300 more concurrent invokes per minute" (60 per minute before).
LAMBDA_INITIAL = 5
LAMBDA_RATES_PER_MINUTE = {"current": 300, "before_2023": 60}
GAUGES = {
    "concurrent": "lambda_concurrent_executions",
    "inflight": "esm_inflight_batches",
    "limit": "esm_concurrency_limit",
}


# --------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    at: float  # perf_counter time of the read
    concurrent: float
    inflight: float
    limit: float


class Sampler:
    """A thread reading the runtime's concurrency gauges every ``interval`` s, from its launch
    (reads that fail while it starts are skipped) until :meth:`stop`."""

    def __init__(self, rt: Runtime, interval: float) -> None:
        self.samples: list[Sample] = []
        self._rt, self._interval = rt, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            at = time.perf_counter()
            with contextlib.suppress(OSError, BenchError):
                m = self._rt.metrics()
                self.samples.append(Sample(at, *(m.get(name, 0.0) for name in GAUGES.values())))
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))


# --------------------------------------------------------------------------- analysis


def targets(maximum: int) -> list[int]:
    """Concurrency levels of SHARES of ``maximum``, rounded up to whole batches."""
    return [math.ceil(share * maximum) for share in SHARES]


def first_reached(intervals: list[Interval], levels: list[int]) -> dict[int, float | None]:
    """For each level, the wall-clock time the recorded invocations first ran that many at once
    (None if never). One ending as another starts does not count as overlapping."""
    points = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals])
    out: dict[int, float | None] = dict.fromkeys(levels)
    current = 0
    for at, step in points:
        current += step
        for level in levels:
            if out[level] is None and current >= level:
                out[level] = at
    return out


def first_sampled(samples: list[Sample], attr: str, levels: list[int]) -> dict[int, float | None]:
    """For each level, the perf_counter time of the first sample whose ``attr`` reached it."""
    out: dict[int, float | None] = dict.fromkeys(levels)
    for s in samples:
        for level in levels:
            if out[level] is None and getattr(s, attr) >= level:
                out[level] = s.at
    return out


def lambda_seconds(level: int, per_minute: int) -> float:
    """Lambda's documented best case to ``level`` concurrent batches from a backlog's start."""
    return round(max(0, level - LAMBDA_INITIAL) * 60 / per_minute, 2)


def relative(times: dict[int, float | None], origin: float) -> dict[str, float | None]:
    return {str(k): None if t is None else round(t - origin, 3) for k, t in times.items()}


# --------------------------------------------------------------------------- the run


@dataclass
class ScaleupRun:
    messages: int
    maximum_concurrency: int
    sleep_ms: float
    workers: int
    levels: list[int]  # the concurrency targets: 50 %, 90 %, 100 % of the maximum
    # Seconds from /readyz to the first moment that many invocations ran at once, by level.
    handler_seconds: dict[str, float | None]
    sampled_seconds: dict[str, float | None]  # the same from lambda_concurrent_executions
    limit_seconds: dict[str, float | None]  # esm_concurrency_limit first at the level
    # The same from the first handler start (so without what happens before work begins).
    handler_seconds_from_first_invocation: dict[str, float | None]
    first_invocation_seconds: float  # /readyz to the first handler start (< 0: before ready)
    reached_maximum: bool
    concurrency_max: int  # most invocations at once (handler intervals)
    concurrency_max_sampled: float
    concurrency_avg: float  # time-weighted over the drain window (handler intervals)
    drain_seconds: float  # /readyz to the queue drained
    msgs_per_s: float
    ideal_drain_seconds: float  # N / (maximum x BatchSize / sleep)
    lambda_seconds: dict[str, dict[str, float]]  # rate name -> level -> seconds (modelled)
    remaining_at_ready: int
    invocations: int  # recorded by the handler
    records_handled: int  # messages in the recorded invocations
    msgs_per_batch: float
    deleted_metric: float
    function_errors: float
    polling_errors: float
    startup_seconds: float
    fill_seconds: float
    exit_code: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # [seconds from /readyz, lambda_concurrent_executions, esm_inflight_batches,
    #  esm_concurrency_limit] for every sample from the launch to the end of the drain.
    timeline: list[list[float]] = field(default_factory=list)


def run_scaleup(ctx: QueueContext) -> ScaleupRun:
    a = ctx.args
    n, maximum = a.messages, a.max_concurrency
    levels = targets(maximum)
    record_file = ctx.workdir / "invocations.jsonl"
    with fresh_queue(ctx.sqs, "scaleup", n, a.fill_threads) as (queue, fill_s):
        config = single_mapping_config(queue.arn, HANDLER, maximum)
        config["functions"]["bench"]["Environment"] = {
            "Variables": {"RECORD_FILE": str(record_file), "SLEEP_MS": f"{a.sleep_ms:g}"}
        }
        rt = Runtime(ctx.workdir, "scaleup", config, ctx.endpoint, a.workers, ctx.runtime_env)
        sampler = Sampler(rt, a.sample_interval)
        with rt.running() as launched:
            sampler.start()
            try:
                d = drain(rt, queue, n, a.timeout, a.stall_timeout, ctx.extra_pids)
            finally:
                sampler.stop()
            code = rt.stop_checked()

    intervals = read_intervals(record_file)
    if not intervals:
        raise BenchError(f"no invocation recorded in {record_file}")
    ready_wall = d.ready + d.wall_offset
    done_wall = d.done + d.wall_offset
    first_start = min(i.start for i in intervals)
    reached = first_reached(intervals, levels)
    samples = [s for s in sampler.samples if s.at <= d.done]
    seconds = d.done - d.ready
    handled = sum(len(i.records) for i in intervals)
    m = d.metrics
    return ScaleupRun(
        messages=n,
        maximum_concurrency=maximum,
        sleep_ms=a.sleep_ms,
        workers=a.workers,
        levels=levels,
        handler_seconds=relative(reached, ready_wall),
        sampled_seconds=relative(first_sampled(samples, "concurrent", levels), d.ready),
        limit_seconds=relative(first_sampled(samples, "limit", levels), d.ready),
        handler_seconds_from_first_invocation=relative(reached, first_start),
        first_invocation_seconds=round(first_start - ready_wall, 3),
        reached_maximum=reached[maximum] is not None,
        concurrency_max=max_overlap(intervals),
        concurrency_max_sampled=max((s.concurrent for s in samples), default=0.0),
        concurrency_avg=round(busy_seconds(intervals, ready_wall, done_wall) / seconds, 2),
        drain_seconds=round(seconds, 3),
        msgs_per_s=round(n / seconds, 1),
        ideal_drain_seconds=round(n / (maximum * BATCH_SIZE / (a.sleep_ms / 1000)), 3),
        lambda_seconds={
            name: {str(level): lambda_seconds(level, rate) for level in levels}
            for name, rate in LAMBDA_RATES_PER_MINUTE.items()
        },
        remaining_at_ready=d.remaining_at_ready,
        invocations=len(intervals),
        records_handled=handled,
        msgs_per_batch=round(handled / len(intervals), 2),
        deleted_metric=m.get("lambda_deleted_events_total", 0.0),
        function_errors=m.get("lambda_errors_total", 0.0),
        polling_errors=m.get("esm_polling_errors_total", 0.0),
        startup_seconds=round(d.ready - launched, 2),
        fill_seconds=round(fill_s, 2),
        exit_code=code,
        cpu_seconds=d.cpu,
        timeline=[[round(s.at - d.ready, 3), s.concurrent, s.inflight, s.limit] for s in samples],
    )


# --------------------------------------------------------------------------- output


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def print_summary(r: ScaleupRun) -> None:
    print()
    print(
        f"SQS scale-up: backlog of {r.messages} messages of {BODY_BYTES} B, BatchSize "
        f"{BATCH_SIZE}, MaximumConcurrency {r.maximum_concurrency}, handler sleeps "
        f"{r.sleep_ms:g} ms per batch, {r.workers} workers"
    )
    print(
        f"  {'concurrency':>11} {'handlers':>9} {'sampled':>9} {'limit':>9} "
        f"{'from 1st inv.':>13} {'Lambda 300/min':>15} {'Lambda 60/min':>14}"
    )
    for level in r.levels:
        k = str(level)
        share = round(100 * level / r.maximum_concurrency)
        print(
            f"  {f'{level} ({share} %)':>11} {_seconds(r.handler_seconds[k]):>9} "
            f"{_seconds(r.sampled_seconds[k]):>9} {_seconds(r.limit_seconds[k]):>9} "
            f"{_seconds(r.handler_seconds_from_first_invocation[k]):>13} "
            f"{_seconds(r.lambda_seconds['current'][k]):>15} "
            f"{_seconds(r.lambda_seconds['before_2023'][k]):>14}"
        )
    print(
        "  (seconds from /readyz; handlers = recorded invocation intervals, sampled = "
        "lambda_concurrent_executions, limit = esm_concurrency_limit; Lambda = its documented "
        f"ramp, modelled: {LAMBDA_INITIAL} at once, then linear)"
    )
    print(
        f"  first invocation {r.first_invocation_seconds:+.2f} s from /readyz; peak "
        f"{r.concurrency_max} (sampled {r.concurrency_max_sampled:g}); average over the drain "
        f"{r.concurrency_avg:.2f}; maximum {'reached' if r.reached_maximum else 'NOT reached'}"
    )
    print(
        f"  drain {r.drain_seconds:.2f} s from /readyz = {r.msgs_per_s:.0f} msg/s (ideal with "
        f"every slot busy: {r.ideal_drain_seconds:.2f} s); {r.remaining_at_ready} left at "
        f"ready; {r.invocations} invocations = {r.msgs_per_batch:.2f} msg/batch; errors "
        f"{r.function_errors:g}/{r.polling_errors:g}; start {r.startup_seconds:.2f} s; fill "
        f"{r.fill_seconds:.1f} s; exit code {r.exit_code}"
    )
    print(f"  CPU s in window: {cpu_text(r.cpu_seconds, r.drain_seconds)}")


# --------------------------------------------------------------------------- driver


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_scaleup",
        description="SQS scale-up from a backlog to MaximumConcurrency, against Lambda's ramp.",
    )
    p.add_argument("--messages", type=int, default=5000, help="backlog (messages)")
    p.add_argument(
        "--max-concurrency", type=int, default=20, help="ScalingConfig.MaximumConcurrency"
    )
    p.add_argument("--sleep-ms", type=float, default=100.0, help="handler sleep per batch")
    p.add_argument("--workers", type=int, default=2, help="runtime worker processes")
    p.add_argument(
        "--sample-interval", type=float, default=0.1, help="seconds between /metrics reads"
    )
    p.add_argument("--fill-threads", type=int, default=8)
    p.add_argument("--endpoint", help="use this emulator instead of starting a ministack")
    add_timeout_options(
        p,
        timeout_help="seconds the drain may take",
        stall_default=120.0,
        stall_help="seconds without progress before the run fails (> VisibilityTimeout)",
    )
    add_runtime_env_and_keep(p, keep_help="keep the work directory (logs, records)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if min(args.messages, args.workers, args.fill_threads) < 1:
        parser.error("--messages, --workers and --fill-threads must be >= 1")
    if not 2 <= args.max_concurrency <= 1000:
        parser.error("--max-concurrency must be within 2..1000 (ScalingConfig.MaximumConcurrency)")
    if args.sleep_ms < 0 or args.sample_interval <= 0:
        parser.error("--sleep-ms must be >= 0 and --sample-interval > 0")
    if args.sleep_ms >= 25_000:
        parser.error("--sleep-ms must stay under the function Timeout (30 s)")
    return run_main(
        "bench_scaleup",
        parser,
        args,
        "esm-bench-scaleup-",
        functools.partial(emulator, args.endpoint),
        _run,
    )


def _run(setup: Setup) -> bool:
    ctx = QueueContext.of(setup)
    a = ctx.args
    print(
        f"bench_scaleup: N={a.messages} max_concurrency={a.max_concurrency} "
        f"sleep_ms={a.sleep_ms:g} workers={a.workers} endpoint={ctx.endpoint} "
        f"workdir={ctx.workdir}",
        flush=True,
    )
    r = run_scaleup(ctx)
    print_summary(r)
    print(
        result_line(
            {"ok": True, "endpoint": ctx.endpoint, "runtime_env": ctx.runtime_env, **asdict(r)}
        ),
        flush=True,
    )
    return True


if __name__ == "__main__":
    sys.exit(main())
