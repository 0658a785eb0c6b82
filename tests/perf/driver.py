"""The command-line scaffolding the runtime benchmarks (bench_sqs, bench_sqs_fifo, bench_kafka)
share: their common options, the server they run against (an emulator or a broker started here
unless one is given), the work directory, and what a failed run prints.

Each benchmark keeps its own options, checks, progress lines, summary and RESULT figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.perf.common import BenchError
from tests.support.aws import client
from tests.support.emulator import Ministack, Tansu

Served = contextlib.AbstractContextManager[tuple[str, dict[str, int]]]
_S = TypeVar("_S", Ministack, Tansu)


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def _server(
    given: str | None, make: Callable[[], _S], address: Callable[[_S], str], label: str
) -> Iterator[tuple[str, dict[str, int]]]:
    """(address, processes to watch): ``given``, or a server made, started and stopped here
    whose process is watched as ``label``, so its CPU time is reported with the runtime's."""
    if given:
        yield given, {}
        return
    server = make()
    try:
        server.start()
        pids: dict[str, int] = {}
        proc = getattr(server, "_proc", None)
        if isinstance(proc, subprocess.Popen):
            pids[label] = proc.pid
        yield address(server), pids
    finally:
        server.stop()


def emulator(endpoint: str | None, workdir: Path) -> Served:
    """(endpoint, processes to watch): the one given, or a ministack started (and stopped) here."""
    return _server(endpoint, lambda: Ministack(workdir), lambda m: m.endpoint, "emulator")


def broker(bootstrap: str | None, workdir: Path) -> Served:
    """(bootstrap, processes to watch): the one given, or a Tansu started (and stopped) here."""
    return _server(bootstrap, lambda: Tansu(workdir), lambda t: t.bootstrap, "broker")


# --------------------------------------------------------------------------- options


def add_runtime_env_and_keep(
    p: argparse.ArgumentParser, keep_help: str, filter_share_help: str | None = None
) -> None:
    """The last options of every runtime benchmark: --runtime-env, --filter-share (when its
    help is given) and --keep."""
    p.add_argument(
        "--runtime-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the runtime (experiments; repeatable)",
    )
    if filter_share_help is not None:
        p.add_argument("--filter-share", action="store_true", help=filter_share_help)
    p.add_argument("--keep", action="store_true", help=keep_help)


def add_timeout_options(
    p: argparse.ArgumentParser, timeout_help: str, stall_default: float, stall_help: str
) -> None:
    """--timeout (900 s by default) and --stall-timeout."""
    p.add_argument("--timeout", type=float, default=900.0, help=timeout_help)
    p.add_argument("--stall-timeout", type=float, default=stall_default, help=stall_help)


def parse_env(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict; raises ValueError on anything else."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--runtime-env wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out


# --------------------------------------------------------------------------- one run


@dataclass
class Setup:
    """What a benchmark's run starts from."""

    args: argparse.Namespace
    server: str  # the emulator's endpoint, or the broker's bootstrap
    extra_pids: dict[str, int]  # processes whose CPU time is reported too (the server's)
    workdir: Path
    runtime_env: dict[str, str]  # --runtime-env


@dataclass
class QueueContext:
    """What the phases of an SQS benchmark use."""

    args: argparse.Namespace
    endpoint: str
    sqs: Any  # a client on the endpoint
    workdir: Path
    runtime_env: dict[str, str]
    extra_pids: dict[str, int]  # processes whose CPU time is reported too (the emulator)

    @classmethod
    def of(cls, s: Setup) -> QueueContext:
        sqs = client("sqs", s.server)
        return cls(s.args, s.server, sqs, s.workdir, s.runtime_env, s.extra_pids)


def result_line(summary: dict[str, Any]) -> str:
    return "RESULT " + json.dumps(summary, separators=(",", ":"))


def run_main(
    name: str,
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    workdir_prefix: str,
    server: Callable[[Path], Served],
    run: Callable[[Setup], bool],
) -> int:
    """The rest of a benchmark's main() once its own checks passed: ``run`` in a fresh work
    directory against ``server(workdir)``; the exit code, 0 when ``run`` says so.

    A BenchError from ``run`` is reported on stderr and as ``RESULT {"ok": false, ...}``. The
    work directory is removed after a successful run, unless --keep.
    """
    try:
        runtime_env = parse_env(args.runtime_env)
    except ValueError as exc:
        parser.error(str(exc))

    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    ok = False
    try:
        with server(workdir) as (address, extra_pids):
            try:
                ok = run(Setup(args, address, extra_pids, workdir, runtime_env))
            except BenchError as exc:
                print(f"{name}: FAILED: {exc}", file=sys.stderr, flush=True)
                print(f"{name}: logs kept in {workdir}", file=sys.stderr)
                print("RESULT " + json.dumps({"ok": False, "error": str(exc)[:2000]}), flush=True)
        return 0 if ok else 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
