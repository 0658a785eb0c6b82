"""bench_kafka's throughput phases (A: the runtime, then raw confluent-kafka consumers, on one
topic of N records) and its filter-share phase (C: A1 without and with a FilterCriteria
pattern)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from runtime.config.sources import SourceKind
from tests.perf.common import (
    FILTER_BODY_BYTES,
    POLL_SECONDS,
    BenchError,
    Runtime,
    cpu_delta,
    cpu_snapshot,
    cpu_text,
    filter_body,
    filter_pattern,
    filter_share_figures,
    filter_share_run,
    inprocess_filter_cost,
    with_filter,
)
from tests.perf.kafka_common import (
    PARTITIONS,
    UNUSED_AWS_ENDPOINT,
    Child,
    Context,
    consumer_config,
    create_topic,
    fill_topic,
    fresh_group,
    kafka_config,
)

NOOP_HANDLER = "tests.perf.handlers.noop"
CONSUME_BATCH = 1000
CONSUME_TIMEOUT = 0.1
# Records the runtime's consumer thread hands to the pipeline at a time (at most), as the
# in-process filter cross-check splits them.
KAFKA_DELIVERY_BATCH = 1000


# --------------------------------------------------------------------------- A1: runtime


@dataclass
class RuntimeRun:
    seconds: float  # /readyz to all committed
    records_per_s: float
    # From the first poll that saw a record consumed to all committed (no group join).
    seconds_no_join: float
    records_per_s_no_join: float
    # Between the first polls at or past 10 % and 90 % committed (no join, no commit lag).
    steady_records_per_s: float
    first_record_seconds: float  # /readyz to the first poll that saw a record consumed
    invoked_seconds: float  # /readyz to lambda_invoked_events_total reaching N
    startup_seconds: float  # launch to /readyz
    invocations: float
    invoked_metric: float
    committed_metric: float
    function_errors: float
    polling_errors: float
    exit_code: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def steady_rate(samples: list[tuple[float, float]], n: int) -> float:
    """Records/s between the first samples at or past 10 % and 90 % of n."""
    lo = next(((t, c) for t, c in samples if c >= 0.1 * n), None)
    hi = next(((t, c) for t, c in samples if c >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return 0.0
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def run_runtime_throughput(ctx: Context, topic: str) -> RuntimeRun:
    return _runtime_throughput(ctx, topic, "throughput")[0]


def _runtime_throughput(
    ctx: Context, topic: str, tag: str, pattern: str | None = None
) -> tuple[RuntimeRun, dict[str, float], float]:
    """A1 on ``topic``, with FilterCriteria ``pattern`` when given: the result, the runtime's
    metrics at the end of the window and the records it had polled at the window's first
    poll (consumed before the window, at most)."""
    a = ctx.args
    n = a.records
    config = kafka_config(ctx.bootstrap, topic, NOOP_HANDLER, a.batch_size, fresh_group("rt"))
    if pattern is not None:
        config = with_filter(config, pattern)
    rt = Runtime(ctx.workdir, tag, config, UNUSED_AWS_ENDPOINT, a.workers, ctx.env)
    with rt.running() as launched:
        t_ready = rt.wait_ready(60)
        watched = rt.watched(ctx.extra_pids)
        cpu0 = cpu_snapshot(watched)
        samples: list[tuple[float, float]] = []
        polled_first: float | None = None
        t_first: float | None = None
        t_invoked: float | None = None
        last_progress, last_count = time.monotonic(), -1.0
        next_poll = time.perf_counter()
        while True:
            rt.check_alive()
            polled_at = time.perf_counter()
            m = rt.metrics()
            committed = m.get("lambda_committed_events_total", 0.0)
            samples.append((polled_at, committed))
            if polled_first is None:
                polled_first = m.get("lambda_polled_events_total", 0.0)
            if t_first is None and m.get("lambda_polled_events_total", 0.0) > 0:
                t_first = polled_at
            if t_invoked is None and m.get("lambda_invoked_events_total", 0.0) >= n:
                t_invoked = polled_at
            if committed >= n:
                t_done = polled_at
                break
            now = time.monotonic()
            if committed != last_count:
                last_count, last_progress = committed, now
            if polled_at - t_ready > a.timeout or now - last_progress > a.stall_timeout:
                raise BenchError(
                    f"runtime committed {committed:g} of {n} records after "
                    f"{polled_at - t_ready:.0f}s\n{rt.log_tail()}"
                )
            next_poll += POLL_SECONDS
            time.sleep(max(0.0, next_poll - time.perf_counter()))
        cpu = cpu_delta(cpu0, cpu_snapshot(watched))
        m = rt.metrics()
        code = rt.stop_checked()
    assert t_first is not None and polled_first is not None
    seconds = t_done - t_ready
    no_join = t_done - t_first
    result = RuntimeRun(
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1),
        seconds_no_join=round(no_join, 3),
        records_per_s_no_join=round(n / no_join, 1) if no_join > 0 else 0.0,
        steady_records_per_s=round(steady_rate(samples, n), 1),
        first_record_seconds=round(t_first - t_ready, 3),
        invoked_seconds=round((t_invoked or t_done) - t_ready, 3),
        startup_seconds=round(t_ready - launched, 2),
        invocations=m.get("lambda_invocations_total", 0.0),
        invoked_metric=m.get("lambda_invoked_events_total", 0.0),
        committed_metric=m.get("lambda_committed_events_total", 0.0),
        function_errors=m.get("lambda_errors_total", 0.0),
        polling_errors=m.get("esm_polling_errors_total", 0.0),
        exit_code=code,
        cpu_seconds=cpu,
    )
    return result, m, polled_first


# --------------------------------------------------------------------------- A2, A3: raw loops


@dataclass
class RawRun:
    variant: str  # "raw" or "raw+format"
    seconds: float  # subscribe to the final commit
    records_per_s: float
    seconds_no_join: float  # first record to the final commit
    records_per_s_no_join: float
    join_seconds: float  # subscribe to the first record
    records: int
    errors: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def raw_throughput(
    send: Callable[..., None],
    bootstrap: str,
    topic: str,
    n: int,
    build: bool,
    extra: dict[str, Any],
    watch: dict[str, int],
    timeout: float,
) -> dict[str, Any]:
    """The raw consume loop (in a child process); its figures as a dict."""
    from runtime.sources.kafka_records import kafka_record

    c = Consumer(consumer_config(bootstrap, fresh_group("raw"), extra), logger=None)
    try:
        watched = {"raw": os.getpid(), **watch}
        got = errors = 0
        last: dict[int, int] = {}
        cpu0 = cpu_snapshot(watched)
        started = time.perf_counter()
        first_at: float | None = None
        c.subscribe([topic])
        while got < n:
            # Any, as in the runtime's consumer thread (the stubs make every field Optional).
            messages: list[Any] = c.consume(CONSUME_BATCH, CONSUME_TIMEOUT)
            if not messages:
                if time.perf_counter() - started > timeout:
                    raise BenchError(f"raw consumer got {got} of {n} records in {timeout:.0f}s")
                continue
            if first_at is None:
                first_at = time.perf_counter()
            if build:
                built = []
                for m in messages:
                    if m.error() is not None:
                        errors += 1
                        continue
                    built.append(
                        kafka_record(
                            m.topic(),
                            m.partition(),
                            m.offset(),
                            m.timestamp(),
                            m.key(),
                            m.value(),
                            m.headers(),
                        )
                    )
                    last[m.partition()] = m.offset()
                got += len(built)
            else:
                for m in messages:
                    if m.error() is not None:
                        errors += 1
                        continue
                    got += 1
                    last[m.partition()] = m.offset()
        offsets = [TopicPartition(topic, p, o + 1) for p, o in last.items()]
        c.commit(offsets=offsets, asynchronous=False)
        done_at = time.perf_counter()
        cpu = cpu_delta(cpu0, cpu_snapshot(watched))
    finally:
        c.close()
    assert first_at is not None
    return {
        "seconds": done_at - started,
        "seconds_no_join": done_at - first_at,
        "join_seconds": first_at - started,
        "records": got,
        "errors": errors,
        "cpu_seconds": cpu,
    }


def run_raw(ctx: Context, topic: str, build: bool) -> RawRun:
    a = ctx.args
    child = Child(
        raw_throughput,
        ctx.bootstrap,
        topic,
        a.records,
        build,
        ctx.extra_config,
        ctx.extra_pids,
        a.timeout,
    )
    try:
        value = child.expect("ok", a.timeout + 60)
    finally:
        child.close()
    n = int(value["records"])
    seconds, no_join = float(value["seconds"]), float(value["seconds_no_join"])
    return RawRun(
        variant="raw+format" if build else "raw",
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1),
        seconds_no_join=round(no_join, 3),
        records_per_s_no_join=round(n / no_join, 1) if no_join > 0 else 0.0,
        join_seconds=round(float(value["join_seconds"]), 3),
        records=n,
        errors=int(value["errors"]),
        cpu_seconds=dict(value["cpu_seconds"]),
    )


# --------------------------------------------------------------------------- filter share


def kafka_payloads(count: int) -> list[dict[str, Any]]:
    """Records as the Kafka source builds them (:func:`kafka_record` of a consumed message:
    no key, no headers, CREATE_TIME) with :func:`filter_body` values, for the in-process
    cross-check."""
    from runtime.sources.kafka_records import kafka_record

    return [
        kafka_record(
            "bench-fs",
            i % PARTITIONS,
            i,
            (1, 1_700_000_000_000 + i),
            None,
            filter_body(i).encode(),
            None,
        )
        for i in range(count)
    ]


def run_filter_share(ctx: Context) -> dict[str, Any]:
    """A1 twice on fresh topics of FILTER_BODY_BYTES JSON values (both filled first), without
    and with a pattern every record matches; the ``filter_share`` figures."""
    n = ctx.args.records
    pattern = filter_pattern("value")
    topics: dict[str, str] = {}
    for key in ("without", "with"):
        topics[key] = create_topic(ctx.bootstrap, PARTITIONS, f"bench-fs-{key}")
        fill_s = fill_topic(ctx.bootstrap, topics[key], n, filter_body)
        print(
            f"filled {topics[key]}: {n} records of {FILTER_BODY_BYTES} B in {fill_s:.2f} s "
            f"({n / fill_s:.0f} rec/s)",
            flush=True,
        )
    runs: dict[str, dict[str, Any]] = {}
    for key, with_pattern in (("without", None), ("with", pattern)):
        r, m, before = _runtime_throughput(ctx, topics[key], f"fs-{key}", with_pattern)
        print(f"[filter share, {key} filter]\n{describe_runtime(r)}", flush=True)
        runs[key] = filter_share_run(n, int(before), r.seconds, r.cpu_seconds, m)
    inprocess = inprocess_filter_cost(
        SourceKind.KAFKA, kafka_payloads(1000), pattern, KAFKA_DELIVERY_BATCH
    )
    return filter_share_figures(n, pattern, runs["without"], runs["with"], inprocess)


def describe_runtime(r: RuntimeRun) -> str:
    per_call = r.invoked_metric / r.invocations if r.invocations else 0.0
    return (
        f"runtime     {r.seconds:8.2f} s {r.records_per_s:10.1f} rec/s  (first record seen at "
        f"{r.first_record_seconds:.2f} s, then {r.records_per_s_no_join:.1f} rec/s; steady "
        f"{r.steady_records_per_s:.1f} rec/s; all invoked at {r.invoked_seconds:.2f} s; start "
        f"{r.startup_seconds:.2f} s; {r.invocations:g} invocations = {per_call:.1f} rec/batch; "
        f"errors {r.function_errors:g}/{r.polling_errors:g}; exit code {r.exit_code})\n"
        f"{'':12}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


def describe_raw(r: RawRun) -> str:
    return (
        f"{r.variant:<11} {r.seconds:8.2f} s {r.records_per_s:10.1f} rec/s  (first record at "
        f"{r.join_seconds:.2f} s, then {r.records_per_s_no_join:.1f} rec/s; {r.errors} errors)\n"
        f"{'':12}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )
