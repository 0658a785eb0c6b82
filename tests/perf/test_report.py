"""The performance report's rendering (tests/perf/report_render.py), without running a
benchmark: figures in, markdown and PNG charts out; failed and missing benchmarks are said,
not crashed on; no path of the machine that measured reaches the committed files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.perf.bench_dynamodb import summarize
from tests.perf.bench_kinesis import Phase, ThroughputRun
from tests.perf.bench_scale import IdleRun, LoadRun
from tests.perf.bench_scaleup import LAMBDA_RATES_PER_MINUTE, ScaleupRun, lambda_seconds, targets
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


# --------------------------------------------------------------------------- the newer benches
# RESULT figures shaped by the benchmarks' own dataclasses and summaries, so a field renamed
# there breaks these tests rather than a published report.


def _result(summary: dict[str, Any]) -> dict[str, Any]:
    """What report.py keeps of a RESULT line: the JSON, read back."""
    out: dict[str, Any] = json.loads(json.dumps(summary))
    return out


def _idle(units: int, held: list[int] | None, balanced: float | None) -> IdleRun:
    return IdleRun(
        units=units, own_seconds=1.5, balanced_seconds=balanced, held_at_start=held,
        held_at_end=held, owned_at_end=float(units), settle_seconds=5.0, idle_seconds=10.0,
        rss_supervisor_mib=60.0 + units / 10, rss_workers_mib=[70.0 + units / 8] * 2,
        rss_total_mib=200.0 + units / 2, runtime_cores=0.01 * units, server_cores=0.02,
        metrics_scrape_cpu_ms=2.0, metrics_bytes=4096 * units, startup_seconds=1.2,
        exit_code=0, cpu_seconds={"supervisor": 0.1, "worker0": 0.1, "other": 0.0},
    )  # fmt: skip


def _load(units: int, records: int, held: list[int] | None) -> LoadRun:
    return LoadRun(
        units=units, records=records, seconds=2.0, records_per_s=records / 2,
        records_per_s_to_invoked=records / 1.8, steady_records_per_s=None,
        records_per_s_from_ready=records / 2.5, ready_seconds=1.0, first_record_seconds=0.8,
        owned_seconds=None, invoked_seconds=2.6, committed_seconds=2.8, read_at_ready=10.0,
        worker_cpu_seconds=1.0, worker_cpu_us_per_record=12.5, supervisor_cpu_seconds=0.2,
        runtime_cpu_seconds=1.2, runtime_cpu_us_per_record=15.0,
        runtime_cpu_seconds_since_launch=2.0, metrics_polls=10, rss_supervisor_mib=62.0,
        rss_workers_mib=[80.0, 81.0], rss_total_mib=223.0 + units, held_at_end=held,
        invocations=100.0, committed_metric=float(records), function_errors=0.0,
        polling_errors=0.0, fill_seconds=1.0, exit_code=0, cpu_seconds={"supervisor": 0.2},
    )  # fmt: skip


def scale_result() -> dict[str, Any]:
    """bench_scale's summary (its _run): Kafka without lease counts, Kinesis with them and
    512 shards not balanced in time."""
    units = [1, 64, 512]

    def source(unit: str, records: int, leases: bool) -> dict[str, Any]:
        runs = []
        for u in units:
            held = [u - u // 2, u // 2] if leases else None
            # Kafka has no lease table: the bench reports own_seconds as balanced_seconds.
            balanced = (None if u == 512 else 3.0) if leases else 1.5
            idle, load = _idle(u, held, balanced), _load(u, records, held)
            runs.append({"units": u, "idle": asdict(idle), "load": asdict(load)})
        return {"unit": unit, "records": records, "runs": runs}

    return _result({
        "ok": True, "workers": 2, "batch_size": 100, "body_bytes": 100, "units": units,
        "settle_seconds": 5.0, "idle_seconds": 10.0, "metrics_poll": 0.2, "quick": False,
        "kafka_session_timeout_ms": 6000,
        "servers": {"kafka": "127.0.0.1:1", "kinesis": "http://127.0.0.1:2"}, "runtime_env": {},
        "sources": {"kafka": source("partition", 100_000, False),
                    "kinesis": source("shard", 20_000, True)},
    })  # fmt: skip


def scaleup_result(timeline: bool = True) -> dict[str, Any]:
    """bench_scaleup's RESULT: its ScaleupRun after ok, endpoint and runtime_env."""
    levels = targets(20)  # [10, 18, 20]
    at: dict[str, float | None] = {"10": 0.4, "18": 0.9, "20": 1.2}
    run = ScaleupRun(
        messages=5000, maximum_concurrency=20, sleep_ms=100.0, workers=2, levels=levels,
        handler_seconds=at, sampled_seconds={"10": 0.5, "18": 1.0, "20": None},
        limit_seconds={"10": 0.3, "18": 0.8, "20": 1.1},
        handler_seconds_from_first_invocation={"10": 0.3, "18": 0.8, "20": 1.1},
        first_invocation_seconds=-0.1, reached_maximum=True, concurrency_max=20,
        concurrency_max_sampled=19.0, concurrency_avg=17.5, drain_seconds=4.2, msgs_per_s=1190.5,
        ideal_drain_seconds=2.5,
        lambda_seconds={name: {str(lv): lambda_seconds(lv, rate) for lv in levels}
                        for name, rate in LAMBDA_RATES_PER_MINUTE.items()},
        remaining_at_ready=5000, invocations=500, records_handled=5000, msgs_per_batch=10.0,
        deleted_metric=5000.0, function_errors=0.0, polling_errors=0.0, startup_seconds=1.1,
        fill_seconds=3.0, exit_code=0, cpu_seconds={"supervisor": 0.5, "other": 0.1},
        timeline=[[round(-0.5 + 0.1 * i, 3), min(20.0, 2.0 * i), min(20.0, 2.0 * i),
                   min(20.0, 5.0 + 2 * i)] for i in range(40)] if timeline else [],
    )  # fmt: skip
    return _result({"ok": True, "endpoint": "http://127.0.0.1:2", "runtime_env": {}, **asdict(run)})


def dynamodb_result() -> dict[str, Any]:
    """bench_dynamodb's summarize() over two rounds of its ThroughputRun figures."""
    args = SimpleNamespace(
        records=20_000, view="NEW_AND_OLD_IMAGES", batch_size=100, workers=1,
        order="runtime-first", repeat=2, poll_interval=0.1, checkpoint_interval=0.1,
    )  # fmt: skip
    ctx = SimpleNamespace(args=args, endpoint="http://127.0.0.1:2", runtime_env={})
    plan: list[tuple[int, Phase, float]] = [
        (1, "runtime", 4001.0), (1, "raw", 5000.0), (2, "runtime", 4002.0), (2, "raw", 5000.0),
    ]  # fmt: skip
    runs = [
        ThroughputRun(phase=phase, round=k, seconds=20_000 / rate, records_per_s=rate,
                      fill_seconds=4.0, records_per_s_from_first_record=rate * 1.1)
        for k, phase, rate in plan
    ]  # fmt: skip
    return _result(summarize(ctx, runs, [1, 1]))  # type: ignore[arg-type]


def newer(**results: dict[str, Any]) -> dict[str, Any]:
    d = data()
    for name, result in results.items():
        d["benches"][name] = {
            "ok": True, "result": result, "command": f".venv/bin/python -m {name}", "seconds": 60,
        }  # fmt: skip
    return d


def _png(out: Path, name: str, text: str) -> None:
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"](perf/{name}.png)" in text


def test_scale_section(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    text = render(newer(scale=scale_result()), out, tmp_path)
    section = text.split("## Partitions and shards")[1]
    assert "Idle:" in section and "Under load:" in section
    # Idle: RSS total, supervisor / workers, runtime and server cores, owned, balanced, scrape.
    idle = "| 232.0 | 66.4 / 78.0 + 78.0 | 0.640 | 0.020 | 1.50 |"
    assert f"| kafka | 64 partitions {idle} - |" in section  # no leases: no balancing time
    assert f"| kinesis | 64 shards {idle} 3.0 |" in section
    assert "| kinesis | 512 shards |" in section and "| not in time |" in section
    assert "| 2,048, 2.0 |" in section  # /metrics: 512 x 4 KiB, 2 ms each
    # Under load: records, rec/s, steady (none), RSS, runtime cores, worker µs/record.
    assert "| kafka | 1 partition | 100,000 | 50,000 | n/a | 224.0 | 0.60 | 12.5 | 2.8 |" in section
    _png(out, "scale_memory", section)
    assert "Machine: 2 cores (test cpu), 24 GiB, commit abc1234." in section
    assert "Command: `.venv/bin/python -m scale`" in section


def test_scaleup_section_with_a_timeline(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    text = render(newer(scaleup=scaleup_result()), out, tmp_path)
    section = text.split("## Scale-up from a backlog")[1].split("\n## ")[0]
    assert "| 10 (50 %) | 0.40 | 0.50 | 0.30 | 1.00 | 5.00 |" in section
    assert "| 20 (100 %) | 1.20 | never | 1.10 | 3.00 | 15.00 |" in section
    assert "Peak 20 of 20 (100 %), maximum reached" in section
    _png(out, "scaleup", section)
    assert "Command: `.venv/bin/python -m scaleup`" in section


def test_scaleup_section_without_a_timeline_draws_bars(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    result = scaleup_result(timeline=False)
    result["handler_seconds"]["20"] = None
    result["reached_maximum"] = False
    text = render(newer(scaleup=result), out, tmp_path)
    assert "| 20 (100 %) | never |" in text
    assert "maximum NOT reached" in text
    _png(out, "scaleup", text)


def test_scaleup_levels_repeat_with_a_small_maximum(tmp_path: Path) -> None:
    """MaximumConcurrency 4 (the quick run): 50/90/100 % are levels 2, 4, 4 and Lambda's
    modelled ramp is there at once (it starts with five)."""
    result = scaleup_result()
    result |= {"maximum_concurrency": 4, "levels": targets(4), "concurrency_max": 4}
    result["lambda_seconds"] = {k: {"2": 0.0, "4": 0.0} for k in LAMBDA_RATES_PER_MINUTE}
    result["handler_seconds"] = {"2": 0.1, "4": 0.2}
    text = render(newer(scaleup=result), tmp_path / "perf", tmp_path)
    assert text.count("| 4 (100 %) |") == 1
    assert "| 2 (50 %) | 0.10 |" in text


def test_dynamodb_section(tmp_path: Path) -> None:
    out = tmp_path / "perf"
    text = render(newer(dynamodb=dynamodb_result()), out, tmp_path)
    section = text.split("## DynamoDB Streams")[1].split("\n## ")[0]
    assert "(1 shard: ministack keeps one per table)" in section
    assert "| runtime | 4,002 | 4,402 |" in section
    assert "| raw GetRecords loop | 5,000 | 5,500 |" in section
    assert "| ratio | 0.80x | 0.80x |" in section
    assert "Ratio per round: 0.80x, 0.80x." in section
    _png(out, "dynamodb_throughput", section)


def test_the_newer_sections_say_what_failed(tmp_path: Path) -> None:
    d = data()
    d["benches"]["scale"] = {"ok": False, "error": "timed out", "command": "z"}
    text = render(d, tmp_path / "perf", tmp_path)
    assert "_bench_scale failed: timed out. Command: `z`._" in text
    assert "_bench_scaleup: not run._" in text
    assert "_bench_dynamodb: not run._" in text
