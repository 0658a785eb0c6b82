"""A TCP proxy on 127.0.0.1 that tests can cut: network faults between the runtime and a broker.

The proxy forwards every connection to one upstream address. ``cut()`` closes every open
connection and refuses new ones (the peer sees resets) until ``restore()``; ``stall()`` keeps
connections open but holds every byte (a black-holed link) and ``slow(seconds)`` delays each
chunk, until ``restore()``. It runs its own
event loop on a thread, so tests drive it from plain synchronous code.

A Kafka client talks to the addresses the broker *advertises*, so a broker under test must
advertise the proxy's address (see :class:`ProxiedTansu`).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from pathlib import Path

from tests.support.emulator import TANSU, free_port, wait_tcp


class TcpProxy:
    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._cut = False
        self._stalled = False
        self._delay = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        self._cut = True
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)

    def stall(self) -> None:
        """Hold every byte in both directions (connections stay open)."""
        self._stalled = True

    def slow(self, seconds: float) -> None:
        """Delay every chunk forwarded by ``seconds``."""
        self._delay = seconds

    def restore(self) -> None:
        self._cut = False
        self._stalled = False
        self._delay = 0.0

    # ------------------------------------------------------------------ loop thread

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        self._server.close()

    async def _close_all(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while self._stalled and not self._cut:  # noqa: ASYNC110 (set from another thread)
                    await asyncio.sleep(0.05)
                if self._delay:
                    await asyncio.sleep(self._delay)
                if self._cut:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()


class ProxiedTansu:
    """A Tansu broker of its own, reachable (and advertised) only through a :class:`TcpProxy`."""

    def __init__(self, log_dir: Path) -> None:
        self.broker_port = free_port()
        self.proxy = TcpProxy(self.broker_port)
        self.bootstrap = f"127.0.0.1:{self.proxy.port}"
        self.direct = f"127.0.0.1:{self.broker_port}"  # for test checks that must not be cut
        self.log_path = log_dir / f"tansu-proxied-{self.broker_port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxiedTansu:
        self.proxy.start()
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                str(TANSU),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.broker_port}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_tcp("127.0.0.1", self.broker_port)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._log.close()
        self.proxy.stop()
