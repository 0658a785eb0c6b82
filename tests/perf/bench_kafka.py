"""Kafka throughput and latency: the runtime as a real process tree against raw confluent-kafka.

    .venv/bin/python -m tests.perf.bench_kafka [--records 1000000] [--workers 2]
        [--batch-size 1000] [--rate 2000] [--duration 20] [--bootstrap HOST:PORT] [--peers]

Both measurements run in one go against one broker (a Tansu started here on a free port with
in-memory storage, or ``--bootstrap``). Every consumer, the runtime's and the raw ones, uses a
fresh consumer group and the same librdkafka settings (session.timeout.ms 6000,
fetch.wait.max.ms 10, fetch.queue.backoff.ms 10 when this librdkafka knows it).

A. Throughput. A fresh topic of 8 partitions is filled with N records (``--records``) of 100
   bytes, round-robin over the partitions (confluent-kafka Producer, linger.ms 50,
   batch.num.messages 10000; not timed). Then, each from the start of the topic:

   1. runtime: ``python -m runtime run`` with ``--workers`` worker processes, one no-op function
      (:func:`tests.perf.handlers.noop`) and one mapping (BatchSize ``--batch-size``,
      MaximumBatchingWindowInSeconds 0, StartingPosition TRIM_HORIZON). Timed from ``/readyz``
      answering 200 until ``lambda_committed_events_total`` reaches N, polled every 0.2 s. That
      window holds the consumer group join and, at the end, up to one commit interval
      (ESM_KAFKA_COMMIT_INTERVAL_SECONDS, 1 s) plus one poll. Also reported: the rate from the
      first poll that saw a record consumed (``lambda_polled_events_total``), so without the
      join, and ``steady``, the rate between 10 % and 90 % committed.
   2. raw: in a separate process (so it shares no GIL), a confluent-kafka Consumer loops on
      ``consume(1000, 0.1)`` until it has N records, then commits once synchronously; timed from
      ``subscribe`` (so the join counts, as in 1) to the commit, and from its first record.
   3. raw+format: the same, also building each record's Lambda-format dict with
      :func:`runtime.sources.kafka_records.kafka_record` (base64 key and value, headers): the
      least a runtime must do per record.

   4. peers, with ``--peers``: the same job through peer frameworks, each in one process run
      by its own venv (``deploy/setup.sh --perf`` makes ``.peer-venv``): sentry-arroyo
      (StreamProcessor, RunTask(no-op) -> CommitOffsets, ONCE_PER_SECOND) and quixstreams
      (Application, at-least-once, default 5 s commit interval, update(no-op)), each from the
      start of the topic with a fresh group, timed like the raw loop (from subscribe, and from
      its first record) until the group's committed offsets reach the end of every partition;
      also the rate until the N-th record was processed, before the last commit.
      :mod:`tests.perf.kafka_peers` says how each is configured and why. Off by default: it
      needs that install and adds a minute or so at N=1M.

   ``ratio`` is runtime / raw with the join in both windows; ``ratio_no_join`` the same from
   each side's first record. The issue's goal: >= 0.5. Each peer's ``ratio`` and
   ``ratio_no_join`` (under ``peers`` in the RESULT) are runtime / that peer.

B. Latency (produce to handler). A fresh topic of 8 partitions; the runtime runs
   :func:`tests.perf.handlers.latency` (BatchSize ``--latency-batch-size``, 100;
   MaximumBatchingWindowInSeconds 0), which records ``now - record timestamp`` for every record.
   Once the runtime is ready and owns the 8 partitions, this process produces at a steady
   ``--rate`` for ``--duration`` seconds (linger.ms ``--linger-ms``, 20; the timestamps are
   CREATE_TIME, set by the producer when it is handed a record, so the linger is part of the
   latency), waits until every record is committed, and reports p50/p90/p99/max over the
   records created after ``--warmup`` (3 s). Why 20 ms: Tansu's in-memory storage spends CPU
   on every request in proportion to the batches a partition holds, so with a short linger
   (many tiny batches) its CPU climbs through the run until it saturates, and latencies grow to
   seconds even for the raw consumer (1 ms: > 1 core within 4 s; 5 ms: 0.35 -> 1.1 cores over
   20 s at 2000 rec/s; 20 ms: 0.15 -> 0.5).
   Then the same traffic on another fresh topic goes to a raw consumer in a separate process
   that ``poll()``s one message at a time (it returns as soon as one is there): what the
   broker and librdkafka allow. Timestamps have millisecond resolution, so each latency reads
   up to 1 ms high.

C. With ``--filter-share``, after A and B: A1 twice more, each on a fresh topic of 8 partitions
   holding N records whose values are 1 KB of JSON
   (``{"a": "x", "b": 42, "c": "abcdef", "n": i, "pad": "xx..."}``; both topics are filled
   before either run): once without FilterCriteria and once with
   ``{"value": {"a": ["x"], "b": [{"numeric": [">", 10]}], "c": [{"prefix": "ab"}]}}``, which
   every record matches, so the handler does the same work. The workers' CPU seconds in each
   window give CPU µs per record without and with filtering and the share of the runtime's CPU
   spent filtering, (with - without) / with; ``RecordFilter`` timed in this process on the same
   kind of records (decode + match) cross-checks the difference. FilteredOutEventCount must stay
   0. The figures go under ``filter_share`` in the RESULT. A and B keep their 100 B records.

CPU seconds of each process (supervisor, workers, this process, the broker when started here,
``other`` for the rest of the machine) are read from /proc over each timed window.

The exit code is 0 when every phase completed (whatever the figures: this is a measurement) and
1 when one failed. The last line is ``RESULT {json}`` with every figure.

This module holds the options, the order of the phases and the summary; the phases are in
:mod:`tests.perf.kafka_throughput` (A, C) and :mod:`tests.perf.kafka_latency` (B), what they
share in :mod:`tests.perf.kafka_common`.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import asdict
from typing import Any

from tests.perf.common import BODY_BYTES, print_filter_share
from tests.perf.driver import (
    Setup,
    add_runtime_env_and_keep,
    add_timeout_options,
    broker,
    result_line,
    run_main,
)
from tests.perf.kafka_common import (
    EXTRA_CONSUMER_CONFIG,
    PARTITIONS,
    Context,
    accepted_extra_config,
    create_topic,
    fill_topic,
)
from tests.perf.kafka_latency import (
    LatencyRun,
    describe_latency,
    run_raw_latency,
    run_runtime_latency,
)
from tests.perf.kafka_peer_runs import missing_peers, peers_summary, run_peers
from tests.perf.kafka_throughput import (
    RawRun,
    RuntimeRun,
    describe_raw,
    describe_runtime,
    run_filter_share,
    run_raw,
    run_runtime_throughput,
)

THROUGHPUT_GOAL = 0.5  # runtime / raw
LATENCY_GOAL_P99_MS = 50.0


# --------------------------------------------------------------------------- output


def summarize(
    ctx: Context,
    fill_s: float,
    rt: RuntimeRun,
    raw: RawRun,
    fmt: RawRun,
    lat: LatencyRun,
    raw_lat: LatencyRun,
) -> dict[str, Any]:
    a = ctx.args
    ratio = rt.records_per_s / raw.records_per_s
    ratio_no_join = rt.records_per_s_no_join / raw.records_per_s_no_join
    return {
        "ok": True,
        "records": a.records,
        "body_bytes": BODY_BYTES,
        "partitions": PARTITIONS,
        "batch_size": a.batch_size,
        "latency_batch_size": a.latency_batch_size,
        "workers": a.workers,
        "bootstrap": ctx.bootstrap,
        "runtime_env": ctx.env,
        "fill_seconds": round(fill_s, 2),
        "runtime_records_per_s": rt.records_per_s,
        "runtime_records_per_s_no_join": rt.records_per_s_no_join,
        "runtime_steady_records_per_s": rt.steady_records_per_s,
        "raw_records_per_s": raw.records_per_s,
        "raw_records_per_s_no_join": raw.records_per_s_no_join,
        "raw_format_records_per_s": fmt.records_per_s,
        "raw_format_records_per_s_no_join": fmt.records_per_s_no_join,
        "ratio": round(ratio, 3),
        "ratio_no_join": round(ratio_no_join, 3),
        "ratio_format": round(rt.records_per_s / fmt.records_per_s, 3),
        "ratio_format_no_join": round(rt.records_per_s_no_join / fmt.records_per_s_no_join, 3),
        "throughput_goal": THROUGHPUT_GOAL,
        "throughput_goal_met": ratio >= THROUGHPUT_GOAL,
        "throughput_goal_met_no_join": ratio_no_join >= THROUGHPUT_GOAL,
        "latency_p50_ms": lat.p50_ms,
        "latency_p90_ms": lat.p90_ms,
        "latency_p99_ms": lat.p99_ms,
        "latency_max_ms": lat.max_ms,
        "raw_latency_p50_ms": raw_lat.p50_ms,
        "raw_latency_p90_ms": raw_lat.p90_ms,
        "raw_latency_p99_ms": raw_lat.p99_ms,
        "raw_latency_max_ms": raw_lat.max_ms,
        "latency_goal_p99_ms": LATENCY_GOAL_P99_MS,
        "latency_goal_met": lat.p99_ms <= LATENCY_GOAL_P99_MS,
        "runtime": asdict(rt),
        "raw": asdict(raw),
        "raw_format": asdict(fmt),
        "latency": asdict(lat),
        "raw_latency": asdict(raw_lat),
    }


def print_summary(s: dict[str, Any]) -> None:
    print()
    print(
        f"Kafka throughput: N={s['records']} records of {s['body_bytes']} B on "
        f"{s['partitions']} partitions, BatchSize={s['batch_size']}, workers={s['workers']}"
    )
    print(f"  {'':12} {'with join':>12} {'no join':>12}  rec/s")
    for label, key in (("runtime", "runtime"), ("raw", "raw"), ("raw+format", "raw_format")):
        print(
            f"  {label:<12} {s[key + '_records_per_s']:>12.1f} "
            f"{s[key + '_records_per_s_no_join']:>12.1f}"
        )
    peers: dict[str, dict[str, Any]] = s.get("peers", {})
    for name, p in peers.items():
        print(f"  {name:<12} {p['records_per_s']:>12.1f} {p['records_per_s_no_join']:>12.1f}")
    print(f"  runtime steady (10-90 % committed): {s['runtime_steady_records_per_s']:.1f} rec/s")
    goal = s["throughput_goal"]
    print(
        f"  ratio runtime/raw {s['ratio']:.3f} with join "
        f"({'met' if s['throughput_goal_met'] else 'NOT met'}), {s['ratio_no_join']:.3f} "
        f"without ({'met' if s['throughput_goal_met_no_join'] else 'NOT met'}); goal >= {goal}"
    )
    print(
        f"  ratio runtime/raw+format {s['ratio_format']:.3f} with join, "
        f"{s['ratio_format_no_join']:.3f} without"
    )
    for name, p in peers.items():
        print(
            f"  ratio runtime/{name} {p['ratio']:.3f} with join, {p['ratio_no_join']:.3f} "
            f"without ({name} {p['version']}: all processed at {p['records_per_s_processed']:.1f} "
            f"rec/s after its first record, before its last commit)"
        )
    lat = s["latency"]
    print(
        f"Kafka latency, produce to handler: {lat['rate']:g} rec/s for {lat['duration']:g} s, "
        f"BatchSize={s['latency_batch_size']}, warm-up {lat['warmup']:g} s, "
        f"{lat['measured']} records measured"
    )
    verdict = "met" if s["latency_goal_met"] else "NOT met"
    for label, prefix in (("runtime", "latency"), ("raw poll()", "raw_latency")):
        print(
            f"  {label:<11} p50 {s[prefix + '_p50_ms']:6.1f} ms  p90 {s[prefix + '_p90_ms']:6.1f} "
            f"ms  p99 {s[prefix + '_p99_ms']:6.1f} ms  max {s[prefix + '_max_ms']:6.1f} ms"
        )
    print(f"  runtime goal p99 <= {s['latency_goal_p99_ms']:g} ms: {verdict}")


# --------------------------------------------------------------------------- driver


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.perf.bench_kafka",
        description="Kafka throughput (runtime vs raw confluent-kafka) and latency.",
    )
    p.add_argument("--records", type=int, default=1_000_000, help="records for throughput (N)")
    p.add_argument("--workers", type=int, default=2, help="runtime worker processes")
    p.add_argument("--batch-size", type=int, default=1000, help="BatchSize for throughput")
    p.add_argument("--rate", type=float, default=2000.0, help="records/s for latency")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of latency traffic")
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="latency: seconds of traffic left out (at most half of --duration)",
    )
    p.add_argument("--latency-batch-size", type=int, default=100, help="BatchSize for latency")
    p.add_argument(
        "--linger-ms",
        type=float,
        default=20.0,
        help="latency producer's linger.ms (shorter ones overload Tansu: see the module doc)",
    )
    p.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    p.add_argument(
        "--peers",
        action="store_true",
        help="also run the peer frameworks (sentry-arroyo, quixstreams) on the throughput topic "
        "(needs deploy/setup.sh --perf)",
    )
    add_timeout_options(
        p,
        timeout_help="seconds a phase may take",
        stall_default=60.0,
        stall_help="seconds without a committed record before the runtime phase fails",
    )
    add_runtime_env_and_keep(
        p,
        keep_help="keep the work directory (logs, records)",
        filter_share_help="also run A1 without and with a FilterCriteria pattern every record "
        "matches, on 1 KB JSON values, and report the share of worker CPU spent filtering",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.records < 1 or args.workers < 1:
        parser.error("--records and --workers must be >= 1")
    if not 1 <= args.batch_size <= 10000 or not 1 <= args.latency_batch_size <= 10000:
        parser.error("--batch-size and --latency-batch-size must be within 1..10000")
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.linger_ms < 0:
        parser.error("--rate and --duration must be > 0, --warmup and --linger-ms >= 0")
    if args.peers and (missing := missing_peers()):
        parser.error(f"--peers: no venv for {', '.join(missing)}: run deploy/setup.sh --perf")
    return run_main(
        "bench_kafka",
        parser,
        args,
        "esm-bench-kafka-",
        functools.partial(broker, args.bootstrap),
        _run,
    )


def _run(setup: Setup) -> bool:
    args, bootstrap, workdir = setup.args, setup.server, setup.workdir
    extra = accepted_extra_config(bootstrap)
    ctx = Context.of(setup, extra)
    warmup = min(args.warmup, args.duration / 2)
    print(
        f"bench_kafka: N={args.records} workers={args.workers} batch_size={args.batch_size} "
        f"rate={args.rate:g} duration={args.duration:g} warmup={warmup:g} "
        f"bootstrap={bootstrap} workdir={workdir}"
        + (" filter-share" if args.filter_share else "")
        + (" peers" if args.peers else ""),
        flush=True,
    )
    if not extra:
        print(f"  note: librdkafka rejects {EXTRA_CONSUMER_CONFIG}; not used", flush=True)
    print(f"  runtime env: {ctx.env}", flush=True)
    topic = create_topic(bootstrap, PARTITIONS, "bench-tp")
    fill_s = fill_topic(bootstrap, topic, args.records)
    print(
        f"filled {topic}: {args.records} records in {fill_s:.2f} s "
        f"({args.records / fill_s:.0f} rec/s)",
        flush=True,
    )
    rt = run_runtime_throughput(ctx, topic)
    print(describe_runtime(rt), flush=True)
    raw = run_raw(ctx, topic, build=False)
    print(describe_raw(raw), flush=True)
    fmt = run_raw(ctx, topic, build=True)
    print(describe_raw(fmt), flush=True)
    peers = run_peers(ctx, topic) if args.peers else []
    lat = run_runtime_latency(ctx, warmup)
    print(describe_latency(lat), flush=True)
    raw_lat = run_raw_latency(ctx, warmup)
    print(describe_latency(raw_lat), flush=True)
    summary = summarize(ctx, fill_s, rt, raw, fmt, lat, raw_lat)
    if peers:
        summary["peers"] = peers_summary(rt, peers)
    if args.filter_share:
        summary["filter_share"] = run_filter_share(ctx)
    print_summary(summary)
    if args.filter_share:
        print_filter_share(summary["filter_share"], "record")
    print(result_line(summary), flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
