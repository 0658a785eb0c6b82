"""docs/performance.md and its charts, from the figures tests/perf/report.py collected.

Pure rendering: no benchmark runs here, so the text and charts can be changed and written again
with ``python -m tests.perf.report --render-only``. Every section reads its benchmark's RESULT
figures defensively: a benchmark that failed or was skipped gets a line saying so, never a
crash, and a figure a benchmark does not report is shown as "n/a".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Data = dict[str, Any]


# --------------------------------------------------------------------------- text helpers


def num(value: Any, digits: int = 0) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def get(d: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(d, dict):
            d = d.get(key)
        elif isinstance(d, list) and isinstance(key, int) and -len(d) <= key < len(d):
            d = d[key]
        else:
            return None
    return d


# --------------------------------------------------------------------------- charts


class Charts:
    """matplotlib on the Agg backend (no display), one PNG per chart; without matplotlib the
    report says how to install it instead of failing."""

    def __init__(self, out_dir: Path, link_base: Path) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.rel = os.path.relpath(out_dir, link_base)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.plt: Any = None
        else:
            self.plt = plt

    def save(self, name: str, draw: Callable[[Any], None], alt: str) -> str:
        if self.plt is None:
            return "_(chart not drawn: matplotlib is missing; run `deploy/setup.sh --perf`)_\n"
        fig = self.plt.figure(figsize=(7.5, 3.6), dpi=110)
        try:
            draw(fig)
            fig.tight_layout()
            fig.savefig(self.out_dir / f"{name}.png")
        finally:
            self.plt.close(fig)
        return f"![{alt}]({self.rel}/{name}.png)\n"


def _bars(
    fig: Any, title: str, labels: list[str], values: list[float], unit: str, highlight: int = 0
) -> None:
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#1f77b4" if i == highlight else "#9aa5b1" for i in range(len(labels))]
    ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.18)
    _thousands(ax.xaxis)


def _thousands(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


# --------------------------------------------------------------------------- sections


def _failed(name: str, entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"_{name}: not run._\n"
    if not entry.get("ok"):
        why = entry.get("error") or get(entry, "result", "error") or "failed"
        return f"_{name} failed: {why}. Command: `{entry.get('command', '?')}`._\n"
    return None


def _cmd(entry: dict[str, Any]) -> str:
    return f"Command: `{entry.get('command')}` ({num(entry.get('seconds'), 0)} s).\n"


def kafka_section(entry: Any, charts: Charts) -> str:
    out = ["## Kafka\n"]
    bad = _failed("bench_kafka", entry)
    if bad:
        return out[0] + "\n" + bad
    r = entry["result"]
    steady = r.get("runtime_steady_records_per_s")
    raw = r.get("raw_records_per_s_no_join")
    raw_fmt = r.get("raw_format_records_per_s_no_join")
    peers = r.get("peers") or {}
    out.append(
        f"\n{r.get('records'):,} records of {r.get('body_bytes')} B on {r.get('partitions')} "
        f"partitions, BatchSize {r.get('batch_size')}, no-op handler, {r.get('workers')} "
        "workers, all consumers on the same topic in the same run, each with a fresh consumer "
        "group. Rates are after the group join (steady state for the runtime: between 10 % "
        "and 90 % committed).\n\n"
    )
    rows = [
        ["Runtime (steady)", num(steady), "1.00x"],
        ["Raw `consume()` loop, nothing built", num(raw), ratio(steady, raw)],
        ["Raw loop that builds Lambda-format records (the fair floor)", num(raw_fmt),
         ratio(steady, raw_fmt)],
    ]  # fmt: skip
    labels, values = ["runtime", "raw", "raw+format"], [steady or 0, raw or 0, raw_fmt or 0]
    for name, p in sorted(peers.items()):
        rate = get(p, "records_per_s_no_join")
        rows.append([f"{name} ({get(p, 'version') or ''})".replace(" ()", ""), num(rate),
                     ratio(steady, rate)])  # fmt: skip
        labels.append(name)
        values.append(rate or 0)
    out.append(table(["Consumer", "records/s", "runtime / this"], rows))
    out.append(
        "\nGoals (issue 12): runtime ≥ 0.5x the raw loop and ≥ 1.0x the raw loop that builds "
        f"the records: {ratio(steady, raw)} and {ratio(steady, raw_fmt)}.\n\n"
    )
    out.append(
        charts.save(
            "kafka_throughput",
            lambda fig: _bars(fig, "Kafka: records/s after the join", labels, values, "records/s"),
            "Kafka throughput",
        )
    )
    lat = [(k, r.get(f"{p}latency_{q}_ms")) for p in ("", "raw_") for q in ("p50", "p90", "p99")
           for k in [f"{'raw poll()' if p else 'runtime'} {q}"]]  # fmt: skip
    out.append(
        f"\nLatency, produce to handler, {num(get(r, 'latency', 'rate'))} records/s for "
        f"{num(get(r, 'latency', 'duration'))} s, BatchSize {r.get('latency_batch_size')}:\n\n"
    )
    out.append(
        table(
            ["", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            [
                ["runtime"] + [num(r.get(f"latency_{q}_ms"), 1) for q in ("p50", "p90", "p99",
                                                                         "max")],
                ["raw poll()"] + [num(r.get(f"raw_latency_{q}_ms"), 1)
                                  for q in ("p50", "p90", "p99", "max")],
            ],
        )
    )  # fmt: skip
    if all(v is not None for _, v in lat):

        def draw(fig: Any) -> None:
            ax = fig.add_subplot(1, 1, 1)
            qs = ["p50", "p90", "p99", "max"]
            xs = range(len(qs))
            for off, (label, prefix) in enumerate((("runtime", ""), ("raw poll()", "raw_"))):
                ys = [r.get(f"{prefix}latency_{q}_ms") or 0 for q in qs]
                ax.bar([x + off * 0.4 for x in xs], ys, width=0.4, label=label)
            ax.set_xticks([x + 0.2 for x in xs], qs)
            ax.set_ylabel("ms")
            ax.set_title("Kafka latency, produce to handler", fontsize=10)
            ax.legend()

        out.append("\n" + charts.save("kafka_latency", draw, "Kafka latency percentiles"))
    out.append("\n" + _cmd(entry))
    return "".join(out)


def sqs_section(entry: Any, fifo: Any, charts: Charts) -> str:
    out = ["## SQS\n\n"]
    bad = _failed("bench_sqs", entry)
    if bad:
        out.append(bad)
    else:
        r = entry["result"]
        out.append(
            f"{num(r.get('messages'))} messages of {r.get('body_bytes')} B, BatchSize 10, "
            f"MaximumConcurrency {r.get('concurrency')}, {r.get('workers')} workers; the "
            "baseline is a plain aiobotocore loop (receive 10, delete batch) with the same "
            "number of coroutines.\n\n"
        )
        out.append(
            table(
                ["", "messages/s"],
                [
                    ["runtime", num(r.get("runtime_msgs_per_s"))],
                    ["aiobotocore loop", num(r.get("baseline_msgs_per_s"))],
                    ["ratio", ratio(r.get("runtime_msgs_per_s"), r.get("baseline_msgs_per_s"))],
                ],
            )
        )
        out.append("\n" + _cmd(entry))
    out.append("\n### SQS FIFO: message groups and concurrency\n\n")
    bad = _failed("bench_sqs_fifo", fifo)
    if bad:
        out.append(bad)
        return "".join(out)
    r = fifo["result"]
    runs = r.get("runs") or []
    out.append(
        f"{num(r.get('messages'))} messages, handler sleeping {num(r.get('handler_sleep_ms'))} "
        f"ms per batch of {r.get('batch_size')}, MaximumConcurrency {r.get('max_concurrency')}: "
        "at most min(groups, MaximumConcurrency) batches can run at once.\n\n"
    )
    out.append(
        table(
            ["groups", "messages/s", "ceiling", "concurrency avg", "max", "order"],
            [
                [str(x.get("groups")), num(x.get("msgs_per_s")), str(x.get("ceiling")),
                 num(x.get("concurrency_avg"), 2), str(x.get("concurrency_max")),
                 "kept" if not x.get("order_problems") else "BROKEN"]
                for x in runs
            ],
        )
    )  # fmt: skip
    out.append("\n" + _cmd(fifo))
    return "".join(out)


def kinesis_section(entry: Any, charts: Charts) -> str:
    out = ["## Kinesis\n\n"]
    bad = _failed("bench_kinesis", entry)
    if bad:
        return out[0] + bad
    r = entry["result"]
    out.append(
        f"{num(r.get('records'))} records of {r.get('body_bytes')} B on {r.get('shards')} "
        f"shards, BatchSize {r.get('batch_size')}; the raw loop is aiobotocore GetRecords over "
        "every shard, building nothing.\n\n"
    )
    out.append(
        table(
            ["", "records/s"],
            [
                ["runtime", num(r.get("runtime_records_per_s"))],
                ["raw GetRecords loop", num(r.get("raw_records_per_s"))],
                ["ratio", ratio(r.get("runtime_records_per_s"), r.get("raw_records_per_s"))],
            ],
        )
    )
    pf = r.get("parallelization") or {}
    if pf:
        out.append(
            f"\nParallelizationFactor 1 vs {pf.get('factor')}: {num(pf.get('records'))} records "
            f"on one shard, {pf.get('keys')} partition keys, handler sleeping "
            f"{pf.get('handler_sleep_ms')} ms per batch of {pf.get('batch_size')}: "
            f"{num(pf.get('seconds_pf1'), 2)} s vs {num(pf.get('seconds_pf10'), 2)} s, a "
            f"{num(pf.get('speedup'), 2)}x speed-up ({num(pf.get('speedup_handler_span'), 2)}x "
            f"over the handlers' span; ideal {num(pf.get('ideal_speedup'))}x); order per key "
            f"{'kept' if pf.get('order_kept') else 'BROKEN'}.\n"
        )
    out.append("\n" + _cmd(entry))
    return "".join(out)


def generic_section(title: str, name: str, entry: Any) -> str:
    """A benchmark without a dedicated section: its summary lines, as it printed them."""
    out = [f"## {title}\n\n"]
    bad = _failed(name, entry)
    if bad:
        return out[0] + bad
    lines = [ln for ln in str(entry.get("output", "")).splitlines() if ln.strip()][-25:]
    out.append("```\n" + "\n".join(lines) + "\n```\n\n" + _cmd(entry))
    return "".join(out)


def filter_section(entry: Any) -> str:
    out = ["## Filtering\n\n"]
    bad = _failed("bench_filter", entry)
    if bad:
        return out[0] + bad
    r = entry["result"]
    out.append(f"One core, a {r.get('body_bytes')} B JSON body, pattern `{r.get('pattern')}`:\n\n")
    out.append(
        table(
            ["loop", "evaluations/s"],
            [
                ["json.loads + match (what the pipeline pays)", num(r.get("decode+match_per_s"))],
                ["match alone", num(r.get("match_per_s"))],
                ["json.loads alone (the floor)", num(r.get("decode_per_s"))],
            ],
        )
    )
    out.append("\n" + _cmd(entry))
    return "".join(out)


def render(data: Data, out_dir: Path, report_dir: Path) -> str:
    charts = Charts(out_dir, report_dir)
    m = data.get("machine", {})
    b = data.get("benches", {})
    head = [
        "# Performance\n\n",
        "Written by `python -m tests.perf.report` (tests/perf/report.py): every benchmark in "
        "tests/perf, one after another, against real servers started for the run (Tansu for "
        "Kafka, ministack for SQS, Kinesis and DynamoDB), each runtime a real process tree "
        "(`python -m runtime run`). The figures of every run are in "
        "[perf/results.json](perf/results.json). To measure again:\n\n",
        "    deploy/setup.sh --perf && .venv/bin/python -m tests.perf.report\n\n",
        f"Machine: {m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB, Python "
        f"{m.get('python')}, Linux {m.get('kernel')}; the servers run on the same machine and "
        f"share its cores. Commit {m.get('commit')}, {m.get('date')}."
        + (" **Quick run: sizes too small to publish.**" if data.get("quick") else "")
        + "\n\n",
        "Ratios compare figures from the same run, side by side. A line flagged NOISY in a "
        "benchmark's output had other processes using the cores meanwhile.\n\n",
    ]
    sections = [
        kafka_section(b.get("kafka"), charts),
        sqs_section(b.get("sqs"), b.get("sqs_fifo"), charts),
        kinesis_section(b.get("kinesis"), charts),
        generic_section("DynamoDB Streams", "bench_dynamodb", b.get("dynamodb")),
        generic_section("Scale-up from a backlog", "bench_scaleup", b.get("scaleup")),
        generic_section("Partitions and shards: 1, 64, 512", "bench_scale", b.get("scale")),
        filter_section(b.get("filter")),
    ]
    return "".join(head) + "\n".join(sections)
