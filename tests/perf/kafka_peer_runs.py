"""bench_kafka's phase A4: the same job through peer frameworks (sentry-arroyo, quixstreams) on
the topic of phase A, each in a child process run by the peer's own venv, and their figures
beside the runtime's.

The peers live in ``.peer-venv/<peer>`` (``deploy/setup.sh --perf``), not in ``.venv``: their
confluent-kafka pins conflict with the runtime's and with each other's, so the child runs
:mod:`tests.perf.kafka_peers`, which imports nothing of the project. What each peer is asked to
do, how it is configured and how it is timed is said there.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.perf.common import BenchError, cpu_delta, cpu_text
from tests.perf.kafka_common import FETCH_WAIT_MAX_MS, SESSION_TIMEOUT_MS, Context, fresh_group
from tests.perf.kafka_throughput import RuntimeRun
from tests.support.emulator import REPO

PEER_VENV = REPO / ".peer-venv"
PEERS = ("arroyo", "quixstreams")  # the order they run in; each a venv under PEER_VENV


@dataclass
class PeerRun:
    peer: str
    version: str  # the peer's PyPI release
    seconds: float  # the peer's subscribe to all committed
    records_per_s: float
    seconds_no_join: float  # its first record to all committed
    records_per_s_no_join: float
    join_seconds: float  # subscribe to the first record
    # First record to the N-th processed: without the wait for the last commit, which is up to
    # one commit interval (arroyo 1 s, quixstreams 5 s).
    processed_seconds: float
    records_per_s_processed: float
    records: int  # records the no-op saw (more than N only if some were delivered twice)
    confluent_kafka: str  # the peer venv's, which differs from the runtime's
    librdkafka: str
    setup: str
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def peer_python(peer: str) -> Path:
    return PEER_VENV / peer / "bin" / "python"


def missing_peers() -> list[str]:
    """The peers whose venv is not there."""
    return [p for p in PEERS if not peer_python(p).exists()]


def peer_config(ctx: Context) -> dict[str, Any]:
    """The librdkafka settings of bench_kafka's other consumers that are not the peer's own
    business (group, offsets, commits and assignment are left to the peer)."""
    return {
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 3,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        **ctx.extra_config,
    }


def run_peer(ctx: Context, topic: str, peer: str) -> PeerRun:
    """:mod:`tests.perf.kafka_peers` for ``peer`` on ``topic`` (N records) with a fresh group;
    its stderr goes to ``peer-<peer>.log`` in the work directory."""
    a = ctx.args
    log_path = ctx.workdir / f"peer-{peer}.log"
    command = [
        str(peer_python(peer)),
        "-m",
        "tests.perf.kafka_peers",
        peer,
        ctx.bootstrap,
        topic,
        str(a.records),
        fresh_group(peer),
        "--config",
        json.dumps(peer_config(ctx)),
        "--watch",
        json.dumps(ctx.extra_pids),
        "--timeout",
        str(a.timeout),
        "--state-dir",
        str(ctx.workdir / f"{peer}-state"),
    ]
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, timeout=a.timeout + 120
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{peer} did not finish in {a.timeout + 120:.0f}s") from None
    lines = [x for x in proc.stdout.decode().splitlines() if x.startswith("RESULT ")]
    tail = log_path.read_text(errors="replace")[-3000:]
    if not lines:
        raise BenchError(f"{peer} exited with {proc.returncode} and no RESULT:\n{tail}")
    value: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    if not value["ok"]:
        raise BenchError(f"{peer}: {value.get('error')}\n{tail}")
    n = a.records
    seconds, no_join = float(value["seconds"]), float(value["seconds_no_join"])
    processed = float(value["processed_seconds"])
    return PeerRun(
        peer=peer,
        version=str(value["version"]),
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1),
        seconds_no_join=round(no_join, 3),
        records_per_s_no_join=round(n / no_join, 1) if no_join > 0 else 0.0,
        join_seconds=round(float(value["join_seconds"]), 3),
        processed_seconds=round(processed, 3),
        records_per_s_processed=round(n / processed, 1) if processed > 0 else 0.0,
        records=int(value["records"]),
        confluent_kafka=str(value["confluent_kafka"]),
        librdkafka=str(value["librdkafka"]),
        setup=str(value["setup"]),
        cpu_seconds=cpu_delta(value["cpu_before"], value["cpu_after"]),
    )


def run_peers(ctx: Context, topic: str) -> list[PeerRun]:
    """Every peer in turn on ``topic``, each described as it finishes."""
    runs = []
    for peer in PEERS:
        runs.append(run_peer(ctx, topic, peer))
        print(describe_peer(runs[-1]), flush=True)
    return runs


def describe_peer(r: PeerRun) -> str:
    return (
        f"{r.peer:<11} {r.seconds:8.2f} s {r.records_per_s:10.1f} rec/s  (first record at "
        f"{r.join_seconds:.2f} s, then {r.records_per_s_no_join:.1f} rec/s; all processed "
        f"{r.processed_seconds:.2f} s after the first = {r.records_per_s_processed:.1f} rec/s; "
        f"{r.records} records seen; {r.peer} {r.version}, confluent-kafka {r.confluent_kafka}, "
        f"librdkafka {r.librdkafka})\n"
        f"{'':12}CPU s in window: {cpu_text(r.cpu_seconds, r.seconds)}"
    )


def peers_summary(rt: RuntimeRun, runs: list[PeerRun]) -> dict[str, dict[str, Any]]:
    """The RESULT's ``peers``: each run's figures and the runtime / peer ratios."""
    return {
        r.peer: {
            **asdict(r),
            "ratio": round(rt.records_per_s / r.records_per_s, 3),
            "ratio_no_join": round(rt.records_per_s_no_join / r.records_per_s_no_join, 3)
            if r.records_per_s_no_join
            else 0.0,
        }
        for r in runs
    }
