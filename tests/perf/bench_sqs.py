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

The emulator is noisy, so ``--repeat K`` alternates A and B K times and reports medians. The
exit code is 0 whatever the ratio (this is a measurement, not an assertion) and 1 when a phase
failed: messages left after the timeout, the runtime dying or not exiting 0 on SIGTERM. The last
line of a successful run is ``RESULT {json}`` with every figure, for scripts and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvloop
import yaml
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from prometheus_client.parser import text_string_to_metric_families

from tests.support.aws import CREDENTIALS, REGION, Queue, client
from tests.support.emulator import REPO, Ministack, free_port

Phase = Literal["runtime", "baseline"]

BODY_BYTES = 100
VISIBILITY_TIMEOUT = 60
BATCH_SIZE = 10
POLL_SECONDS = 0.2
IDLE_SECONDS = 2.0
GOAL = 0.8
NOISE_CORES = 0.15  # other processes' average core use above which a run is flagged
HANDLER = "tests.perf.handlers.noop"
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


# --------------------------------------------------------------------------- queues


def make_body(i: int) -> str:
    """A JSON body of exactly BODY_BYTES bytes."""
    head = f'{{"n":{i},"pad":"'
    return head + "x" * (BODY_BYTES - len(head) - 2) + '"}'


def fill(queue: Queue, n: int, threads: int) -> float:
    """Send n messages with SendMessageBatch from several threads; return the seconds it took."""
    started = time.perf_counter()

    def send(first: int) -> None:
        entries = [
            {"Id": str(i), "MessageBody": make_body(i)} for i in range(first, min(first + 10, n))
        ]
        for attempt in range(5):
            resp = queue.sqs.send_message_batch(QueueUrl=queue.url, Entries=entries)
            failed = {f["Id"] for f in resp.get("Failed") or ()}
            if not failed:
                return
            entries = [e for e in entries if e["Id"] in failed]
            time.sleep(0.1 * (attempt + 1))
        raise BenchError(f"SendMessageBatch kept failing for {len(entries)} messages")

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fill") as pool:
        list(pool.map(send, range(0, n, 10)))
    deadline = time.monotonic() + 60
    while (counts := queue.counts()) != (n, 0):
        if time.monotonic() > deadline:
            raise BenchError(f"queue {queue.name} holds {counts} messages after the fill, not {n}")
        time.sleep(0.1)
    return time.perf_counter() - started


@contextlib.contextmanager
def fresh_queue(sqs: Any, tag: str, n: int, threads: int) -> Iterator[tuple[Queue, float]]:
    queue = Queue.create(sqs, f"bench-{tag}", visibility_timeout=VISIBILITY_TIMEOUT)
    try:
        yield queue, fill(queue, n, threads)
    finally:
        with contextlib.suppress(Exception):
            sqs.delete_queue(QueueUrl=queue.url)


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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return child_pids(self.pid)

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


def runtime_config(queue_arn: str, concurrency: int) -> dict[str, Any]:
    return {
        "functions": {"bench": {"Handler": HANDLER, "Timeout": 30}},
        "eventSourceMappings": [
            {
                "FunctionName": "bench",
                "EventSourceArn": queue_arn,
                "BatchSize": BATCH_SIZE,
                "ScalingConfig": {"MaximumConcurrency": concurrency},
            }
        ],
    }


def run_runtime(ctx: Context, round_no: int) -> RunResult:
    a = ctx.args
    n = a.messages
    with fresh_queue(ctx.sqs, "rt", n, a.fill_threads) as (queue, fill_s):
        rt = Runtime(
            ctx.workdir,
            f"{round_no}",
            runtime_config(queue.arn, a.concurrency),
            ctx.endpoint,
            a.workers,
            ctx.runtime_env,
        )
        launched = time.perf_counter()
        rt.start()
        try:
            t_ready = rt.wait_ready(60)
            workers = rt.worker_pids()
            watched = {
                "supervisor": rt.pid,
                **{f"worker{i}": p for i, p in enumerate(workers)},
                "bench": os.getpid(),
                **ctx.extra_pids,
            }
            cpu0 = cpu_snapshot(watched)
            remaining_at_ready = queue.total()

            t_done = wait_drained(ctx, queue, rt)
            cpu = cpu_delta(cpu0, cpu_snapshot(watched))
            m = rt.metrics()
            if rt.worker_pids() != workers:
                raise BenchError(f"workers changed during the run: {workers} -> {rt.worker_pids()}")

            time.sleep(IDLE_SECONDS)
            rss_sup = rss_bytes(rt.pid) / MIB
            rss_workers = [rss_bytes(p) / MIB for p in rt.worker_pids()]
            code = rt.stop()
        except BaseException:
            rt.kill()
            raise
        if code != 0:
            raise BenchError(f"runtime exited with {code} after SIGTERM:\n{rt.log_tail()}")
        seconds = t_done - t_ready
        return RunResult(
            phase="runtime",
            round=round_no,
            seconds=round(seconds, 3),
            msgs_per_s=round(n / seconds, 1),
            fill_seconds=round(fill_s, 2),
            cpu_seconds=cpu,
            remaining_at_ready=remaining_at_ready,
            msgs_per_s_after_ready=round(remaining_at_ready / seconds, 1),
            startup_seconds=round(t_ready - launched, 2),
            invocations=m.get("lambda_invocations_total", 0.0),
            deleted_metric=m.get("lambda_deleted_events_total", 0.0),
            function_errors=m.get("lambda_errors_total", 0.0),
            polling_errors=m.get("esm_polling_errors_total", 0.0),
            ack_failures=m.get("esm_ack_failures_total", 0.0),
            rss_supervisor_mib=round(rss_sup, 1),
            rss_workers_mib=[round(r, 1) for r in rss_workers],
            exit_code=code,
        )


def wait_drained(ctx: Context, queue: Queue, rt: Runtime) -> float:
    """Poll every 0.2 s until the queue is empty and the runtime counted N deletes.

    Returns the perf_counter time of the first poll that saw both. Fails after --timeout, or
    after --stall-timeout without any progress.
    """
    n = ctx.args.messages
    started = time.monotonic()
    last_progress, last_total, deleted = started, -1, -1.0
    next_poll = time.perf_counter()
    while True:
        rt.check_alive()
        polled_at = time.perf_counter()
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
        if now - started > ctx.args.timeout or now - last_progress > ctx.args.stall_timeout:
            raise BenchError(
                f"runtime did not drain the queue: {total} messages left, "
                f"lambda_deleted_events_total={deleted:g} after {now - started:.0f}s\n"
                f"{rt.log_tail()}"
            )
        next_poll += POLL_SECONDS
        time.sleep(max(0.0, next_poll - time.perf_counter()))


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


def run_baseline(ctx: Context, round_no: int) -> RunResult:
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


# --------------------------------------------------------------------------- driver


@dataclass
class Context:
    args: argparse.Namespace
    endpoint: str
    sqs: Any
    workdir: Path
    runtime_env: dict[str, str]
    extra_pids: dict[str, int]  # processes whose CPU time is reported too (the emulator)


def _cpu_text(cpu: dict[str, float], seconds: float) -> str:
    text = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    other = cpu.get("other", 0.0) / seconds if seconds > 0 else 0.0
    if other > NOISE_CORES:
        text += f"  <- NOISY: other processes used {other:.2f} cores on average"
    return text


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
            f"{'':14}CPU s in window: {_cpu_text(r.cpu_seconds, r.seconds)}\n"
            f"{'':14}idle RSS: supervisor {r.rss_supervisor_mib:.1f} MiB, workers "
            + ", ".join(f"{x:.1f}" for x in r.rss_workers_mib)
            + f" MiB; exit code {r.exit_code}"
        )
    return (
        f"{head}  ({r.receives} receives, {r.empty_receives} empty, "
        f"{r.delete_failures} delete failures)\n"
        f"{'':14}CPU s in window: {_cpu_text(r.cpu_seconds, r.seconds)}"
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


def _parse_env(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--runtime-env wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out


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
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a phase may take")
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=150.0,
        help="seconds without progress before a runtime phase fails (> VisibilityTimeout)",
    )
    p.add_argument("--fill-threads", type=int, default=8)
    p.add_argument(
        "--runtime-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the runtime (experiments; repeatable)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.messages < 1 or args.repeat < 1 or args.workers < 1 or args.fill_threads < 1:
        parser.error("--messages, --repeat, --workers and --fill-threads must be >= 1")
    if not 2 <= args.concurrency <= 1000:
        parser.error("--concurrency must be within 2..1000 (ScalingConfig.MaximumConcurrency)")
    try:
        runtime_env = _parse_env(args.runtime_env)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))

    workdir = Path(tempfile.mkdtemp(prefix="esm-bench-"))
    emulator: Ministack | None = None
    ok = False
    try:
        extra_pids: dict[str, int] = {}
        if args.endpoint:
            endpoint = args.endpoint
        else:
            emulator = Ministack(workdir)
            emulator.start()
            endpoint = emulator.endpoint
            proc = getattr(emulator, "_proc", None)
            if isinstance(proc, subprocess.Popen):
                extra_pids["emulator"] = proc.pid
        ctx = Context(args, endpoint, client("sqs", endpoint), workdir, runtime_env, extra_pids)
        phases: list[Phase] = ["runtime", "baseline"]
        if args.order == "baseline-first":
            phases.reverse()
        print(
            f"bench_sqs: N={args.messages} concurrency={args.concurrency} workers={args.workers} "
            f"order={args.order} repeat={args.repeat} endpoint={endpoint} workdir={workdir}",
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
        print_summary(summary)
        print("RESULT " + json.dumps(summary, separators=(",", ":")), flush=True)
        ok = True
        return 0
    except BenchError as exc:
        print(f"bench_sqs: FAILED: {exc}", file=sys.stderr, flush=True)
        print(f"bench_sqs: logs kept in {workdir}", file=sys.stderr)
        print("RESULT " + json.dumps({"ok": False, "error": str(exc)[:2000]}), flush=True)
        return 1
    finally:
        if emulator is not None:
            emulator.stop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
