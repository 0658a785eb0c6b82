"""Pieces shared by the benchmarks in tests/perf: /proc readings, queue fills, the runtime as a
process tree, waiting for a queue to drain, and the filter-share figures.

Nothing here parses arguments (tests/perf/driver.py holds the command-line scaffolding); each
benchmark keeps its own CLI and output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from runtime.config.sources import SourceKind
from runtime.pipeline.filtering import RecordFilter
from runtime.pipeline.records import Record
from tests.support.aws import CREDENTIALS, REGION, Queue
from tests.support.emulator import REPO, free_port

BODY_BYTES = 100
VISIBILITY_TIMEOUT = 60
BATCH_SIZE = 10
POLL_SECONDS = 0.2
IDLE_SECONDS = 2.0
NOISE_CORES = 0.15  # other processes' average core use above which a run is flagged
MIB = 1024 * 1024
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A phase failed: the figures of this run mean nothing."""


# --------------------------------------------------------------------------- /proc


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (all cores; /proc/stat, not idle nor iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLK_TCK


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()}, "": busy_cpu_seconds()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds of each process between two snapshots, and ``other`` for everything else.

    ``other`` is the machine's busy time less the processes named: other work on the machine
    (other test sessions, say) that competes for the cores. Large values make a run suspect.
    """
    out = {name: round(after[name] - t, 3) for name, t in before.items() if name}
    out["other"] = round(after[""] - before[""] - sum(out.values()), 3)
    return out


def cpu_text(cpu: dict[str, float], seconds: float) -> str:
    """``name seconds, ...`` with a NOISY flag when other processes competed for the cores."""
    text = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    other = cpu.get("other", 0.0) / seconds if seconds > 0 else 0.0
    if other > NOISE_CORES:
        text += f"  <- NOISY: other processes used {other:.2f} cores on average"
    return text


# --------------------------------------------------------------------------- queues


def make_body(i: int) -> str:
    """A JSON body of exactly BODY_BYTES bytes."""
    head = f'{{"n":{i},"pad":"'
    return head + "x" * (BODY_BYTES - len(head) - 2) + '"}'


def send_entries(queue: Queue, entries: list[dict[str, Any]]) -> None:
    """One SendMessageBatch (up to 10 entries), resending the entries that failed."""
    for attempt in range(5):
        resp = queue.sqs.send_message_batch(QueueUrl=queue.url, Entries=entries)
        failed = {f["Id"] for f in resp.get("Failed") or ()}
        if not failed:
            return
        entries = [e for e in entries if e["Id"] in failed]
        time.sleep(0.1 * (attempt + 1))
    raise BenchError(f"SendMessageBatch kept failing for {len(entries)} messages")


def wait_filled(queue: Queue, n: int, timeout: float = 60.0) -> None:
    """Wait until the queue reports exactly n visible messages and none in flight."""
    deadline = time.monotonic() + timeout
    while (counts := queue.counts()) != (n, 0):
        if time.monotonic() > deadline:
            raise BenchError(f"queue {queue.name} holds {counts} messages after the fill, not {n}")
        time.sleep(0.1)


def fill(queue: Queue, n: int, threads: int, body: Callable[[int], str] = make_body) -> float:
    """Send n messages (``body(i)``, make_body by default) with SendMessageBatch from several
    threads; return the seconds it took."""
    started = time.perf_counter()

    def send(first: int) -> None:
        send_entries(
            queue,
            [{"Id": str(i), "MessageBody": body(i)} for i in range(first, min(first + 10, n))],
        )

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fill") as pool:
        list(pool.map(send, range(0, n, 10)))
    wait_filled(queue, n)
    return time.perf_counter() - started


@contextlib.contextmanager
def temporary_queue(sqs: Any, prefix: str, **create: Any) -> Iterator[Queue]:
    """``Queue.create(sqs, prefix, **create)``, deleted on the way out."""
    queue = Queue.create(sqs, prefix, **create)
    try:
        yield queue
    finally:
        with contextlib.suppress(Exception):
            sqs.delete_queue(QueueUrl=queue.url)


# --------------------------------------------------------------------------- the runtime


class Runtime:
    """``python -m runtime run`` as a process tree, with its log in the work directory."""

    def __init__(
        self,
        workdir: Path,
        tag: str,
        config: dict[str, Any],
        endpoint: str,
        workers: int,
        extra_env: dict[str, str],
    ) -> None:
        self.config_path = workdir / f"runtime-{tag}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / f"runtime-{tag}.log"
        self.port = free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ESM_") and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        self.env.update(
            ESM_AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
            AWS_REGION=REGION,
            ESM_HTTP_HOST="127.0.0.1",
            ESM_HTTP_PORT=str(self.port),
            ESM_WORKERS=str(workers),
            ESM_LOG_LEVEL="WARNING",
        )
        self.env.update(extra_env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtime", "run", str(self.config_path)],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @contextlib.contextmanager
    def running(self) -> Iterator[float]:
        """Start the runtime for a block that ends with :meth:`stop_checked`, killing the process
        tree if the block raises; yields the perf_counter time of the launch."""
        launched = time.perf_counter()
        self.start()
        try:
            yield launched
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return child_pids(self.pid)

    def watched(self, extra_pids: dict[str, int]) -> dict[str, int]:
        """The processes whose CPU time a window reports: the supervisor, each worker, this
        process and ``extra_pids`` (the emulator or broker)."""
        return {
            "supervisor": self.pid,
            **{f"worker{i}": p for i, p in enumerate(self.worker_pids())},
            "bench": os.getpid(),
            **extra_pids,
        }

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(
                f"runtime exited with {self.proc.returncode}; log tail:\n{self.log_tail()}"
            )

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def wait_ready(self, timeout: float) -> float:
        """Poll /readyz every 50 ms; return the perf_counter time it first answered 200."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(OSError):
                if self.get("/readyz")[0] == 200:
                    return time.perf_counter()
            if time.monotonic() > deadline:
                raise BenchError(f"runtime not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """Every sample summed over its labels, by sample name."""
        status, text = self.get("/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[s.name] = out.get(s.name, 0.0) + s.value
        return out

    def stop(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise BenchError(f"runtime still running {timeout:.0f}s after SIGTERM") from None
        return int(self.proc.returncode)

    def stop_checked(self) -> int:
        """:meth:`stop`, which must end the runtime with 0 (returned)."""
        code = self.stop()
        if code != 0:
            raise BenchError(f"runtime exited with {code} after SIGTERM:\n{self.log_tail()}")
        return code

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in [*self.worker_pids(), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def single_mapping_config(
    queue_arn: str, handler: str, concurrency: int, batch_size: int = BATCH_SIZE
) -> dict[str, Any]:
    """One function ``bench`` running ``handler``, one mapping on the queue."""
    return {
        "functions": {"bench": {"Handler": handler, "Timeout": 30}},
        "eventSourceMappings": [
            {
                "FunctionName": "bench",
                "EventSourceArn": queue_arn,
                "BatchSize": batch_size,
                "ScalingConfig": {"MaximumConcurrency": concurrency},
            }
        ],
    }


def wait_drained(
    queue: Queue,
    rt: Runtime,
    n: int,
    timeout: float,
    stall_timeout: float,
    on_poll: Callable[[float], None] | None = None,
) -> float:
    """Poll every 0.2 s until the queue is empty and the runtime counted N deletes.

    Returns the perf_counter time of the first poll that saw both. Fails after ``timeout``, or
    after ``stall_timeout`` without any progress. ``on_poll`` sees each poll's perf_counter time.
    """
    started = time.monotonic()
    last_progress, last_total, deleted = started, -1, -1.0
    next_poll = time.perf_counter()
    while True:
        rt.check_alive()
        polled_at = time.perf_counter()
        if on_poll is not None:
            on_poll(polled_at)
        total = queue.total()
        if total == 0:
            deleted = rt.metrics().get("lambda_deleted_events_total", 0.0)
            if deleted >= n:
                if deleted > n:
                    print(f"  note: lambda_deleted_events_total is {deleted:g} > {n}")
                return polled_at
        now = time.monotonic()
        if total != last_total:
            last_total, last_progress = total, now
        if now - started > timeout or now - last_progress > stall_timeout:
            raise BenchError(
                f"runtime did not drain the queue: {total} messages left, "
                f"lambda_deleted_events_total={deleted:g} after {now - started:.0f}s\n"
                f"{rt.log_tail()}"
            )
        next_poll += POLL_SECONDS
        time.sleep(max(0.0, next_poll - time.perf_counter()))


@dataclass
class Drained:
    """A started runtime draining a queue, timed from /readyz (:func:`drain`)."""

    ready: float  # perf_counter time /readyz first answered 200
    done: float  # perf_counter time of the poll that saw the queue drained
    wall_offset: float  # time.time() - time.perf_counter() just after ready
    workers: list[int]  # the worker pids at ready
    remaining_at_ready: int  # messages in the queue at ready
    cpu: dict[str, float]  # CPU seconds of the watched processes over the window
    metrics: dict[str, float]  # the runtime's, at the end of the window


def drain(
    rt: Runtime,
    queue: Queue,
    n: int,
    timeout: float,
    stall_timeout: float,
    extra_pids: dict[str, int],
) -> Drained:
    """Wait until the started runtime is ready, then (:func:`wait_drained`) until it drained the
    n messages of the queue, reading the CPU time of the runtime, this process and
    ``extra_pids`` over that window."""
    ready = rt.wait_ready(60)
    wall_offset = time.time() - time.perf_counter()
    workers = rt.worker_pids()
    watched = rt.watched(extra_pids)
    cpu0 = cpu_snapshot(watched)
    remaining_at_ready = queue.total()
    done = wait_drained(queue, rt, n, timeout, stall_timeout)
    cpu = cpu_delta(cpu0, cpu_snapshot(watched))
    return Drained(ready, done, wall_offset, workers, remaining_at_ready, cpu, rt.metrics())


# --------------------------------------------------------------------------- filter share
#
# ``--filter-share`` of bench_sqs and bench_kafka: the runtime phase twice on identical fresh
# queues/topics of FILTER_BODY_BYTES JSON payloads, without FilterCriteria and with a
# three-field pattern every record matches (so the handler sees the same records), comparing
# the workers' CPU seconds; and RecordFilter timed in this process on the same kind of records.

FILTER_BODY_BYTES = 1024
FILTER_FIELDS: dict[str, Any] = {
    "a": ["x"],
    "b": [{"numeric": [">", 10]}],
    "c": [{"prefix": "ab"}],
}
INPROCESS_SECONDS = 0.5  # CPU time per round of the in-process cross-check
INPROCESS_ROUNDS = 5  # the best round is kept


def filter_body(i: int) -> str:
    """A JSON object of exactly FILTER_BODY_BYTES bytes that the FILTER_FIELDS pattern matches:
    ``{"a":"x","b":42,"c":"abcdef","n":i,"pad":"xx..."}``."""
    head = f'{{"a":"x","b":42,"c":"abcdef","n":{i},"pad":"'
    return head + "x" * (FILTER_BODY_BYTES - len(head) - 2) + '"}'


def filter_pattern(data_key: str) -> str:
    """The FILTER_FIELDS pattern on a source's data key (SQS ``body``, Kafka ``value``)."""
    return json.dumps({data_key: FILTER_FIELDS}, separators=(",", ":"))


def with_filter(config: dict[str, Any], pattern: str) -> dict[str, Any]:
    """``config`` with ``FilterCriteria: {Filters: [{Pattern: pattern}]}`` on each mapping."""
    for mapping in config["eventSourceMappings"]:
        mapping["FilterCriteria"] = {"Filters": [{"Pattern": pattern}]}
    return config


def worker_cpu_seconds(cpu: dict[str, float]) -> float:
    """The workers' CPU seconds in a :func:`cpu_delta` (keys ``worker0``, ``worker1``...)."""
    return round(sum(v for k, v in cpu.items() if k.startswith("worker")), 3)


def inprocess_filter_cost(
    kind: SourceKind, payloads: list[dict[str, Any]], pattern: str, chunk: int
) -> dict[str, Any]:
    """CPU µs per record of ``RecordFilter.split`` (decode + match, as the pipeline runs it)
    on these payloads in chunks of ``chunk`` records, in this thread: the best of
    INPROCESS_ROUNDS rounds of about INPROCESS_SECONDS each. Every record must be kept."""
    record_filter = RecordFilter(kind, [pattern])
    records = [Record(payload=p, size=0, item_id=i, ack=None) for i, p in enumerate(payloads)]
    chunks = [records[i : i + chunk] for i in range(0, len(records), chunk)]
    kept = sum(len(record_filter.split(c)[0]) for c in chunks)
    if kept != len(records):
        raise BenchError(f"in-process: the pattern kept {kept} of {len(records)} records")
    split = record_filter.split
    best = math.inf
    for _ in range(INPROCESS_ROUNDS):
        done = 0
        started = time.thread_time()
        while (used := time.thread_time() - started) < INPROCESS_SECONDS:
            for c in chunks:
                split(c)
            done += len(records)
        best = min(best, used / done)
    return {
        "us_per_record": round(best * 1e6, 3),
        "records": len(records),
        "chunk": chunk,
        "rounds": INPROCESS_ROUNDS,
        "round_cpu_seconds": INPROCESS_SECONDS,
    }


def filter_share_run(
    n: int, before: int, seconds: float, cpu: dict[str, float], metrics: dict[str, float]
) -> dict[str, Any]:
    """One run of the pair: its worker CPU per record and the counts that say it did the same
    work. The timed window opens at /readyz, when workers may have handled a few of the n
    records already (``before``): the CPU per record is over the records of the window."""
    worker = worker_cpu_seconds(cpu)
    in_window = n - before
    if in_window <= 0:
        raise BenchError("filter share: every record was handled before the timed window")
    return {
        "seconds": round(seconds, 3),
        "records_before_window": before,
        "records_in_window": in_window,
        "worker_cpu_seconds": worker,
        "cpu_us_per_record": round(worker / in_window * 1e6, 2),
        "invoked_events": metrics.get("lambda_invoked_events_total", 0.0),
        "invocations": metrics.get("lambda_invocations_total", 0.0),
        "filtered_out_events": metrics.get("lambda_filtered_out_events_total", 0.0),
        "cpu_seconds": cpu,
    }


def filter_share_figures(
    n: int,
    pattern: str,
    without: dict[str, Any],
    with_: dict[str, Any],
    inprocess: dict[str, Any],
) -> dict[str, Any]:
    """The ``filter_share`` part of a RESULT; BenchError when a record was filtered out or
    not invoked (the two runs then did not do the same work)."""
    for label, run in (("without", without), ("with", with_)):
        if run["filtered_out_events"] != 0 or run["invoked_events"] < n:
            raise BenchError(
                f"filter share, run {label} filter: {run['filtered_out_events']:g} records "
                f"filtered out, {run['invoked_events']:g} of {n} invoked"
            )
    # Per record of each window (the two windows may hold a few records less than n).
    us_without = without["worker_cpu_seconds"] / without["records_in_window"] * 1e6
    us_with = with_["worker_cpu_seconds"] / with_["records_in_window"] * 1e6
    return {
        "records": n,
        "body_bytes": FILTER_BODY_BYTES,
        "pattern": pattern,
        "cpu_us_per_record_without": round(us_without, 2),
        "cpu_us_per_record_with": round(us_with, 2),
        "cpu_us_per_record_difference": round(us_with - us_without, 2),
        # (cpu_with - cpu_without) / cpu_with, per record
        "share": round((us_with - us_without) / us_with, 4) if us_with > 0 else 0.0,
        "inprocess_us_per_record": inprocess["us_per_record"],
        "inprocess_share": round(inprocess["us_per_record"] / us_with, 4) if us_with else 0.0,
        "filtered_out_events": with_["filtered_out_events"],
        "invoked_events_without": without["invoked_events"],
        "invoked_events_with": with_["invoked_events"],
        "without": without,
        "with": with_,
        "inprocess": inprocess,
    }


def print_filter_share(fs: dict[str, Any], unit: str) -> None:
    """The filter-share figures, after a benchmark's own summary."""
    print()
    print(
        f"Filter share: runtime worker CPU, N={fs['records']} {unit}s of "
        f"{fs['body_bytes']} B JSON, pattern {fs['pattern']}"
    )
    for label, key in (("without filter", "without"), ("with filter", "with")):
        run = fs[key]
        print(
            f"  {label:<15} {run['cpu_us_per_record']:9.2f} µs/{unit}  (worker CPU "
            f"{run['worker_cpu_seconds']:.2f} s for the {run['records_in_window']} {unit}s of "
            f"the {run['seconds']:.2f} s window; "
            f"{run['invoked_events']:g} invoked in {run['invocations']:g} invocations, "
            f"FilteredOutEventCount {run['filtered_out_events']:g})"
        )
        print(f"  {'':15} CPU s in window: {cpu_text(run['cpu_seconds'], run['seconds'])}")
    print(f"  {'difference':<15} {fs['cpu_us_per_record_difference']:9.2f} µs/{unit}")
    print(
        f"  share of runtime CPU spent filtering = (with - without) / with = "
        f"{fs['share'] * 100:.1f} %"
    )
    print(
        f"  in-process RecordFilter (decode + match): {fs['inprocess_us_per_record']:.2f} "
        f"µs/{unit} = {fs['inprocess_share'] * 100:.1f} % of the filtered run's worker CPU"
    )
