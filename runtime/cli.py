"""Command line: ``esm-runtime`` (or ``python -m runtime``).

- ``validate CONFIG`` and ``run CONFIG``: check a configuration file, run its mappings;
- ``invoke CONFIG FUNCTION``: run a handler once with a sample, recorded or fetched event and
  show what the runtime would do with its answer (:mod:`runtime.commands.invoke`);
- ``mappings ...``: manage a running runtime's mappings through its API
  (:mod:`runtime.commands.mappings`).

``worker`` is internal: the supervisor starts workers with it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="esm-runtime",
        description="AWS Lambda event source mappings, self-hosted.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a configuration file and list every problem")
    v.add_argument("config", help="YAML file with functions and eventSourceMappings")
    r = sub.add_parser("run", help="run the mappings of a configuration file")
    r.add_argument("config")
    r.add_argument(
        "--workers",
        type=int,
        help="worker processes per function (ESM_WORKERS; default: the cores shared out)",
    )
    r.add_argument("--port", type=int, help="HTTP port for /metrics, /healthz, /readyz")
    from runtime.commands import invoke, mappings

    invoke.add_parser(sub)
    mappings.add_parser(sub)
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("config")
    w.add_argument("--plan", required=True, help="the supervisor's plan for this worker (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Handlers are imported from the working directory, as Lambda imports from the task root.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if args.command == "validate":
        return _validate(args.config)
    if args.command == "run":
        if args.workers is not None:
            os.environ["ESM_WORKERS"] = str(args.workers)
        if args.port is not None:
            os.environ["ESM_HTTP_PORT"] = str(args.port)
        return _run(args.config)
    if args.command == "invoke":
        from runtime.commands import invoke

        return invoke.run(args)
    if args.command == "mappings":
        from runtime.commands import mappings

        return mappings.run(args)
    return _worker(args.config, args.plan)


def _validate(path: str) -> int:
    from runtime.config.loader import ConfigError, load_config
    from runtime.config.settings import Settings

    try:
        config = load_config(path, Settings())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(config.functions)} functions, {len(config.mappings)} mappings)")
    for m in config.mappings:
        state = "enabled" if m.enabled else "disabled"
        print(
            f"  {m.uuid}  {m.function.name} <- {m.source.identity}  "
            f"BatchSize={m.batch_size} Window={m.batching_window_seconds:g}s "
            f"MaximumConcurrency={m.maximum_concurrency or '-'} ({state})"
        )
    return 0


def _prepare_metrics_dir() -> str:
    """Set PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported anywhere."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for f in Path(path).glob("*.db"):
            f.unlink()
    else:
        path = tempfile.mkdtemp(prefix="esm-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _run(path: str) -> int:
    metrics_dir = _prepare_metrics_dir()
    owns_dir = metrics_dir.startswith(tempfile.gettempdir()) and "esm-metrics-" in metrics_dir

    import uvloop

    from runtime.config.loader import ConfigError, build_config, read_document
    from runtime.config.settings import Settings
    from runtime.logging import configure_logging
    from runtime.supervisor.supervisor import Supervisor

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, process="supervisor")
    try:
        # Handlers are imported by their own workers, in their own environment.
        document = read_document(path)
        config = build_config(document, path, settings, import_handlers=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        return uvloop.run(Supervisor(path, config, settings, document).run())
    finally:
        if owns_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def tune_gc(threshold: int) -> None:
    """Collect young objects every ``threshold`` allocations instead of Python's 700, and
    leave what exists at start-up (modules, config) out of every collection: the records a
    worker holds in flight would otherwise be walked again and again (see
    ``ESM_WORKER_GC_THRESHOLD``). Cycles are still collected, just in larger rounds."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def _worker(path: str, plan_json: str) -> int:
    import uvloop

    from runtime.config.loader import ConfigError, load_config
    from runtime.config.settings import Settings
    from runtime.logging import configure_logging
    from runtime.supervisor.plan import WorkerPlan
    from runtime.worker import EXIT_CONFIG, Worker

    settings = Settings()
    plan = WorkerPlan.from_json(plan_json)
    configure_logging(settings.log_level, settings.log_format, process=f"worker-{plan.name}")
    fd = os.environ.get("ESM_CONTROL_FD")
    control = socket.socket(fileno=int(fd)) if fd else None
    if control is not None:
        control.setblocking(False)
    try:
        config = load_config(path, settings, import_handlers=False)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        code = EXIT_CONFIG
    else:
        # Not uvloop.run/asyncio.run: their cleanup cancels leftover tasks and waits for them,
        # and a handler that ignores cancellation would keep the worker alive forever.
        tune_gc(settings.worker_gc_threshold)
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(Worker(config, settings, plan, control).run())
    sys.stdout.flush()
    sys.stderr.flush()
    # A stuck handler thread would block a normal interpreter exit; leave at once.
    os._exit(code)
