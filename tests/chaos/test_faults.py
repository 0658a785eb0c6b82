"""The fault suite: each source under faults a skeptical operator would inject, with every
record numbered and every invocation recorded (tests/chaos/recorder.py), checked for what the
runtime promises (tests/chaos/invariants.py): nothing lost, order per lane kept, no two
invocations of a lane at once, duplicates only where a fault interrupted work.

Bounded in CI; ``ESM_CHAOS_KILLS`` and ``ESM_CHAOS_RECORDS`` make a longer soak. Each scenario
appends its figures to ``ESM_CHAOS_REPORT`` (a JSON-lines file) when that is set;
``python -m tests.chaos.table`` turns them into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.invariants import Invocation, check, completed_numbers, read
from tests.chaos.sources import RESTART_ENV, SOURCES, Source, config
from tests.support.aws import wait_until
from tests.support.kafka import copy_group_offsets
from tests.support.runtime import RuntimeProcess

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("ESM_CHAOS_KILLS", "20"))
RECORDS = int(os.environ.get("ESM_CHAOS_RECORDS", "1000"))


def report(scenario: str, source: str, figures: dict[str, Any]) -> None:
    line = {"scenario": scenario, "source": source, **figures}
    print("chaos:", json.dumps(line))
    path = os.environ.get("ESM_CHAOS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def recoveries(invocations: list[Invocation], deaths: dict[int, float]) -> list[float]:
    """Per kill: how long until every number the victim had in flight was completed again
    by another process (0 when it held nothing)."""
    out = []
    for pid, died in deaths.items():
        held = {n for i in invocations if i.pid == pid and i.end is None for n in i.ns}
        worst = 0.0
        for n in held:
            again = [i.end for i in invocations if i.pid != pid and i.end and i.end > died
                     and n in i.ns]  # fmt: skip
            if again:
                worst = max(worst, min(again) - died)
        out.append(round(worst, 2))
    return out


def wait_all_done(record_file: Path, count: int, timeout: float) -> None:
    wait_until(
        lambda: len(set(completed_numbers(read(record_file))) & set(range(count))) == count,
        timeout,
        interval=0.5,
        what=f"all {count} records completed",
    )


# A record may be done twice only if a killed worker had started it this long before it died:
# in flight, or done but not yet acknowledged (Kafka commits and stream checkpoints are written
# every second; SQS deletes at once).
ACK_WINDOW_SECONDS = 2.5


class Producer:
    """Produces numbered records in steps on a thread until stopped, so the workers always
    have work in flight when a fault lands."""

    def __init__(
        self, source: Source, record_file: Path, *, step: int = 20, pause: float = 0.2,
        backlog: int = 200,
    ) -> None:  # fmt: skip
        self.source, self.step, self.pause, self.backlog = source, step, pause, backlog
        self.record_file = record_file
        self.produced = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # Keep a bounded backlog: workers stay busy and the final drain stays short.
                done = len(completed_numbers(read(self.record_file)))
                if self.produced - done < self.backlog:
                    self.source.produce(range(self.produced, self.produced + self.step))
                    self.produced += self.step
                self._stop.wait(self.pause)
        except BaseException as exc:  # raised again on exit
            self.error = exc


def unexplained_duplicates(invocations: list[Invocation], deaths: dict[int, float]) -> list[int]:
    """Numbers completed twice that no kill explains (see ACK_WINDOW_SECONDS)."""
    exposed = {
        n
        for i in invocations
        if i.pid in deaths and i.start > deaths[i.pid] - ACK_WINDOW_SECONDS
        for n in i.ns
    }
    done = completed_numbers(invocations)
    return sorted(n for n, c in done.items() if c > 1 and n not in exposed)


def tansu_fresh_group(source: Source, cfg: dict[str, Any]) -> dict[str, Any]:
    """Tansu (0.5) sometimes keeps a member that left as the group's leader, and then no new
    member of that group is ever assigned a partition ("Group rebalance in progress" forever).
    A second life therefore reads as a new group that starts exactly where the first one's
    commits ended: the test checks what the drained runtime committed, not Tansu's groups."""
    [mapping] = cfg["eventSourceMappings"]
    old = mapping["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"]
    new = f"{old}-next"
    [bootstrap] = source.mapping["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"]
    copy_group_offsets(bootstrap, source.mapping["Topics"][0], old, new)
    mapping = {**mapping, "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": new}}
    return {**cfg, "eventSourceMappings": [mapping]}


def alive(pid: int) -> bool:
    """Running (an exited orphan may linger as a zombie until its new parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def busy_worker(
    rt: RuntimeProcess, record_file: Path, dead: dict[int, float], rng: random.Random
) -> int | None:
    """A live worker that is running a batch now (waiting up to 3 s for one)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        busy = {i.pid for i in read(record_file) if i.end is None}
        pids = [p for p in rt.worker_pids() if p in busy and p not in dead]
        if pids:
            return rng.choice(pids)
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("name", SOURCES)
def test_kill9_workers_at_random_moments(name, source_of, runtime_factory, record_file):
    source = source_of(name)
    rng = random.Random(f"{name}-{KILLS}")
    rt = runtime_factory(
        config(source, record_file), workers=2,
        env={**source.env, **RESTART_ENV, "CHAOS_SLEEP": "0.05"},
    ).start(timeout=60)  # fmt: skip
    deaths: dict[int, float] = {}
    with Producer(source, record_file) as producer:
        began = time.monotonic()
        while len(deaths) < KILLS and time.monotonic() - began < KILLS * 5:
            time.sleep(rng.uniform(0.2, 1.0))
            victim = busy_worker(rt, record_file, deaths, rng)
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                deaths[victim] = time.time()
    total = producer.produced
    killing = time.monotonic() - began
    wait_all_done(record_file, total, 240)
    print(f"kills took {killing:.1f} s, the drain {time.monotonic() - began - killing:.1f} s")
    time.sleep(1)  # late duplicates, if any, arrive now
    invocations = read(record_file)
    verdict = check(invocations, total, ordered=source.ordered, deaths=deaths)
    unexplained = unexplained_duplicates(invocations, deaths)
    times = recoveries(invocations, deaths)
    report("kill -9 a worker", name, {
        **verdict.summary(), "kills": len(deaths), "max_recovery_s": max(times, default=0.0),
    })  # fmt: skip
    print("recoveries:", sorted(times))
    assert not verdict.lost, f"lost: {verdict.lost[:20]}"
    assert not verdict.order_violations, verdict.order_violations[:5]
    assert not verdict.overlaps, verdict.overlaps[:5]
    assert not unexplained, f"duplicates no kill explains: {unexplained[:20]}"
    assert len(deaths) == KILLS
    assert rt.stop() == 0


@pytest.mark.parametrize("name", SOURCES)
def test_sigterm_under_load_drains_without_duplicates(name, source_of, runtime_factory,
                                                       record_file):  # fmt: skip
    source = source_of(name)
    count = RECORDS // 2
    source.produce(range(count))
    cfg = config(source, record_file)
    env = {**source.env, **RESTART_ENV, "CHAOS_SLEEP": "0.05"}
    rt = runtime_factory(cfg, workers=2, env=env).start(timeout=60)
    wait_until(lambda: len(completed_numbers(read(record_file))) >= count // 4, 60)
    began = time.monotonic()
    assert rt.stop(signal.SIGTERM) == 0
    drained = time.monotonic() - began
    assert all(i.end is not None for i in read(record_file)), "a batch was cut short"
    # A second life finishes the rest: nothing lost, nothing done twice across the two.
    if source.name == "kafka":
        cfg = tansu_fresh_group(source, cfg)
    rt2 = runtime_factory(cfg, workers=2, env=env).start(timeout=60)
    wait_all_done(record_file, count, 120)
    time.sleep(1)
    verdict = check(read(record_file), count, ordered=source.ordered)
    report("SIGTERM under load", name, {**verdict.summary(), "drain_s": round(drained, 2)})
    assert not verdict.lost and not verdict.order_violations and not verdict.overlaps
    assert verdict.duplicates == 0
    assert rt2.stop() == 0


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("whole_pod", [True, False], ids=["pod", "supervisor"])
def test_kill9_the_pod_and_start_another(name, whole_pod, source_of, runtime_factory,
                                         record_file):  # fmt: skip
    """``pod``: the supervisor and its workers die at once; a new pod takes over (after the
    broker's session or the leases expire). ``supervisor``: only the supervisor dies; its
    workers see the control socket close, finish their batches and leave, while a new pod
    starts at once: no two invocations of a lane across the pods, and nothing done twice."""
    source = source_of(name)
    cfg = config(source, record_file)
    extra = {**RESTART_ENV, "CHAOS_SLEEP": "0.05"}
    old = runtime_factory(cfg, workers=2, env={**source.pod_env("pod-a"), **extra}).start(
        timeout=60
    )
    with Producer(source, record_file) as producer:
        wait_until(lambda: len(completed_numbers(read(record_file))) >= 60, 60)
        rng = random.Random(name)
        assert busy_worker(old, record_file, {}, rng) is not None
        assert old.proc is not None
        workers = old.worker_pids()
        victims = [old.proc.pid, *workers] if whole_pod else [old.proc.pid]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        died = time.time()
        new_cfg = cfg
        if source.name == "kafka":
            # See tansu_fresh_group: the new pod reads as a fresh group seeded with the old
            # one's final commits, so it starts once the old pod's workers are gone.
            wait_until(lambda: not any(alive(p) for p in workers), 30, what="old workers gone")
            new_cfg = tansu_fresh_group(source, cfg)
        new = runtime_factory(new_cfg, workers=2, env={**source.pod_env("pod-b"), **extra})
        new.start(timeout=60)
        time.sleep(2)
    total = producer.produced
    wait_all_done(record_file, total, 120)
    time.sleep(1)
    invocations = read(record_file)
    deaths = dict.fromkeys(victims, died) if whole_pod else {}
    verdict = check(invocations, total, ordered=source.ordered, deaths=deaths)
    if whole_pod:
        recovery = max(recoveries(invocations, deaths))
        report("kill -9 the pod, start another", name,
               {**verdict.summary(), "kills": 1, "max_recovery_s": recovery})  # fmt: skip
    else:
        report("kill -9 the supervisor only", name, {**verdict.summary(), "kills": 1})
    assert not verdict.lost, f"lost: {verdict.lost[:20]}"
    assert not verdict.order_violations, verdict.order_violations[:5]
    assert not verdict.overlaps, verdict.overlaps[:5]
    if whole_pod:
        assert not unexplained_duplicates(invocations, deaths)
    else:
        assert verdict.duplicates == 0
        wait_until(lambda: not any(alive(p) for p in workers), 30, what="orphans leave")
    assert new.stop() == 0
