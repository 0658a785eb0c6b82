"""bench_kafka's peer frameworks (phase A4): one peer consumes a pre-filled topic, at least once
with commits, in this process; the last line printed is ``RESULT {json}``.

    .peer-venv/<peer>/bin/python -m tests.perf.kafka_peers {arroyo,quixstreams} BOOTSTRAP TOPIC N
        GROUP [--config JSON] [--watch JSON] [--timeout SECONDS] [--state-dir DIR]

Run by each peer's own interpreter (``deploy/setup.sh --perf`` makes ``.peer-venv/arroyo`` and
``.peer-venv/quixstreams``), because the peers and the runtime disagree on confluent-kafka:
quixstreams 3.28 wants < 2.13, sentry-arroyo 2.48 >= 2.13.2. So this module imports only the
standard library, confluent-kafka and the peer: nothing of the project, whose packages are not
in those venvs. :mod:`tests.perf.kafka_peer_runs` starts it and reads its figures.

Each peer runs in one process, as each is used: arroyo's StreamProcessor and a quixstreams
Application are one consumer each, scaled by starting more processes in the consumer group
(arroyo's RunTaskWithMultiprocessing only farms the processing function out to a pool, which
for a no-op would add pickling and nothing else). One process is also the fair unit for a
"per core" comparison.

How each is configured (the job: hand every record, undecoded, to a no-op function, then
commit; the same as the runtime's no-op handler and the raw loops):

- arroyo (sentry-arroyo): ``KafkaConsumer(build_kafka_consumer_configuration(...))`` and a
  ``StreamProcessor`` whose strategy factory chains ``RunTask(no-op)`` into
  ``CommitOffsets(commit)`` with the commit policy ``ONCE_PER_SECOND``: the streaming consumer
  of arroyo's "Getting started" page, with the policy its "Committing offsets" page calls a
  reasonable choice (and the StreamProcessor's default since 2.19.3). Offsets are committed
  only after RunTask has run on the message, so at least once. ``enable_auto_commit=False``:
  since 2.32 the configuration helper defaults to handing the stored offsets to librdkafka's
  auto-commit (every auto.commit.interval.ms, 5 s by default), which bypasses the commit policy;
  False keeps the documented policy in charge.
- quixstreams: ``Application(processing_guarantee="at-least-once",
  auto_offset_reset="earliest")`` with the default ``commit_interval`` (5 s), a topic with the
  ``bytes`` value deserializer (the records are not decoded, as by the runtime) and a
  StreamingDataFrame with one ``update(no-op)`` step: the documented minimal pipeline. Its
  checkpoint commits the offsets of processed messages every commit_interval.

Both also get ``--config`` (the librdkafka settings every consumer of bench_kafka has:
session.timeout.ms, heartbeat.interval.ms, fetch.wait.max.ms, fetch.queue.backoff.ms);
partition assignment stays each peer's own (range for both; quixstreams forces it).

Timing, as for the raw loop: the clock starts just before the peer subscribes (arroyo: the
StreamProcessor's constructor; quixstreams: ``Application.run()``, which starts its consumer
and subscribes; ``app.topic()`` has already looked the topic up), so the group join counts;
``first`` is the no-op's first call. The run is done when the group's committed offsets reach
every partition's end, as read every WATCH_SECONDS by a thread here with a consumer of its own
that only asks for the committed offsets (OffsetFetch, no group membership); the peer is then
stopped (outside the window). That is up to about one commit interval after the last record
was processed (1 s for arroyo, 5 s for quixstreams); ``processed`` is the no-op's N-th call,
to show the rate before that wait. CPU seconds of this process (the watcher's few requests
included) and of ``--watch`` processes are read from /proc at the start and at the end of the
window; the caller turns them into a breakdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition, libversion, version

WATCH_SECONDS = 0.1
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- /proc


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), 0 if it is gone (the same reading
    as tests.perf.common.cpu_seconds, which this venv cannot import)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _busy_cpu_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLK_TCK


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, float]:
    """The shape of tests.perf.common.cpu_snapshot, so that its cpu_delta reads two of them."""
    return {**{name: _cpu_seconds(pid) for name, pid in pids.items()}, "": _busy_cpu_seconds()}


# --------------------------------------------------------------------------- the window


@dataclass
class Window:
    """What the no-op and the watcher record (perf_counter times)."""

    n: int
    started: float = 0.0
    first: float | None = None
    processed_at: float | None = None
    done: float | None = None
    count: int = 0
    error: str | None = None
    cpu0: dict[str, float] = field(default_factory=dict)
    cpu1: dict[str, float] = field(default_factory=dict)

    def saw_one(self) -> None:
        """The no-op's whole work: count the record, note the first and the N-th."""
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count == self.n:
            self.processed_at = time.perf_counter()


def end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` at its high watermark: what a finished group has committed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-peer-probe"}, logger=None)
    try:
        meta = c.list_topics(topic, timeout=15).topics[topic]
        out = []
        for p in sorted(meta.partitions):
            _low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            out.append(TopicPartition(topic, p, high))
        return out
    finally:
        c.close()


def watch_commits(
    bootstrap: str,
    group: str,
    ends: list[TopicPartition],
    window: Window,
    watch: Mapping[str, int],
    timeout: float,
    stop: Callable[[], None],
) -> None:
    """Until the group's committed offsets reach ``ends`` (then close the window and ``stop``
    the peer), or ``timeout`` seconds from the window's start (then record an error and stop)."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False},
        logger=None,
    )
    want = {tp.partition: tp.offset for tp in ends}
    try:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                got = c.committed([TopicPartition(tp.topic, tp.partition) for tp in ends], 10)
            except Exception as exc:  # the broker's answer is retried until the timeout
                got, note = [], repr(exc)
            else:
                note = ""
            if got and all(tp.offset >= want[tp.partition] for tp in got):
                window.done = time.perf_counter()
                window.cpu1 = cpu_snapshot(watch)
                break
            if time.perf_counter() - window.started > timeout:
                offsets = {tp.partition: tp.offset for tp in got}
                window.error = (
                    f"not all committed after {timeout:.0f}s: {window.count} of {window.n} "
                    f"processed, committed {offsets} of {want} {note}"
                )
                break
    finally:
        c.close()
        stop()


def start_watcher(
    a: argparse.Namespace,
    ends: list[TopicPartition],
    window: Window,
    watch: Mapping[str, int],
    stop: Callable[[], None],
) -> threading.Thread:
    t = threading.Thread(
        target=watch_commits,
        args=(a.bootstrap, a.group, ends, window, watch, a.timeout, stop),
        name="commit-watcher",
        daemon=True,
    )
    t.start()
    return t


# --------------------------------------------------------------------------- the peers


def run_arroyo(a: argparse.Namespace, config: dict[str, Any], window: Window) -> dict[str, Any]:
    from importlib.metadata import version as dist_version

    from arroyo.backends.kafka import KafkaConsumer, KafkaPayload
    from arroyo.backends.kafka.configuration import build_kafka_consumer_configuration
    from arroyo.commit import ONCE_PER_SECOND
    from arroyo.processing import StreamProcessor
    from arroyo.processing.strategies import (
        CommitOffsets,
        ProcessingStrategy,
        ProcessingStrategyFactory,
        RunTask,
    )
    from arroyo.types import Commit, Message, Partition, Topic

    saw_one = window.saw_one

    def noop(message: Message[KafkaPayload]) -> KafkaPayload:
        saw_one()
        return message.payload

    class Factory(ProcessingStrategyFactory[KafkaPayload]):
        def create_with_partitions(
            self, commit: Commit, partitions: Mapping[Partition, int]
        ) -> ProcessingStrategy[KafkaPayload]:
            return RunTask(noop, CommitOffsets(commit))

    consumer = KafkaConsumer(
        build_kafka_consumer_configuration(
            default_config=config,
            bootstrap_servers=[a.bootstrap],
            auto_offset_reset="earliest",
            group_id=a.group,
            enable_auto_commit=False,
        )
    )
    ends = end_offsets(a.bootstrap, a.topic)
    watch = {"arroyo": os.getpid(), **a.watch}
    window.cpu0 = cpu_snapshot(watch)
    window.started = time.perf_counter()
    processor: StreamProcessor[KafkaPayload] = StreamProcessor(
        consumer=consumer,
        topic=Topic(a.topic),
        processor_factory=Factory(),
        commit_policy=ONCE_PER_SECOND,
    )
    watcher = start_watcher(a, ends, window, watch, processor.signal_shutdown)
    processor.run()
    watcher.join()
    return {
        "version": dist_version("sentry-arroyo"),
        "setup": "KafkaConsumer(build_kafka_consumer_configuration(auto_offset_reset=earliest, "
        "enable_auto_commit=False)) + StreamProcessor(RunTask(no-op) -> CommitOffsets, "
        "commit_policy=ONCE_PER_SECOND)",
    }


def run_quixstreams(
    a: argparse.Namespace, config: dict[str, Any], window: Window
) -> dict[str, Any]:
    from importlib.metadata import version as dist_version

    from quixstreams import Application

    saw_one = window.saw_one

    def noop(_value: Any) -> None:
        saw_one()

    app = Application(
        broker_address=a.bootstrap,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        consumer_extra_config=config,
        state_dir=a.state_dir,
    )
    # update() works in place (its docstring: reassignment is optional).
    app.dataframe(app.topic(a.topic, value_deserializer="bytes")).update(noop)
    ends = end_offsets(a.bootstrap, a.topic)
    watch = {"quixstreams": os.getpid(), **a.watch}
    window.cpu0 = cpu_snapshot(watch)
    window.started = time.perf_counter()
    watcher = start_watcher(a, ends, window, watch, app.stop)
    app.run()
    watcher.join()
    return {
        "version": dist_version("quixstreams"),
        "setup": 'Application(processing_guarantee="at-least-once", auto_offset_reset='
        '"earliest", commit_interval=5.0 default) + topic(value_deserializer="bytes") + '
        "StreamingDataFrame.update(no-op)",
    }


PEERS: dict[str, Callable[[argparse.Namespace, dict[str, Any], Window], dict[str, Any]]] = {
    "arroyo": run_arroyo,
    "quixstreams": run_quixstreams,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.perf.kafka_peers")
    p.add_argument("peer", choices=sorted(PEERS))
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("n", type=int, help="records in the topic, all to be processed")
    p.add_argument("group", help="a fresh consumer group")
    p.add_argument("--config", type=json.loads, default={}, help="librdkafka settings (JSON)")
    p.add_argument(
        "--watch", type=json.loads, default={}, help='{"name": pid} whose CPU time to read'
    )
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--state-dir", default="state", help="quixstreams' state directory")
    a = p.parse_args(argv)
    window = Window(a.n)
    try:
        info = PEERS[a.peer](a, dict(a.config), window)
    except Exception as exc:
        window.error = window.error or repr(exc)
        info = {}
    if window.error is None and (window.done is None or window.first is None):
        window.error = "the peer stopped before its records were committed"
    result: dict[str, Any] = {"ok": window.error is None, "peer": a.peer, **info}
    if window.error is not None:
        result["error"] = window.error
    else:
        assert window.done is not None and window.first is not None
        result.update(
            seconds=window.done - window.started,
            seconds_no_join=window.done - window.first,
            join_seconds=window.first - window.started,
            processed_seconds=(window.processed_at or window.done) - window.first,
            records=window.count,
            cpu_before=window.cpu0,
            cpu_after=window.cpu1,
        )
    result.update(confluent_kafka=version(), librdkafka=libversion()[0])
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if window.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
