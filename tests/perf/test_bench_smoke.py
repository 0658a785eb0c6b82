"""The runtime benchmarks still run end to end (tiny sizes), so they cannot rot unnoticed."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from typing import Any, NamedTuple

import pytest

from tests.support.emulator import REPO

pytestmark = pytest.mark.integration

LIMIT_SECONDS = 60


class BenchRun(NamedTuple):
    result: dict[str, Any]  # the RESULT line's figures
    output: str  # stdout and stderr, for failure messages


def run_bench(module: str, args: str) -> BenchRun:
    """``python -m tests.perf.<module> <args>`` (split as a shell would), which must exit 0
    within LIMIT_SECONDS and print exactly one RESULT line, saying ``"ok": true``."""
    started = time.monotonic()
    # The benchmarks strip inherited ESM_* variables from the runtime's environment themselves.
    proc = subprocess.run(
        [sys.executable, "-m", f"tests.perf.{module}", *shlex.split(args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=LIMIT_SECONDS,
    )
    elapsed = time.monotonic() - started
    output = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, output
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line in:\n{proc.stdout}"
    result: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    assert result["ok"] is True, output
    assert elapsed < LIMIT_SECONDS
    return BenchRun(result, output)


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_sqs_smoke(aws_endpoint: str) -> None:
    result, output = run_bench(
        "bench_sqs", f"--messages 300 --concurrency 5 --workers 1 --endpoint {aws_endpoint}"
    )
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


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_sqs_fifo_smoke(aws_endpoint: str) -> None:
    result, output = run_bench(
        "bench_sqs_fifo", f"--messages 60 --groups 1,3 --workers 1 --endpoint {aws_endpoint}"
    )
    assert result["messages"] == 60
    assert result["groups"] == [1, 3]
    assert result["workers"] == 1
    runs = result["runs"]
    assert [r["groups"] for r in runs] == [1, 3]
    assert [r["ceiling"] for r in runs] == [1, 3]
    for r in runs:
        assert r["msgs_per_s"] > 0, output
        assert r["bound_msgs_per_s"] > 0
        assert r["concurrency_avg"] > 0, output
        assert 1 <= r["concurrency_max"] <= r["ceiling"], output
        assert 0 < r["ratio"] <= 1, output
        assert r["order_problems"] == [], output
        assert r["deleted_metric"] == 60
        assert r["exit_code"] == 0


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_kafka_smoke(kafka_bootstrap: str) -> None:
    result, output = run_bench(
        "bench_kafka",
        f"--records 2000 --duration 3 --rate 200 --workers 1 --bootstrap {kafka_bootstrap}",
    )
    assert result["records"] == 2000
    assert result["workers"] == 1
    for key in (
        "runtime_records_per_s",
        "raw_records_per_s",
        "raw_format_records_per_s",
        "ratio",
    ):
        assert result[key] > 0, (key, output)
    assert result["runtime"]["committed_metric"] == 2000
    assert result["runtime"]["exit_code"] == 0
    assert result["raw"]["records"] == result["raw_format"]["records"] == 2000
    latency = result["latency"]
    assert latency["produced"] == 600
    assert latency["measured"] > 0
    assert latency["exit_code"] == 0
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"], output
    assert 0 < result["raw_latency"]["p50_ms"] <= result["raw_latency"]["max_ms"], output


def _check_filter_share(run: BenchRun, n: int) -> None:
    fs, output = run.result["filter_share"], run.output
    assert fs["records"] == n
    assert -1 <= fs["share"] <= 1, output
    assert fs["filtered_out_events"] == 0
    assert fs["invoked_events_without"] >= n and fs["invoked_events_with"] >= n, output
    assert fs["cpu_us_per_record_without"] > 0 and fs["cpu_us_per_record_with"] > 0, output
    assert fs["inprocess_us_per_record"] > 0


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_sqs_filter_share_smoke(aws_endpoint: str) -> None:
    run = run_bench(
        "bench_sqs",
        f"--messages 1000 --concurrency 5 --workers 1 --endpoint {aws_endpoint} --filter-share",
    )
    _check_filter_share(run, 1000)


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_kafka_filter_share_smoke(kafka_bootstrap: str) -> None:
    run = run_bench(
        "bench_kafka",
        f"--records 10000 --duration 2 --rate 200 --workers 1 --bootstrap {kafka_bootstrap} "
        "--filter-share",
    )
    _check_filter_share(run, 10000)


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_sqs_per_worker_limits_smoke(aws_endpoint: str) -> None:
    result, output = run_bench(
        "bench_sqs",
        f"--messages 200 --concurrency 2 --workers 1 --per-worker-limits 1 "
        f"--limit-batch-size 50 --endpoint {aws_endpoint}",
    )
    [row] = result["per_worker_limits"]
    assert row["per_worker_limit"] == 1 and row["maximum_concurrency"] == 2
    assert row["msgs_per_s"] > 0, output
    assert row["mean_batch_records"] >= 40, output  # batches fill at a share of one


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_kinesis_smoke(aws_endpoint: str) -> None:
    result, output = run_bench(
        "bench_kinesis",
        f"--records 500 --pf-records 100 --memory-shards 4 --memory-compare-shards 0 "
        f"--idle-seconds 1 --endpoint {aws_endpoint}",
    )
    assert result["records"] == 500
    assert result["shards"] == 4
    assert result["workers"] == 1
    for key in ("runtime_records_per_s", "raw_records_per_s", "ratio"):
        assert result[key] > 0, (key, output)
    runtime_runs = [r for r in result["runs"] if r["phase"] == "runtime"]
    assert [r["committed_metric"] for r in runtime_runs] == [500], output
    assert [r["exit_code"] for r in runtime_runs] == [0]
    assert [r["records_read"] for r in result["runs"] if r["phase"] == "raw"] == [500]
    pf = result["parallelization"]
    assert pf["keys_per_lane"] == [10] * 10
    assert [r["factor"] for r in pf["runs"]] == [1, 10]
    for r in pf["runs"]:
        assert r["committed_metric"] == r["records_handled"] == 100, output
        assert r["exit_code"] == 0
        assert r["order_problems"] == [], output
    assert pf["runs"][0]["concurrency_max"] == 1, output
    assert pf["speedup"] > 0 and pf["speedup_handler_span"] > 0
    [idle] = result["memory"]
    assert idle["shards"] == 4 and idle["exit_code"] == 0
    assert idle["rss_supervisor_mib"] > 0 and idle["rss_worker_mib"] > 0


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_dynamodb_smoke(aws_endpoint: str) -> None:
    result, output = run_bench("bench_dynamodb", f"--records 500 --endpoint {aws_endpoint}")
    assert result["records"] == 500
    assert result["shards"] == [1]  # ministack: one shard per table's stream
    for key in ("runtime_records_per_s", "raw_records_per_s", "ratio"):
        assert result[key] > 0, (key, output)
    runtime_runs = [r for r in result["runs"] if r["phase"] == "runtime"]
    assert [r["committed_metric"] for r in runtime_runs] == [500], output
    assert [r["exit_code"] for r in runtime_runs] == [0]
    assert [r["function_errors"] for r in runtime_runs] == [0]
    assert [r["records_read"] for r in result["runs"] if r["phase"] == "raw"] == [500]


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_scaleup_smoke(aws_endpoint: str) -> None:
    result, output = run_bench(
        "bench_scaleup",
        f"--messages 300 --max-concurrency 4 --sleep-ms 50 --workers 1 --endpoint {aws_endpoint}",
    )
    assert result["messages"] == 300
    assert result["maximum_concurrency"] == 4
    assert result["levels"] == [2, 4, 4]  # 50, 90 and 100 % of 4, rounded up
    assert result["deleted_metric"] == 300, output
    assert result["records_handled"] == 300, output
    assert result["exit_code"] == 0
    assert 1 <= result["concurrency_max"] <= 4, output
    assert result["drain_seconds"] > 0 and result["msgs_per_s"] > 0
    assert set(result["handler_seconds"]) == {"2", "4"}
    # Lambda's modelled ramp starts at 5 concurrent batches: 4 at once.
    assert result["lambda_seconds"]["current"] == {"2": 0.0, "4": 0.0}
    assert result["timeline"], output


def _check_scale(run: BenchRun, source: str, records: int) -> None:
    result, output = run
    assert result["units"] == [2]
    assert result["workers"] == 2
    src = result["sources"][source]
    assert src["records"] == records
    [row] = src["runs"]
    idle, load = row["idle"], row["load"]
    assert idle["units"] == 2 and idle["exit_code"] == 0
    assert idle["rss_supervisor_mib"] > 0, output
    assert len(idle["rss_workers_mib"]) == 2 and min(idle["rss_workers_mib"]) > 0, output
    assert idle["runtime_cores"] >= 0
    assert idle["server_cores"] is None  # the server was given, not started by the bench
    assert load["committed_metric"] == records, output
    assert load["function_errors"] == 0 and load["exit_code"] == 0
    assert load["records_per_s"] > 0, output
    assert 0 < load["first_record_seconds"] <= load["committed_seconds"], output
    assert len(load["rss_workers_mib"]) == 2 and load["rss_supervisor_mib"] > 0


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_scale_kafka_smoke(kafka_bootstrap: str) -> None:
    run = run_bench(
        "bench_scale", f"--quick --sources kafka --units 2 --bootstrap {kafka_bootstrap}"
    )
    _check_scale(run, "kafka", 2000)


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_bench_scale_kinesis_smoke(aws_endpoint: str) -> None:
    run = run_bench("bench_scale", f"--quick --sources kinesis --units 2 --endpoint {aws_endpoint}")
    _check_scale(run, "kinesis", 400)
