"""The runtime as a real process tree (supervisor + workers), the way users run it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.aws import CREDENTIALS, REGION
from tests.support.emulator import REPO, free_port


class RuntimeProcess:
    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        endpoint: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / f"config-{free_port()}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.log_path = workdir / f"runtime-{self.port}.log"
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "AWS_REGION": REGION,
            "ESM_AWS_ENDPOINT_URL": endpoint,
            "ESM_HTTP_PORT": str(self.port),
            "ESM_HTTP_HOST": "127.0.0.1",
            "ESM_WORKERS": str(workers),
            "ESM_LOG_FORMAT": "json",
            "ESM_SQS_WAIT_TIME_SECONDS": "1",
            "ESM_DRAIN_TIMEOUT_SECONDS": "20",
            "ESM_WORKER_RESTART_BACKOFF_SECONDS": "0.2",
            # The test's own lease and mapping stores (the default, esm-data/ under the working
            # directory, would be one file for every test process of a parallel run); the
            # runtimes of one test share them, as the pods of one deployment would.
            "ESM_DATA_DIR": str(workdir / "esm-data"),
            **(env or {}),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> RuntimeProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "run", str(self.config_path)],
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"runtime exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url("/readyz"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"runtime not ready after {timeout}s:\n{self.logs()[-5000:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_tree()
                self.proc.wait(10)
        self._log.close()
        return int(self.proc.returncode)

    def kill_tree(self) -> None:
        assert self.proc is not None
        for pid in [*self.worker_pids(), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> RuntimeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    # ------------------------------------------------------------ inspection

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def wait_workers(self, n: int, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            if len(pids) >= n:
                return pids
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} workers, have {pids}")
            time.sleep(0.05)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = self.get("/metrics")
        assert status == 200, text
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for (n, lbls), value in self.metrics().items():
            if n == name and all(dict(lbls).get(k) == v for k, v in labels.items()):
                total += value
        return total

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
