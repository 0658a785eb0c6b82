"""The performance report's rendering (tests/perf/report_render.py), without running a
benchmark: figures in, markdown and PNG charts out; failed and missing benchmarks are said,
not crashed on; no path of the machine that measured reaches the committed files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.perf.report import scrub
from tests.perf.report_render import render

KAFKA: dict[str, Any] = {
    "ok": True,
    "records": 3_000_000,
    "body_bytes": 100,
    "partitions": 8,
    "batch_size": 1000,
    "workers": 2,
    "runtime_steady_records_per_s": 600_000.0,
    "raw_records_per_s_no_join": 1_500_000.0,
    "raw_format_records_per_s_no_join": 550_000.0,
    "latency_batch_size": 100,
    "latency": {"rate": 2000.0, "duration": 20.0},
    "latency_p50_ms": 15.0, "latency_p90_ms": 24.0, "latency_p99_ms": 28.0,
    "latency_max_ms": 30.0, "raw_latency_p50_ms": 14.0, "raw_latency_p90_ms": 23.0,
    "raw_latency_p99_ms": 27.0, "raw_latency_max_ms": 29.0,
    "peers": {"arroyo": {"records_per_s_no_join": 300_000.0, "version": "2.x"}},
}  # fmt: skip


def data() -> dict[str, Any]:
    return {
        "machine": {"cores": 2, "cpu": "test cpu", "memory_gib": 24, "commit": "abc1234"},
        "quick": False,
        "benches": {
            "kafka": {"ok": True, "result": KAFKA, "command": "python -m x", "seconds": 90},
            "sqs": {"ok": False, "error": "no RESULT line (exit code 1)", "command": "y"},
        },
    }


def test_the_report_has_every_section_and_says_what_failed(tmp_path: Path) -> None:
    text = render(data(), tmp_path / "perf", tmp_path)
    for title in ("## Kafka", "## SQS", "## Kinesis", "## DynamoDB Streams", "## Filtering"):
        assert title in text
    assert "| Runtime (steady) | 600,000 | 1.00x |" in text
    assert "| arroyo (2.x) | 300,000 | 2.00x |" in text
    assert "0.40x and 1.09x" in text  # the two goal ratios
    assert "_bench_sqs failed: no RESULT line (exit code 1). Command: `y`._" in text
    assert "_bench_kinesis: not run._" in text


def test_charts_are_drawn_and_linked(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    out.mkdir()
    text = render(data(), out, tmp_path)
    for name in ("kafka_throughput", "kafka_latency"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](perf/{name}.png)" in text


def test_paths_of_the_machine_are_scrubbed() -> None:
    line = 'workdir=/tmp/esm-bench-1 "/home/u/x" at http://127.0.0.1:9/q .venv/bin/python'
    assert scrub(line) == 'workdir=<path> "<path>" at http://127.0.0.1:9/q .venv/bin/python'
