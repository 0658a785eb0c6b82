"""Every benchmark in one run, written up as docs/performance.md with PNG charts.

    deploy/setup.sh --perf && .venv/bin/python -m tests.perf.report [--quick]
        [--only kafka,sqs,...] [--render-only]

The benchmarks run one after another, each as its own process (``python -m tests.perf.<name>``
with the arguments in :data:`BENCHES`), never two at once: on a 2-core machine a second one
would take the cores the first is measuring. Each starts its own servers (Tansu, ministack) on
free ports, so a run needs nothing but the installed tools. A benchmark that fails does not
stop the others; its section of the report says what went wrong.

What a run leaves behind (all under docs/):

- ``perf/results.json``: every benchmark's RESULT figures, its command, its wall time and
  exit code, the machine and the commit. ``--render-only`` writes the report again from it,
  without measuring (to change the text or the charts);
- ``perf/*.png``: the charts (matplotlib, installed by ``deploy/setup.sh --perf``);
- ``performance.md``: tables and charts, each with the command that produced it
  (:mod:`tests.perf.report_render`).

``--quick`` runs every benchmark at a small size (about 3 minutes in all), to check the
pipeline end to end; its figures are not worth publishing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.emulator import REPO

DOCS = REPO / "docs"
PERF_DIR = DOCS / "perf"
RESULTS = PERF_DIR / "results.json"
REPORT = DOCS / "performance.md"
# Paths of the machine that ran the benchmarks (work directories, temporary files) are not
# kept in what is committed.
_MACHINE_PATH = re.compile(r"(?<![\w.])/(?:tmp|work|home|root|var|opt)/[^\s\"',;)]*")


def scrub(text: str) -> str:
    return _MACHINE_PATH.sub("<path>", text)


@dataclass(frozen=True)
class Bench:
    name: str  # the key in results.json
    module: str  # python -m tests.perf.<module>
    args: str  # the full run
    quick: str  # --quick
    timeout: float  # seconds, full run


BENCHES: tuple[Bench, ...] = (
    Bench(
        "kafka",
        "bench_kafka",
        "--records 3000000 --duration 20 --peers",
        "--records 100000 --duration 2 --rate 500 --peers",
        1800,
    ),
    Bench(
        "sqs",
        "bench_sqs",
        "--messages 20000 --concurrency 10 --workers 2 --repeat 2",
        "--messages 1000 --concurrency 5 --workers 1",
        1200,
    ),
    Bench(
        "sqs_fifo",
        "bench_sqs_fifo",
        "--messages 3000 --groups 1,10,100 --max-concurrency 10 --workers 2",
        "--messages 100 --groups 1,5 --workers 1",
        900,
    ),
    Bench(
        "kinesis",
        "bench_kinesis",
        "--records 50000 --repeat 2 --pf-records 2000 --memory-shards 64",
        "--records 1000 --pf-records 100 --memory-shards 4 --memory-compare-shards 0 "
        "--idle-seconds 1",
        1200,
    ),
    # bench_dynamodb and bench_scaleup have no --quick: their smoke-test sizes instead.
    Bench("dynamodb", "bench_dynamodb", "--records 20000 --repeat 2", "--records 500", 900),
    Bench(
        "scaleup",
        "bench_scaleup",
        "--messages 5000 --max-concurrency 20 --sleep-ms 100",
        "--messages 300 --max-concurrency 4 --sleep-ms 50 --workers 1",
        900,
    ),
    # The longest (a few minutes): six runtimes each on a fresh topic or stream of up to 512
    # units; --quick is units 1,4, a few thousand records.
    Bench("scale", "bench_scale", "--sources kafka,kinesis --units 1,64,512", "--quick", 1800),
    Bench("filter", "bench_filter", "--seconds 2 --repeat 3", "--seconds 0.3 --repeat 1", 300),
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": _commit(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def command(bench: Bench, quick: bool) -> list[str]:
    return [
        ".venv/bin/python",
        "-m",
        f"tests.perf.{bench.module}",
        *shlex.split(bench.quick if quick else bench.args),
    ]


def run_bench(bench: Bench, quick: bool) -> dict[str, Any]:
    """One benchmark as a process: its RESULT figures (or why there are none)."""
    cmd = command(bench, quick)
    print(f"==> {bench.name}: {shlex.join(cmd)}", flush=True)
    started = time.monotonic()
    log_lines: list[str] = []
    result: dict[str, Any] | None = None
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except OSError as exc:
        return {"command": shlex.join(cmd), "ok": False, "error": str(exc)}
    assert proc.stdout is not None
    deadline = started + (300 if quick else bench.timeout)
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line.startswith("RESULT "):
            try:
                result = json.loads(line.removeprefix("RESULT "))
            except ValueError:
                result = None
        else:
            log_lines.append(line)
            print(f"    {line}", flush=True)
        if time.monotonic() > deadline:
            proc.kill()
            break
    code = proc.wait()
    entry: dict[str, Any] = {
        "command": shlex.join(cmd),
        "seconds": round(time.monotonic() - started, 1),
        "exit_code": code,
        "output": scrub("\n".join(log_lines[-60:])),
    }
    if result is None:
        entry |= {"ok": False, "error": f"no RESULT line (exit code {code})"}
    else:
        result = json.loads(scrub(json.dumps(result)))
        entry |= {"ok": bool(result.get("ok", True)), "result": result}
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: checks the pipeline")
    p.add_argument("--only", help="comma-separated benchmark names (default: all)")
    p.add_argument(
        "--render-only", action="store_true", help="write the report from perf/results.json"
    )
    p.add_argument("--out", type=Path, default=REPORT, help="the report's path")
    a = p.parse_args(argv)
    from tests.perf.report_render import render

    PERF_DIR.mkdir(parents=True, exist_ok=True)
    if a.render_only:
        data = json.loads(RESULTS.read_text())
    else:
        wanted = set(a.only.split(",")) if a.only else None
        data = json.loads(RESULTS.read_text()) if wanted and RESULTS.exists() else {}
        data["machine"] = machine()
        data["quick"] = a.quick
        benches: dict[str, Any] = data.setdefault("benches", {})
        for bench in BENCHES:
            if wanted is not None and bench.name not in wanted:
                continue
            benches[bench.name] = run_bench(bench, a.quick)
            RESULTS.write_text(json.dumps(data, indent=1) + "\n")  # each one as it lands
    a.out.write_text(render(data, PERF_DIR, a.out.parent))
    failed = [n for n, e in data.get("benches", {}).items() if not e.get("ok")]
    print(f"wrote {a.out} and {PERF_DIR}/; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
