"""What the phases of bench_kafka share: the broker's topics, producing, the consumer settings
both sides use, the runtime's configuration, child processes and the run's context."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.perf.common import BenchError, Runtime, make_body
from tests.perf.driver import Setup

PARTITIONS = 8
SESSION_TIMEOUT_MS = 6000
FETCH_WAIT_MAX_MS = 10
# librdkafka >= 2.1 waits fetch.queue.backoff.ms (default 1000) before fetching again for a
# partition whose local queue is over its thresholds; 10 ms keeps a busy consumer fed. Used
# only when this librdkafka accepts it (checked at start).
EXTRA_CONSUMER_CONFIG: dict[str, Any] = {"fetch.queue.backoff.ms": 10}
# No AWS service is used; the runtime still wants an endpoint for its (unused) AWS clients.
UNUSED_AWS_ENDPOINT = "http://127.0.0.1:9"
ASSIGN_TIMEOUT = 60.0


@dataclass
class Context:
    """What the phases of bench_kafka use."""

    args: argparse.Namespace
    bootstrap: str
    workdir: Path
    env: dict[str, str]  # the runtime's extra environment
    extra_config: dict[str, Any]  # librdkafka settings beyond the defaults, for both sides
    extra_pids: dict[str, int]  # processes whose CPU time is reported too (the broker)

    @classmethod
    def of(cls, s: Setup, extra_config: dict[str, Any]) -> Context:
        env = runtime_env(extra_config, s.runtime_env)
        return cls(s.args, s.server, s.workdir, env, extra_config, s.extra_pids)


# --------------------------------------------------------------------------- topics


def create_topic(bootstrap: str, partitions: int, prefix: str) -> str:
    """A fresh topic (tests.support.kafka.create_topic, with names mypy --strict accepts)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
        f.result(15)
    return name


def accepted_extra_config(bootstrap: str) -> dict[str, Any]:
    """EXTRA_CONSUMER_CONFIG if this librdkafka knows every key of it, else {}."""
    try:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", **EXTRA_CONSUMER_CONFIG})
    except KafkaException:
        return {}
    c.close()
    return dict(EXTRA_CONSUMER_CONFIG)


def delivery_report() -> tuple[list[str], Callable[[Any, Any], None]]:
    """(the first five delivery errors, a producer's on_delivery callback that collects them)."""
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None and len(failed) < 5:
            failed.append(str(err))

    return failed, delivered


def fill_topic(
    bootstrap: str,
    topic: str,
    n: int,
    value: Callable[[int], str] = make_body,
    partitions: int = PARTITIONS,
) -> float:
    """Produce n records (``value(i)``, make_body's BODY_BYTES by default) round-robin over the
    ``partitions`` (record i to partition i mod partitions); return the seconds."""
    started = time.perf_counter()
    failed, delivered = delivery_report()
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for i in range(n):
        data = value(i).encode()
        while True:
            try:
                p.produce(topic, value=data, partition=i % partitions, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    left = p.flush(300)
    if left or failed:
        raise BenchError(f"fill of {topic}: {left} records not delivered, errors {failed}")
    return time.perf_counter() - started


def produce_steady(
    bootstrap: str, topic: str, rate: float, duration: float, linger_ms: float
) -> tuple[int, float, float, float]:
    """Produce rate x duration records at a steady pace, round-robin over the partitions.

    Returns (records, wall-clock ms when production started, seconds it took, the most it fell
    behind its schedule in ms).
    """
    total = max(1, round(rate * duration))
    failed, delivered = delivery_report()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    p.list_topics(topic, timeout=15)  # connected before the clock starts
    behind = 0.0
    start_wall_ms = time.time() * 1000
    start = time.perf_counter()
    i = 0
    while i < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        if due > i + 1:
            behind = max(behind, (now - start - i / rate) * 1000)
        while i < due:
            p.produce(
                topic, value=make_body(i).encode(), partition=i % PARTITIONS, on_delivery=delivered
            )
            i += 1
        p.poll(0)
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    seconds = time.perf_counter() - start
    left = p.flush(30)
    if left or failed:
        raise BenchError(f"steady produce to {topic}: {left} not delivered, errors {failed}")
    return total, start_wall_ms, seconds, behind


def consumer_config(bootstrap: str, group: str, extra: dict[str, Any]) -> dict[str, Any]:
    """What the runtime's KafkaSource sets (with this benchmark's ESM_KAFKA_* settings)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 3,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        **extra,
    }


def fresh_group(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- the runtime


def runtime_env(extra_config: dict[str, Any], user: dict[str, str]) -> dict[str, str]:
    env = {
        "ESM_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "ESM_KAFKA_FETCH_WAIT_MAX_MS": str(FETCH_WAIT_MAX_MS),
    }
    if extra_config:
        env["ESM_KAFKA_CONSUMER_CONFIG"] = json.dumps(extra_config)
    env.update(user)
    return env


def kafka_config(
    bootstrap: str,
    topic: str,
    handler: str,
    batch_size: int,
    group: str,
    variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One function ``bench`` running ``handler``, one Kafka mapping on ``topic``."""
    function: dict[str, Any] = {"Handler": handler, "Timeout": 30}
    if variables:
        function["Environment"] = {"Variables": variables}
    return {
        "functions": {"bench": function},
        "eventSourceMappings": [
            {
                "FunctionName": "bench",
                "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": batch_size,
                "MaximumBatchingWindowInSeconds": 0,
                "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": group},
            }
        ],
    }


def assigned_partitions(rt: Runtime) -> int:
    """Partitions with a lambda_offset_lag series (set within a second of being assigned)."""
    status, text = rt.get("/metrics")
    if status != 200:
        return 0
    seen = set()
    for family in text_string_to_metric_families(text):
        if family.name == "lambda_offset_lag":
            seen |= {s.labels.get("partition") for s in family.samples}
    return len(seen)


# --------------------------------------------------------------------------- child processes


def _child_main(conn: Connection, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
    """Run ``fn(send, *args)`` and send ("ok", result) or ("error", text) to the parent."""

    def send(status: str, value: Any = None) -> None:
        conn.send((status, value))

    try:
        send("ok", fn(send, *args))
    except BaseException as exc:
        send("error", repr(exc))
    finally:
        conn.close()


class Child:
    """A function in a spawned process (its own interpreter: no GIL shared with anything)."""

    def __init__(self, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        mp = multiprocessing.get_context("spawn")
        self._conn, child = mp.Pipe(duplex=False)
        self.proc = mp.Process(target=_child_main, args=(child, fn, *args), name="bench-child")
        self.proc.start()
        child.close()

    def expect(self, status: str, timeout: float) -> Any:
        """The next message, which must be ``status``; raises BenchError otherwise."""
        try:
            if not self._conn.poll(timeout):
                raise BenchError(f"child process said nothing for {timeout:.0f}s")
            got, value = self._conn.recv()
        except EOFError:
            raise BenchError(f"child process died (exit code {self.proc.exitcode})") from None
        if got != status:
            raise BenchError(f"child process: {value}" if got == "error" else f"child sent {got}")
        return value

    def close(self) -> None:
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self._conn.close()
