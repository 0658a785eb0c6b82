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
from typing import Any, NamedTuple

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


def _caption(machine: Data, entry: dict[str, Any]) -> str:
    """Under a chart, in place of the section's closing command line: the machine and the
    command, so the figure still says where it comes from when looked at (or copied) alone."""
    return (
        f"\nMachine: {machine.get('cores')} cores ({machine.get('cpu')}), "
        f"{machine.get('memory_gib')} GiB, commit {machine.get('commit')}. " + _cmd(entry)
    )


def _per(a: Any, b: Any) -> float | None:
    """a / b, or None when either is missing or b is 0 (shown as n/a)."""
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return a / b


def _percent(a: Any, b: Any) -> str:
    share = _per(a, b)
    return "n/a" if share is None else f"{100 * share:.0f}"


# --------------------------------------------------------------------------- bench_scale


class ScaleRow(NamedTuple):
    """One unit count of one source in bench_scale's RESULT (``sources.<name>.runs[i]``)."""

    source: str
    unit: str  # "partition" or "shard"
    units: Any  # the count (an int, unless the RESULT is damaged)
    idle: Data
    load: Data


def _scale_rows(sources: Any) -> list[ScaleRow]:
    """Every run of every source, in the order measured (a missing half shows as n/a)."""
    out = []
    for name, src in (sources if isinstance(sources, dict) else {}).items():
        unit = get(src, "unit") or "unit"
        for run in get(src, "runs") or []:
            idle, load = get(run, "idle"), get(run, "load")
            out.append(ScaleRow(str(name), str(unit), get(run, "units"),
                                idle if isinstance(idle, dict) else {},
                                load if isinstance(load, dict) else {}))  # fmt: skip
    return out


def _units(count: Any, unit: str) -> str:
    return f"{num(count)} {unit}" + ("" if count == 1 else "s")


def _mib_split(run: Data) -> str:
    """``supervisor / worker + worker`` MiB, each process's RSS."""
    workers = get(run, "rss_workers_mib") or []
    return f"{num(run.get('rss_supervisor_mib'), 1)} / " + " + ".join(num(w, 1) for w in workers)


def _balance(idle: Data) -> str:
    """Time to the shard leases balanced over the workers. A source without a lease table
    (Kafka: held_at_* are null, its coordinator assigns at once) has no such time: the bench
    then reports own_seconds again, which is not a balancing figure."""
    if idle.get("held_at_start") is None and idle.get("held_at_end") is None:
        return "-"
    if idle.get("balanced_seconds") is None:
        return "not in time"
    return num(idle.get("balanced_seconds"), 1)


def _scale_idle_table(rows: list[ScaleRow]) -> str:
    return table(
        ["source", "units", "RSS MiB", "supervisor / workers MiB", "runtime cores",
         "server cores", "all owned s", "leases balanced s", "/metrics KiB, ms"],
        [
            [name, _units(units, unit), num(i.get("rss_total_mib"), 1), _mib_split(i),
             num(i.get("runtime_cores"), 3), num(i.get("server_cores"), 3),
             num(i.get("own_seconds"), 2), _balance(i),
             f"{num(_per(i.get('metrics_bytes'), 1024), 0)}, "
             f"{num(i.get('metrics_scrape_cpu_ms'), 1)}"]
            for name, unit, units, i, _ in rows
        ],
    )  # fmt: skip


def _scale_load_table(rows: list[ScaleRow]) -> str:
    return table(
        ["source", "units", "records", "records/s", "steady records/s", "RSS MiB",
         "runtime cores", "worker µs/record", "all committed s from launch"],
        [
            [name, _units(units, unit), num(ld.get("records")),
             num(ld.get("records_per_s")), num(ld.get("steady_records_per_s")),
             num(ld.get("rss_total_mib"), 1),
             num(_per(ld.get("runtime_cpu_seconds"), ld.get("seconds")), 2),
             num(ld.get("worker_cpu_us_per_record"), 1), num(ld.get("committed_seconds"), 1)]
            for name, unit, units, _, ld in rows
        ],
    )  # fmt: skip


def _scale_chart(fig: Any, rows: list[ScaleRow]) -> None:
    """RSS (left) and idle runtime cores (right) against units, log x: what each added
    partition or shard costs is the slope."""
    mem, cpu = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    units: set[int] = set()
    for n, name in enumerate(dict.fromkeys(r.source for r in rows)):
        mine = [r for r in rows if r.source == name and isinstance(r.units, int)]
        xs = [r.units for r in mine]
        units.update(xs)
        for label, style, runs in (("idle", "o-", [r.idle for r in mine]),
                                   ("loaded", "s--", [r.load for r in mine])):  # fmt: skip
            ys = [run.get("rss_total_mib") or float("nan") for run in runs]
            mem.plot(xs, ys, style, color=f"C{n}", label=f"{name} {label}")
        ys = [r.idle.get("runtime_cores") or float("nan") for r in mine]
        cpu.plot(xs, ys, "o-", color=f"C{n}", label=name)
    for ax, title, unit in ((mem, "RSS, supervisor + workers", "MiB"),
                            (cpu, "CPU while idle (runtime)", "cores")):  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(sorted(units), [str(u) for u in sorted(units)])
        ax.set_xlabel("partitions / shards")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    mem.set_ylim(bottom=0)
    cpu.set_ylim(bottom=0)


def scale_section(entry: Any, charts: Charts, machine: Data) -> str:
    out = ["## Partitions and shards\n\n"]
    bad = _failed("bench_scale", entry)
    if bad:
        return out[0] + bad
    r = entry["result"]
    rows = _scale_rows(r.get("sources"))
    out.append(
        "What each Kafka partition or Kinesis shard a mapping owns costs: every one is a unit "
        "of the ordered core with its own reader, buffers, checkpoint tracker and metrics "
        f"series. For each unit count, a fresh runtime with {r.get('workers')} workers, a "
        f"no-op handler and BatchSize {r.get('batch_size')} on a fresh topic or stream; read "
        "a source's rows downwards: the growth from one unit is what the added units cost.\n\n"
        "**Idle**: on an empty topic or stream, once every unit is owned (and, for Kinesis, "
        f"the shard leases balanced over the workers), {num(r.get('settle_seconds'))} s to "
        f"settle, then CPU over {num(r.get('idle_seconds'))} s and RSS at the end. Cores are "
        "CPU seconds per second: the runtime's (supervisor + workers) and the server's "
        "(broker or emulator; from 64 shards on, ministack's own cost, not what Kinesis "
        "would charge). Leases balanced: seconds from `/readyz` until no worker held more "
        "than one shard over another (the first worker takes every free lease, the other "
        "asks for its share by hand-offs; Kafka has no leases). The "
        "last column is one `/metrics` response's size and the supervisor's CPU to render "
        "it.\n\n"
        f"**Under load**: records of {r.get('body_bytes')} B filled beforehand, timed from the "
        "first record read to the last committed (steady: between 10 % and 90 % committed); "
        "RSS right after; all committed is seconds from the launch.\n\n"
    )
    if not rows:
        return "".join(out) + "_No run reported._\n\n" + _cmd(entry)
    out.append("Idle:\n\n" + _scale_idle_table(rows))
    out.append("\nUnder load:\n\n" + _scale_load_table(rows))
    chart = charts.save("scale_memory", lambda fig: _scale_chart(fig, rows), "Cost by units")
    out.append("\n" + chart + _caption(machine, entry))
    return "".join(out)


# --------------------------------------------------------------------------- bench_scaleup

# Lambda's documented SQS ramp, as bench_scaleup models it (LAMBDA_INITIAL,
# LAMBDA_RATES_PER_MINUTE there; not imported, so rendering loads no benchmark code):
# five concurrent batches at once, then this many more per minute.
LAMBDA_INITIAL = 5
LAMBDA_RAMPS = {
    "current": ("Lambda, 300/min", 300),
    "before_2023": ("Lambda before 2023, 60/min", 60),
}


def _seconds(value: Any) -> str:
    return "never" if value is None else num(value, 2)


def _levels(r: Data) -> list[int]:
    """The concurrency targets (50, 90, 100 % of the maximum, rounded up), each once: with a
    small maximum two of them are the same level."""
    return [x for x in dict.fromkeys(r.get("levels") or []) if isinstance(x, int)]


def _scaleup_table(r: Data) -> str:
    maximum = r.get("maximum_concurrency")
    rows = []
    for level in _levels(r):
        k = str(level)
        rows.append(
            [f"{level} ({_percent(level, maximum)} %)", _seconds(get(r, "handler_seconds", k)),
             _seconds(get(r, "sampled_seconds", k)), _seconds(get(r, "limit_seconds", k))]
            + [_seconds(get(r, "lambda_seconds", name, k)) for name in LAMBDA_RAMPS]
        )  # fmt: skip
    headers = ["concurrency (of max.)", "runtime s", "sampled s", "limit s"]
    return table(headers + [f"{label} s (model)" for label, _ in LAMBDA_RAMPS.values()], rows)


def _ramp(maximum: int, per_minute: int, end: float) -> tuple[list[float], list[float]]:
    """Lambda's modelled concurrency from 0 to ``end`` s: the initial batches, then linear up
    to the maximum (cut at ``end`` so a slow ramp does not squash the measured curve)."""
    start = min(LAMBDA_INITIAL, maximum)
    full = max(0, maximum - LAMBDA_INITIAL) * 60 / per_minute
    cut = min(full, max(end, 0.0))
    at_cut = min(maximum, start + per_minute / 60 * cut)
    return [0.0, cut, max(end, cut)], [start, at_cut, at_cut]


def _scaleup_timeline(fig: Any, r: Data, timeline: list[list[float]]) -> None:
    """Concurrency as sampled from the runtime's gauges against Lambda's modelled ramp."""
    ax = fig.add_subplot(1, 1, 1)
    maximum = r.get("maximum_concurrency") or 0
    ts = [p[0] for p in timeline]
    ax.step(ts, [p[1] for p in timeline], where="post", label="handlers running (sampled)")
    ax.step(ts, [p[3] for p in timeline], where="post", ls="--", label="concurrency limit")
    for (label, rate), style in zip(LAMBDA_RAMPS.values(), (":", "-."), strict=True):
        xs, ys = _ramp(maximum, rate, ts[-1])
        ax.plot(xs, ys, style, color="#9aa5b1", label=f"{label} (model)")
    ax.axhline(maximum, color="#d62728", lw=0.8, label="MaximumConcurrency")
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("seconds from /readyz")
    ax.set_ylabel("concurrent batches")
    ax.set_title("SQS scale-up from a backlog", fontsize=10)
    ax.legend(fontsize=7)


def _scaleup_bars(fig: Any, r: Data) -> None:
    """Without a time series: seconds to each level, runtime against Lambda's model."""
    ax = fig.add_subplot(1, 1, 1)
    levels = _levels(r)
    series = [("runtime", get(r, "handler_seconds"))]
    series += [(label, get(r, "lambda_seconds", name)) for name, (label, _) in LAMBDA_RAMPS.items()]
    width = 0.8 / len(series)
    for off, (label, by_level) in enumerate(series):
        ys = [get(by_level, str(level)) for level in levels]
        ys = [y if isinstance(y, int | float) else float("nan") for y in ys]
        ax.bar([x + off * width for x in range(len(levels))], ys, width=width, label=label)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(levels))], [str(x) for x in levels])
    ax.set_xlabel("concurrent batches")
    ax.set_ylabel("seconds")
    ax.set_title("SQS scale-up: seconds to each level", fontsize=10)
    ax.legend(fontsize=7)


def _timeline(r: Data) -> list[list[float]]:
    """The sampled [seconds, concurrent, inflight, limit] rows that are whole."""
    rows = r.get("timeline") or []
    return [p for p in rows if isinstance(p, list) and len(p) >= 4 and None not in p[:4]]


def scaleup_section(entry: Any, charts: Charts, machine: Data) -> str:
    out = ["## Scale-up from a backlog\n\n"]
    bad = _failed("bench_scaleup", entry)
    if bad:
        return out[0] + bad
    r = entry["result"]
    maximum = r.get("maximum_concurrency")
    out.append(
        f"A backlog of {num(r.get('messages'))} SQS messages, BatchSize 10, "
        f"ScalingConfig.MaximumConcurrency {maximum}, a handler sleeping "
        f"{num(r.get('sleep_ms'))} ms per batch, {r.get('workers')} workers: seconds from "
        "`/readyz` until that many batches first ran at once (runtime: the handlers' recorded "
        "intervals; sampled: the `lambda_concurrent_executions` gauge, which can miss short "
        "peaks; limit: `esm_concurrency_limit`). Negative: before `/readyz` answered. "
        "Lambda's figures are its documented ramp, modelled, not measured: "
        f"{LAMBDA_INITIAL} batches at once, then 300 more a minute (60 before 2023), from "
        "when its pollers see the backlog.\n\n"
    )
    out.append(_scaleup_table(r))
    peak = r.get("concurrency_max")
    out.append(
        f"\nPeak {num(peak)} of {maximum} ({_percent(peak, maximum)} %), "
        f"maximum {'reached' if r.get('reached_maximum') else 'NOT reached'}; first "
        f"invocation {num(r.get('first_invocation_seconds'), 2)} s from `/readyz`; average "
        f"concurrency over the drain {num(r.get('concurrency_avg'), 2)}. Drain "
        f"{num(r.get('drain_seconds'), 2)} s = {num(r.get('msgs_per_s'))} messages/s; with "
        f"every slot busy from the start it would take {num(r.get('ideal_drain_seconds'), 2)} "
        "s (ministack serves about 1,100-1,300 messages/s in all, which can hold the runtime "
        "below its ceiling).\n"
    )
    timeline = _timeline(r)
    if timeline:
        chart = charts.save(
            "scaleup", lambda fig: _scaleup_timeline(fig, r, timeline), "Scale-up over time"
        )
    elif _levels(r):
        chart = charts.save("scaleup", lambda fig: _scaleup_bars(fig, r), "Scale-up vs Lambda")
    else:
        return "".join(out) + "\n" + _cmd(entry)
    out.append("\n" + chart + _caption(machine, entry))
    return "".join(out)


# --------------------------------------------------------------------------- bench_dynamodb


def _shards_text(shards: Any) -> str:
    """The shards each raw run listed (ministack keeps one per table), said once if all
    agree."""
    seen = sorted({s for s in shards or [] if isinstance(s, int)})
    if not seen:
        return "shards not reported"
    n = "/".join(str(s) for s in seen)
    return f"{n} shard{'' if seen == [1] else 's'}"


def dynamodb_section(entry: Any, charts: Charts, machine: Data) -> str:
    out = ["## DynamoDB Streams\n\n"]
    bad = _failed("bench_dynamodb", entry)
    if bad:
        return out[0] + bad
    r = entry["result"]
    repeat = r.get("repeat")
    out.append(
        f"{num(r.get('records'))} INSERT records ({r.get('view')}) of items of about "
        f"{r.get('item_bytes')} B on one table's stream ({_shards_text(r.get('shards'))}: "
        f"ministack keeps one per table), BatchSize {r.get('batch_size')}, "
        f"{_units(r.get('workers'), 'worker')}, poll and checkpoint intervals "
        f"{num(r.get('poll_interval'), 2)} s and "
        f"{num(r.get('checkpoint_interval'), 2)} s. The runtime is timed from `/readyz` to "
        "every record committed; the raw loop is aiobotocore DescribeStream then GetRecords "
        "(Limit 1000) over every shard, counting records, decoding nothing. "
        + (
            f"Medians of {repeat} runs each, alternated."
            if isinstance(repeat, int) and repeat > 1
            else "One run each."
        )
        + "\n\n"
    )
    rt, raw = r.get("runtime_records_per_s"), r.get("raw_records_per_s")
    rt_first, raw_first = (
        r.get("runtime_records_per_s_from_first_record"),
        r.get("raw_records_per_s_from_first_record"),
    )
    out.append(
        table(
            ["", "records/s", "from the first record read"],
            [
                ["runtime", num(rt), num(rt_first)],
                ["raw GetRecords loop", num(raw), num(raw_first)],
                ["ratio", ratio(rt, raw), ratio(rt_first, raw_first)],
            ],
        )
    )
    pairs = [p for p in r.get("pair_ratios") or [] if isinstance(p, int | float)]
    if len(pairs) > 1:
        out.append("\nRatio per round: " + ", ".join(f"{p:.2f}x" for p in pairs) + ".\n")
    chart = charts.save(
        "dynamodb_throughput",
        lambda fig: _bars(fig, "DynamoDB Streams: records/s", ["runtime", "raw GetRecords"],
                          [rt or 0, raw or 0], "records/s"),
        "DynamoDB Streams throughput",
    )  # fmt: skip
    out.append("\n" + chart + _caption(machine, entry))
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
        dynamodb_section(b.get("dynamodb"), charts, m),
        scaleup_section(b.get("scaleup"), charts, m),
        scale_section(b.get("scale"), charts, m),
        filter_section(b.get("filter")),
    ]
    return "".join(head) + "\n".join(sections)
