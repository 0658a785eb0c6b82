"""The SQS benchmark still runs end to end (tiny sizes), so it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.support.emulator import REPO

pytestmark = pytest.mark.integration

LIMIT_SECONDS = 60


def _result(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line in:\n{stdout}"
    parsed: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return parsed


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_sqs_smoke(aws_endpoint: str) -> None:
    started = time.monotonic()
    # The benchmark strips inherited ESM_* variables from the runtime's environment itself.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.perf.bench_sqs",
            "--messages",
            "300",
            "--concurrency",
            "5",
            "--workers",
            "1",
            "--endpoint",
            aws_endpoint,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=LIMIT_SECONDS,
    )
    elapsed = time.monotonic() - started
    output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, output
    result = _result(proc.stdout)
    assert result["ok"] is True
    assert result["messages"] == 300
    assert result["concurrency"] == 5
    assert result["workers"] == 1
    assert result["runtime_msgs_per_s"] > 0, output
    assert result["baseline_msgs_per_s"] > 0, output
    assert result["ratio"] > 0
    assert len(result["rss_workers_mib"]) == 1
    assert result["rss_supervisor_mib"] > 0
    runtime_runs = [r for r in result["runs"] if r["phase"] == "runtime"]
    assert [r["exit_code"] for r in runtime_runs] == [0]
    assert [r["deleted_metric"] for r in runtime_runs] == [300]
    assert elapsed < LIMIT_SECONDS
