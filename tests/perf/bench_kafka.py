"""Kafka throughput and latency: the runtime as a real process tree against raw confluent-kafka.

    .venv/bin/python -m tests.perf.bench_kafka [--records 1000000] [--workers 2]
        [--batch-size 1000] [--rate 2000] [--duration 20] [--bootstrap HOST:PORT]

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

   ``ratio`` is runtime / raw with the join in both windows; ``ratio_no_join`` the same from
   each side's first record. The issue's goal: >= 0.5.

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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from runtime.config.sources import SourceKind
from tests.perf.common import (
    BODY_BYTES,
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
    make_body,
    parse_env,
    print_filter_share,
    result_line,
    with_filter,
)
from tests.support.emulator import Tansu

PARTITIONS = 8
NOOP_HANDLER = "tests.perf.handlers.noop"
LATENCY_HANDLER = "tests.perf.handlers.latency"
THROUGHPUT_GOAL = 0.5  # runtime / raw
LATENCY_GOAL_P99_MS = 50.0
CONSUME_BATCH = 1000
CONSUME_TIMEOUT = 0.1
SESSION_TIMEOUT_MS = 6000
FETCH_WAIT_MAX_MS = 10
# librdkafka >= 2.1 waits fetch.queue.backoff.ms (default 1000) before fetching again for a
# partition whose local queue is over its thresholds; 10 ms keeps a busy consumer fed. Used
# only when this librdkafka accepts it (checked at start).
EXTRA_CONSUMER_CONFIG: dict[str, Any] = {"fetch.queue.backoff.ms": 10}
# No AWS service is used; the runtime still wants an endpoint for its (unused) AWS clients.
UNUSED_AWS_ENDPOINT = "http://127.0.0.1:9"
ASSIGN_TIMEOUT = 60.0
# Records the runtime's consumer thread hands to the pipeline at a time (at most), as the
# in-process filter cross-check splits them.
KAFKA_DELIVERY_BATCH = 1000


# --------------------------------------------------------------------------- broker and topics


@contextlib.contextmanager
def broker(bootstrap: str | None, workdir: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """(bootstrap, processes to watch): the one given, or a Tansu started (and stopped) here."""
    if bootstrap:
        yield bootstrap, {}
        return
    tansu = Tansu(workdir)
    try:
        tansu.start()
        pids: dict[str, int] = {}
        proc = getattr(tansu, "_proc", None)
        if proc is not None:
            pids["broker"] = int(proc.pid)
        yield tansu.bootstrap, pids
    finally:
        tansu.stop()


def create_topic(bootstrap: str, partitions: int, prefix: str) -> str:
    """A fresh topic (tests.support.kafka.create_topic, with names mypy --strict accepts)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
        f.result(15)
    return name


def accepted_extra_config(bootstrap: str) -> dict[str, Any]:
    """EXTRA_CONSUMER_CONFIG if this librdkafka knows every key of it, else {}."""
    try:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", **EXTRA_CONSUMER_CONFIG})
    except KafkaException:
        return {}
    c.close()
    return dict(EXTRA_CONSUMER_CONFIG)


def fill_topic(
    bootstrap: str, topic: str, n: int, value: Callable[[int], str] = make_body
) -> float:
    """Produce n records (``value(i)``, make_body's BODY_BYTES by default) round-robin over the
    partitions; return the seconds."""
    started = time.perf_counter()
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None and len(failed) < 5:
            failed.append(str(err))

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for i in range(n):
        data = value(i).encode()
        while True:
            try:
                p.produce(topic, value=data, partition=i % PARTITIONS, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    left = p.flush(300)
    if left or failed:
        raise BenchError(f"fill of {topic}: {left} records not delivered, errors {failed}")
    return time.perf_counter() - started


def produce_steady(
    bootstrap: str, topic: str, rate: float, duration: float, linger_ms: float
) -> tuple[int, float, float, float]:
    """Produce rate x duration records at a steady pace, round-robin over the partitions.

    Returns (records, wall-clock ms when production started, seconds it took, the most it fell
    behind its schedule in ms).
    """
    total = max(1, round(rate * duration))
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None and len(failed) < 5:
            failed.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    p.list_topics(topic, timeout=15)  # connected before the clock starts
    behind = 0.0
    start_wall_ms = time.time() * 1000
    start = time.perf_counter()
    i = 0
    while i < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        if due > i + 1:
            behind = max(behind, (now - start - i / rate) * 1000)
        while i < due:
            p.produce(
                topic, value=make_body(i).encode(), partition=i % PARTITIONS, on_delivery=delivered
            )
            i += 1
        p.poll(0)
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    seconds = time.perf_counter() - start
    left = p.flush(30)
    if left or failed:
        raise BenchError(f"steady produce to {topic}: {left} not delivered, errors {failed}")
    return total, start_wall_ms, seconds, behind


def consumer_config(bootstrap: str, group: str, extra: dict[str, Any]) -> dict[str, Any]:
    """What the runtime's KafkaSource sets (with this benchmark's ESM_KAFKA_* settings)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 3,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        **extra,
    }


def fresh_group(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- the runtime


def runtime_env(extra_config: dict[str, Any], user: dict[str, str]) -> dict[str, str]:
    env = {
        "ESM_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "ESM_KAFKA_FETCH_WAIT_MAX_MS": str(FETCH_WAIT_MAX_MS),
    }
    if extra_config:
        env["ESM_KAFKA_CONSUMER_CONFIG"] = json.dumps(extra_config)
    env.update(user)
    return env


def kafka_config(
    bootstrap: str,
    topic: str,
    handler: str,
    batch_size: int,
    group: str,
    variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One function ``bench`` running ``handler``, one Kafka mapping on ``topic``."""
    function: dict[str, Any] = {"Handler": handler, "Timeout": 30}
    if variables:
        function["Environment"] = {"Variables": variables}
    return {
        "functions": {"bench": function},
        "eventSourceMappings": [
            {
                "FunctionName": "bench",
                "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": batch_size,
                "MaximumBatchingWindowInSeconds": 0,
                "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group},
            }
        ],
    }


def assigned_partitions(rt: Runtime) -> int:
    """Partitions with a lambda_offset_lag series (set within a second of being assigned)."""
    status, text = rt.get("/metrics")
    if status != 200:
        return 0
    seen = set()
    for family in text_string_to_metric_families(text):
        if family.name == "lambda_offset_lag":
            seen |= {s.labels.get("partition") for s in family.samples}
    return len(seen)


def watched_pids(rt: Runtime, extra: dict[str, int]) -> dict[str, int]:
    return {
        "supervisor": rt.pid,
        **{f"worker{i}": p for i, p in enumerate(rt.worker_pids())},
        "bench": os.getpid(),
        **extra,
    }


def stop_runtime(rt: Runtime) -> int:
    code = rt.stop()
    if code != 0:
        raise BenchError(f"runtime exited with {code} after SIGTERM:\n{rt.log_tail()}")
    return code


# --------------------------------------------------------------------------- child processes


def _child_main(conn: Connection, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
    """Run ``fn(send, *args)`` and send ("ok", result) or ("error", text) to the parent."""

    def send(status: str, value: Any = None) -> None:
        conn.send((status, value))

    try:
        send("ok", fn(send, *args))
    except BaseException as exc:
        send("error", repr(exc))
    finally:
        conn.close()


class Child:
    """A function in a spawned process (its own interpreter: no GIL shared with anything)."""

    def __init__(self, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        mp = multiprocessing.get_context("spawn")
        self._conn, child = mp.Pipe(duplex=False)
        self.proc = mp.Process(target=_child_main, args=(child, fn, *args), name="bench-child")
        self.proc.start()
        child.close()

    def expect(self, status: str, timeout: float) -> Any:
        """The next message, which must be ``status``; raises BenchError otherwise."""
        try:
            if not self._conn.poll(timeout):
                raise BenchError(f"child process said nothing for {timeout:.0f}s")
            got, value = self._conn.recv()
        except EOFError:
            raise BenchError(f"child process died (exit code {self.proc.exitcode})") from None
        if got != status:
            raise BenchError(f"child process: {value}" if got == "error" else f"child sent {got}")
        return value

    def close(self) -> None:
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self._conn.close()


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
    launched = time.perf_counter()
    rt.start()
    try:
        t_ready = rt.wait_ready(60)
        watched = watched_pids(rt, ctx.extra_pids)
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
        code = stop_runtime(rt)
    except BaseException:
        rt.kill()
        raise
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
    rt.start()
    try:
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
        watched = watched_pids(rt, ctx.extra_pids)
        cpu0 = cpu_snapshot(watched)
        produced, start_ms, prod_s, behind = produce_steady(
            ctx.bootstrap, topic, a.rate, a.duration, a.linger_ms
        )
        deadline = time.monotonic() + 120
        while rt.metrics().get("lambda_committed_events_total", 0.0) < produced:
            rt.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"runtime did not commit the {produced} records 120 s after the last was "
                    f"produced\n{rt.log_tail()}"
                )
            time.sleep(POLL_SECONDS)
        cpu = cpu_delta(cpu0, cpu_snapshot(watched))
        code = stop_runtime(rt)
    except BaseException:
        rt.kill()
        raise
    records, invocations = read_latencies(record_file)
    return LatencyRun(
        consumer="runtime",
        rate=a.rate,
        achieved_rate=round(produced / prod_s, 1),
        produced=produced,
        duration=a.duration,
        warmup=warmup,
        **latency_figures(records, produced, start_ms, warmup),
        assign_seconds=round(assign_seconds, 2),
        behind_max_ms=round(behind, 1),
        invocations=invocations,
        records_per_batch=round(len(records) / invocations, 2) if invocations else 0.0,
        exit_code=code,
        cpu_seconds=cpu,
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
        cpu0 = cpu_snapshot(watched)
        produced, start_ms, prod_s, behind = produce_steady(
            ctx.bootstrap, topic, a.rate, a.duration, a.linger_ms
        )
        value = child.expect("ok", a.timeout + 60)
        cpu = cpu_delta(cpu0, cpu_snapshot(watched))
    finally:
        child.close()
    records = [(float(ts), float(x)) for ts, x in value["records"]]
    return LatencyRun(
        consumer="raw poll()",
        rate=a.rate,
        achieved_rate=round(produced / prod_s, 1),
        produced=produced,
        duration=a.duration,
        warmup=warmup,
        **latency_figures(records, produced, start_ms, warmup),
        assign_seconds=round(assign_seconds, 2),
        behind_max_ms=round(behind, 1),
        cpu_seconds=cpu,
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


# --------------------------------------------------------------------------- output


@dataclass
class Context:
    args: argparse.Namespace
    bootstrap: str
    workdir: Path
    env: dict[str, str]  # the runtime's extra environment
    extra_config: dict[str, Any]  # librdkafka settings beyond the defaults, for both sides
    extra_pids: dict[str, int]  # processes whose CPU time is reported too (the broker)


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
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a phase may take")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="seconds without a committed record before the runtime phase fails",
    )
    p.add_argument(
        "--runtime-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the runtime (experiments; repeatable)",
    )
    p.add_argument(
        "--filter-share",
        action="store_true",
        help="also run A1 without and with a FilterCriteria pattern every record matches, on "
        "1 KB JSON values, and report the share of worker CPU spent filtering",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
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
    try:
        user_env = parse_env(args.runtime_env)
    except ValueError as exc:
        parser.error(str(exc))

    workdir = Path(tempfile.mkdtemp(prefix="esm-bench-kafka-"))
    ok = False
    try:
        with broker(args.bootstrap, workdir) as (bootstrap, extra_pids):
            ok = _run(args, bootstrap, extra_pids, workdir, user_env)
        return 0 if ok else 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    bootstrap: str,
    extra_pids: dict[str, int],
    workdir: Path,
    user_env: dict[str, str],
) -> bool:
    try:
        extra = accepted_extra_config(bootstrap)
        ctx = Context(args, bootstrap, workdir, runtime_env(extra, user_env), extra, extra_pids)
        warmup = min(args.warmup, args.duration / 2)
        print(
            f"bench_kafka: N={args.records} workers={args.workers} batch_size={args.batch_size} "
            f"rate={args.rate:g} duration={args.duration:g} warmup={warmup:g} "
            f"bootstrap={bootstrap} workdir={workdir}"
            + (" filter-share" if args.filter_share else ""),
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
        lat = run_runtime_latency(ctx, warmup)
        print(describe_latency(lat), flush=True)
        raw_lat = run_raw_latency(ctx, warmup)
        print(describe_latency(raw_lat), flush=True)
        summary = summarize(ctx, fill_s, rt, raw, fmt, lat, raw_lat)
        if args.filter_share:
            summary["filter_share"] = run_filter_share(ctx)
        print_summary(summary)
        if args.filter_share:
            print_filter_share(summary["filter_share"], "record")
        print(result_line(summary), flush=True)
        return True
    except BenchError as exc:
        print(f"bench_kafka: FAILED: {exc}", file=sys.stderr, flush=True)
        print(f"bench_kafka: logs kept in {workdir}", file=sys.stderr)
        print("RESULT " + json.dumps({"ok": False, "error": str(exc)[:2000]}), flush=True)
        return False


if __name__ == "__main__":
    sys.exit(main())
