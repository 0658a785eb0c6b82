"""Starting real servers for the tests (ministack for AWS services).

A session starts its own ministack on a free port, so parallel sessions do not share state.
ESM_TEST_AWS_ENDPOINT points the tests at an already running emulator instead.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MINISTACK = Path(os.environ.get("ESM_TEST_MINISTACK", REPO / ".emu-venv" / "bin" / "ministack"))


def _stop(proc: subprocess.Popen[bytes] | None, log: Any) -> None:
    """Stop a server started by a test session (terminate, then kill), close its log."""
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# Under pytest-xdist each test process takes its listening ports from a block of its own below
# the kernel's ephemeral range (32768-60999 by default): a port freed here and bound later by a
# server (or freed while a broker restarts on it) cannot then be taken meanwhile by another test
# process, nor by any process's outgoing connection. Outside xdist the kernel chooses.
_PORT_BLOCK_START = 20000
_PORT_BLOCK_SIZE = 1000
_port_turn = itertools.count()


def _xdist_index() -> int | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None


def free_port() -> int:
    index = _xdist_index()
    if index is None or index >= 12:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    start = _PORT_BLOCK_START + index * _PORT_BLOCK_SIZE
    for _ in range(_PORT_BLOCK_SIZE):
        # In turn, not at random: a port handed out here is not handed out again until the
        # block wraps, so a server that restarts on its port finds it still free.
        port = start + next(_port_turn) % _PORT_BLOCK_SIZE
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + _PORT_BLOCK_SIZE - 1}")


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.1)


class Ministack:
    """ministack on a free port; ``env`` adds settings (e.g. ``PERSIST_STATE=1`` and
    ``STATE_DIR``, which keep its state across :meth:`stop` and :meth:`start` again on the
    same port; :meth:`kill` keeps nothing)."""

    def __init__(self, log_dir: Path, *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"ministack-{self.port}.log"
        self.env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not MINISTACK.exists():
            raise RuntimeError(f"{MINISTACK} is missing: run deploy/setup.sh --test first")
        env = dict(
            os.environ,
            BIND_HOST="127.0.0.1",
            GATEWAY_PORT=str(self.port),
            SERVICES="sqs,sns,s3,kinesis,dynamodb,dynamodbstreams",
            LOG_LEVEL="WARNING",
            **self.env,
        )
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [str(MINISTACK)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_http(self.endpoint + "/")

    def kill(self) -> None:
        """SIGKILL: ministack saves nothing, even with PERSIST_STATE."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None
            self._log.close()

    def stop(self) -> None:
        _stop(self._proc, self._log)
        self._proc = None


TANSU = Path(os.environ.get("ESM_TEST_TANSU", REPO / ".emu-venv" / "bin" / "tansu"))


def wait_tcp(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} did not accept within {timeout}s") from None
            time.sleep(0.05)


class Tansu:
    """A Kafka-protocol broker (Tansu) on a free port: in-memory storage unless told otherwise.

    ``storage`` ``s3://bucket/`` with ``env`` (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ...) keeps its
    data in the S3 emulator, so it survives :meth:`kill` and :meth:`start` again on the same
    port (broker-restart tests); ``authentication`` makes it require SASL/SCRAM.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        storage: str = "memory://tansu/",
        authentication: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self.storage = storage
        self.authentication = authentication
        self.env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not TANSU.exists():
            raise RuntimeError(f"{TANSU} is missing: run deploy/setup.sh --test first")
        url = f"tcp://{self.bootstrap}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                str(TANSU),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
                *(["--authentication"] if self.authentication else []),
            ],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_tcp("127.0.0.1", self.port)

    def kill(self) -> None:
        """SIGKILL, as a crashed broker dies (start() again brings it back on the same port)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None
            self._log.close()

    def stop(self) -> None:
        _stop(self._proc, self._log)
        self._proc = None


KINESIS_LOCAL = Path(
    os.environ.get(
        "ESM_TEST_KINESIS_LOCAL", REPO / ".emu-node" / "node_modules" / "kinesis-local" / "main.js"
    )
)


class KinesisLocal:
    """kinesis-local (a faithful Kinesis that reshards: split, merge, parent shards)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"kinesis-local-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not KINESIS_LOCAL.exists():
            raise RuntimeError(f"{KINESIS_LOCAL} is missing: run deploy/setup.sh --test first")
        env = dict(
            os.environ,
            KINESIS_MOCK_PLAIN_PORT=str(self.port),
            KINESIS_MOCK_TLS_PORT=str(free_port()),
            KINESIS_MOCK_CERT_PATH=str(KINESIS_LOCAL.parent / "server.json"),
            # Resharding takes effect quickly (the defaults model AWS's delays).
            SHARD_LIMIT="100",
            CREATE_STREAM_DURATION="100ms",
            UPDATE_SHARD_COUNT_DURATION="100ms",
            SPLIT_SHARD_DURATION="100ms",
            MERGE_SHARDS_DURATION="100ms",
        )
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            ["node", str(KINESIS_LOCAL)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_tcp("127.0.0.1", self.port)

    def stop(self) -> None:
        _stop(self._proc, self._log)
