"""The filter micro-benchmark still runs (briefly), so it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def test_filter_bench_prints_positive_rates() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.perf.bench_filter", "--seconds", "0.2", "--repeat", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, output
    assert "evaluations/s" in proc.stdout, output
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, output
    result: dict[str, Any] = json.loads(results[0].removeprefix("RESULT "))
    assert result["ok"] is True
    assert result["body_bytes"] >= 1000
    for loop in ("decode+match", "match", "decode"):
        assert result[f"{loop}_per_s"] > 0, output
    # half of the records match the pattern, decoded or not
    assert result["match_matched_fraction"] == 0.5
    assert result["decode+match_matched_fraction"] == 0.5
