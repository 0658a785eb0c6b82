"""bench_kafka's latency phase (B): steady traffic produced here, timed from each record's
CREATE_TIME to the runtime's handler, then to a raw poll() loop."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer

from tests.perf.common import (
    POLL_SECONDS,
    BenchError,
    Runtime,
    cpu_delta,
    cpu_snapshot,
    cpu_text,
)
from tests.perf.kafka_common import (
    ASSIGN_TIMEOUT,
    PARTITIONS,
    UNUSED_AWS_ENDPOINT,
    Child,
    Context,
    assigned_partitions,
    consumer_config,
    create_topic,
    fresh_group,
    kafka_config,
    produce_steady,
)

LATENCY_HANDLER = "tests.perf.handlers.latency"
_T = TypeVar("_T")


# --------------------------------------------------------------------------- B: latency


@dataclass
class LatencyRun:
    consumer: str  # "runtime" or "raw poll()"
    rate: float  # asked
    achieved_rate: float  # produced / production seconds
    produced: int
    duration: float
    warmup: float
    measured: int  # records created after the warm-up
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    assign_seconds: float  # ready (or subscribe) to every partition owned
    behind_max_ms: float  # most the producer fell behind its schedule
    invocations: int | None = None
    records_per_batch: float | None = None
    exit_code: int | None = None
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..1)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_figures(
    records: list[tuple[float, float]], produced: int, start_ms: float, warmup: float
) -> dict[str, Any]:
    """Percentiles of the latencies of records created ``warmup`` seconds after start_ms."""
    if len(records) < produced:
        raise BenchError(f"the consumer saw {len(records)} records of {produced}")
    cutoff = start_ms + warmup * 1000
    lat = sorted(x for ts, x in records if ts >= cutoff)
    if not lat:
        raise BenchError("no record was created after the warm-up")
    return {
        "measured": len(lat),
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p90_ms": round(percentile(lat, 0.90), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "max_ms": round(lat[-1], 2),
        "mean_ms": round(sum(lat) / len(lat), 2),
    }


def read_latencies(path: Path) -> tuple[list[tuple[float, float]], int]:
    """([(timestamp ms, latency ms)], invocations) from the handler's record file."""
    out: list[tuple[float, float]] = []
    invocations = 0
    if not path.exists():
        return out, 0
    for line in path.read_text().splitlines():
        if line.strip():
            invocations += 1
            out.extend((float(ts), float(lat)) for ts, lat in json.loads(line)["records"])
    return out, invocations


@dataclass(frozen=True)
class Traffic:
    """The steady traffic of one latency measurement (:func:`produce_steady`)."""

    produced: int
    start_ms: float  # wall-clock ms when production started
    seconds: float  # how long production took
    behind_ms: float  # the most the producer fell behind its schedule
    cpu: dict[str, float]  # CPU seconds of the watched processes, first produce to the end


def steady_traffic(
    ctx: Context, topic: str, watched: dict[str, int], consumed: Callable[[int], _T]
) -> tuple[Traffic, _T]:
    """Produce --rate records/s for --duration seconds to ``topic``, then ``consumed(produced)``
    (which waits until the consumer had them all); the CPU time of ``watched`` covers both."""
    a = ctx.args
    cpu0 = cpu_snapshot(watched)
    produced, start_ms, seconds, behind = produce_steady(
        ctx.bootstrap, topic, a.rate, a.duration, a.linger_ms
    )
    value = consumed(produced)
    cpu = cpu_delta(cpu0, cpu_snapshot(watched))
    return Traffic(produced, start_ms, seconds, behind, cpu), value


def latency_run(
    ctx: Context,
    consumer: str,
    warmup: float,
    traffic: Traffic,
    records: list[tuple[float, float]],
    assign_seconds: float,
) -> LatencyRun:
    """The figures of one consumer's latencies ([(timestamp ms, latency ms)]) of ``traffic``."""
    a = ctx.args
    return LatencyRun(
        consumer=consumer,
        rate=a.rate,
        achieved_rate=round(traffic.produced / traffic.seconds, 1),
        produced=traffic.produced,
        duration=a.duration,
        warmup=warmup,
        **latency_figures(records, traffic.produced, traffic.start_ms, warmup),
        assign_seconds=round(assign_seconds, 2),
        behind_max_ms=round(traffic.behind_ms, 1),
        cpu_seconds=traffic.cpu,
    )


def run_runtime_latency(ctx: Context, warmup: float) -> LatencyRun:
    a = ctx.args
    topic = create_topic(ctx.bootstrap, PARTITIONS, "bench-lat")
    record_file = ctx.workdir / "latency.jsonl"
    config = kafka_config(
        ctx.bootstrap,
        topic,
        LATENCY_HANDLER,
        a.latency_batch_size,
        fresh_group("lat"),
        {"RECORD_FILE": str(record_file)},
    )
    rt = Runtime(ctx.workdir, "latency", config, UNUSED_AWS_ENDPOINT, a.workers, ctx.env)
    with rt.running():
        t_ready = rt.wait_ready(60)
        deadline = time.monotonic() + ASSIGN_TIMEOUT
        while (owned := assigned_partitions(rt)) < PARTITIONS:
            rt.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"runtime owns {owned} of {PARTITIONS} partitions {ASSIGN_TIMEOUT:.0f}s "
                    f"after ready\n{rt.log_tail()}"
                )
            time.sleep(0.1)
        assign_seconds = time.perf_counter() - t_ready

        def committed(produced: int) -> None:
            deadline = time.monotonic() + 120
            while rt.metrics().get("lambda_committed_events_total", 0.0) < produced:
                rt.check_alive()
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"runtime did not commit the {produced} records 120 s after the last "
                        f"was produced\n{rt.log_tail()}"
                    )
                time.sleep(POLL_SECONDS)

        traffic, _ = steady_traffic(ctx, topic, rt.watched(ctx.extra_pids), committed)
        code = rt.stop_checked()
    records, invocations = read_latencies(record_file)
    return dataclasses.replace(
        latency_run(ctx, "runtime", warmup, traffic, records, assign_seconds),
        invocations=invocations,
        records_per_batch=round(len(records) / invocations, 2) if invocations else 0.0,
        exit_code=code,
    )


def raw_latency(
    send: Callable[..., None],
    bootstrap: str,
    topic: str,
    n: int,
    extra: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    """A raw poll() loop (in a child process): says "ready" once it owns every partition, then
    returns [(timestamp ms, latency ms)] of n records."""
    c = Consumer(consumer_config(bootstrap, fresh_group("rawlat"), extra), logger=None)
    out: list[tuple[float, float]] = []
    try:
        started = time.perf_counter()
        c.subscribe([topic])

        def take(m: Any) -> None:
            if m is not None and m.error() is None:
                ts = m.timestamp()[1]
                out.append((ts, time.time() * 1000 - ts))

        while len(c.assignment()) < PARTITIONS:
            take(c.poll(0.05))
            if time.perf_counter() - started > ASSIGN_TIMEOUT:
                raise BenchError(f"raw consumer owns {len(c.assignment())} partitions")
        send("ready", time.perf_counter() - started)
        deadline = time.perf_counter() + timeout
        while len(out) < n:
            take(c.poll(0.1))
            if time.perf_counter() > deadline:
                raise BenchError(f"raw consumer got {len(out)} of {n} records in {timeout:.0f}s")
    finally:
        c.close()
    return {"records": out}


def run_raw_latency(ctx: Context, warmup: float) -> LatencyRun:
    a = ctx.args
    topic = create_topic(ctx.bootstrap, PARTITIONS, "bench-rawlat")
    total = max(1, round(a.rate * a.duration))
    child = Child(raw_latency, ctx.bootstrap, topic, total, ctx.extra_config, a.timeout)
    try:
        assign_seconds = float(child.expect("ready", ASSIGN_TIMEOUT + 30))
        watched = {"raw": child.proc.pid or 0, "bench": os.getpid(), **ctx.extra_pids}
        traffic, value = steady_traffic(
            ctx, topic, watched, lambda _: child.expect("ok", a.timeout + 60)
        )
    finally:
        child.close()
    records = [(float(ts), float(x)) for ts, x in value["records"]]
    return latency_run(ctx, "raw poll()", warmup, traffic, records, assign_seconds)


def describe_latency(r: LatencyRun) -> str:
    batches = (
        f"{r.invocations} invocations = {r.records_per_batch:.2f} rec/batch; "
        if r.invocations is not None
        else ""
    )
    return (
        f"latency {r.consumer}: p50 {r.p50_ms:.1f} ms, p90 {r.p90_ms:.1f} ms, p99 "
        f"{r.p99_ms:.1f} ms, max {r.max_ms:.1f} ms over {r.measured} records\n"
        f"{'':12}produced {r.produced} at {r.achieved_rate:.1f}/s of {r.rate:g}/s asked "
        f"(behind schedule by up to {r.behind_max_ms:.1f} ms); {batches}partitions owned "
        f"{r.assign_seconds:.2f} s after start\n"
        f"{'':12}CPU s from first produce to the end: {cpu_text(r.cpu_seconds, r.duration)}"
    )
