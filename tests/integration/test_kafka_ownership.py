"""Kafka partitions as owned work units: hand-offs, confirmed commits, flow control, faults.

Every test here runs the real runtime against a real broker (Tansu). The rules under test:
no two invocations of one partition overlap, across runtimes, during rebalances; a commit
counts only once the broker confirmed it, and a failed one is retried; a partition paused
for flow control and then moved away and back is consumed again; a consumer that dies takes
its worker down cleanly (drain, final commit, documented exit code); errors on one partition
never slow the others.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.aws import wait_until
from tests.support.kafka import KAFKA_ENV, committed, create_topic, kafka_mapping, produce
from tests.support.netfault import ProxiedTansu
from tests.support.records import Invocation, max_overlap, read_invocations

pytestmark = pytest.mark.integration

FAULTS = Path(__file__).resolve().parents[1] / "support" / "faults"


def partitions_of(inv: Invocation) -> set[int]:
    return {r["partition"] for recs in inv.event["records"].values() for r in recs}


def coords(inv: Invocation) -> list[tuple[int, int]]:
    return [(r["partition"], r["offset"]) for recs in inv.event["records"].values() for r in recs]


def returned(record_file: Path) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for inv in read_invocations(record_file):
        if inv.outcome == "returned":
            out.extend(coords(inv))
    return out


def test_a_revoked_partition_is_never_invoked_again_by_its_old_owner(
    kafka_bootstrap, runtime_factory, record_file
):
    """Defect: the retry loop of a batch only checked for shutdown, so after a rebalance the
    old owner went on retrying a partition the new owner was already processing."""
    topic = create_topic(kafka_bootstrap, 2)
    # The first record of each partition fails for 15 s, whoever runs it: long enough that
    # the first runtime is still retrying it well after the second one took its partition.
    until = time.time() + 15
    for part in (0, 1):
        values = [{"i": 0, "fail_until": until}] + [{"i": i} for i in range(1, 11)]
        produce(kafka_bootstrap, topic, values, partition=part)
    cfg = kafka_mapping(
        kafka_bootstrap, topic, record_file, BatchSize=1, MaximumBatchingWindowInSeconds=0
    )
    env = {**KAFKA_ENV, "ESM_RETRY_BACKOFF_SECONDS": "0.5", "ESM_RETRY_BACKOFF_MAX_SECONDS": "1"}
    a = runtime_factory(cfg, env=env).start()
    # Both partitions are retrying their first record when the second runtime joins.
    wait_until(
        lambda: all(
            sum(1 for i in read_invocations(record_file) if p in partitions_of(i)) >= 2
            for p in (0, 1)
        ),
        30,
        what="both partitions retrying",
    )
    b = runtime_factory(cfg, env=env).start()
    wait_until(lambda: len(set(returned(record_file))) == 22, 60, what="every record processed")
    pids_a, pids_b = set(a.worker_pids()), set(b.worker_pids())
    invs = read_invocations(record_file)
    moved = {p for i in invs if i.pid in pids_b for p in partitions_of(i)}
    assert moved, "no partition moved to the second runtime"
    for part in moved:
        first_b = min(i.started for i in invs if i.pid in pids_b and part in partitions_of(i))
        late = [
            i for i in invs if i.pid in pids_a and part in partitions_of(i) and i.started > first_b
        ]
        assert not late, f"partition {part}: the old owner invoked it after the new owner started"
        last_a_end = max(
            (i.ended or float("inf") for i in invs if i.pid in pids_a and part in partitions_of(i)),
            default=0.0,
        )
        assert last_a_end <= first_b, f"partition {part}: invocations of two owners overlapped"
    assert a.stop() == 0 and b.stop() == 0


def test_commits_count_only_once_the_broker_confirmed_them_and_failed_ones_are_retried(
    tmp_path, runtime_factory, record_file
):
    """Defect: offsets were marked committed (and counted) before the broker answered, and a
    commit that failed was never sent again."""
    broker = ProxiedTansu(tmp_path).start()
    try:
        topic = create_topic(broker.bootstrap, 1)
        produce(broker.bootstrap, topic, ({"i": i, "sleep": 0.4} for i in range(40)), partition=0)
        group = f"group-{topic}"
        cfg = kafka_mapping(
            broker.bootstrap,
            topic,
            record_file,
            BatchSize=4,
            MaximumBatchingWindowInSeconds=0,
            SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": group},
        )
        env = {
            **KAFKA_ENV,
            "ESM_KAFKA_SESSION_TIMEOUT_MS": "20000",
            "ESM_KAFKA_COMMIT_INTERVAL_SECONDS": "0.2",
        }
        rt = runtime_factory(cfg, env=env).start()
        wait_until(lambda: rt.metric("lambda_committed_events_total") >= 4, 30)
        # Every record has been fetched by now (one partition, 40 small records).
        broker.proxy.cut()
        at_cut = rt.metric("lambda_committed_events_total")
        wait_until(lambda: len(returned(record_file)) == 40, 30, what="the backlog processed")
        time.sleep(1.0)
        during = rt.metric("lambda_committed_events_total")
        assert during <= at_cut + 4, (
            f"{during} records counted as committed while the broker was unreachable "
            f"(at the cut: {at_cut})"
        )
        broker.proxy.restore()
        wait_until(
            lambda: rt.metric("lambda_committed_events_total") == 40,
            40,
            what="the failed commits retried and confirmed",
        )
        assert committed(broker.bootstrap, group, topic, 1) == {0: 40}
        assert rt.stop() == 0
        assert committed(broker.bootstrap, group, topic, 1) == {0: 40}
        assert sorted(returned(record_file)) == [(0, i) for i in range(40)]
    finally:
        broker.stop()


def test_a_paused_partition_moved_away_and_back_is_consumed_again(
    kafka_bootstrap, runtime_factory, record_file
):
    """Defect: librdkafka keeps an application pause across unassign/assign, so a partition
    paused for flow control, revoked and later assigned again was never read again."""
    topic = create_topic(kafka_bootstrap, 2)
    # 3000 records per partition at 250 records/s: each partition holds far more uncompleted
    # records than its bound (1000) for about 10 s, so both stay paused meanwhile.
    produce(kafka_bootstrap, topic, ({"i": i} for i in range(6000)), partitions=2)
    cfg = kafka_mapping(
        kafka_bootstrap,
        topic,
        record_file,
        BatchSize=5,
        MaximumBatchingWindowInSeconds=0,
        function={"Handler": "tests.handlers.kafka.slow_handler"},
    )
    env = {**KAFKA_ENV, "ESM_UNIT_BUFFER_RECORDS": "1000"}
    a = runtime_factory(cfg, env=env).start()
    wait_until(lambda: len(returned(record_file)) >= 20, 30)
    b = runtime_factory(cfg, env=env).start()
    pids_b = set(b.wait_workers(1))
    wait_until(
        lambda: any(i.pid in pids_b for i in read_invocations(record_file)),
        30,
        what="a partition moved to the second runtime",
    )
    assert b.stop() == 0  # its partition goes back to the first runtime
    wait_until(lambda: len(set(returned(record_file))) == 6000, 90, what="every record processed")
    assert a.stop() == 0


def test_a_dead_consumer_drains_commits_and_exits_with_its_code(
    kafka_bootstrap, runtime_factory, record_file, tmp_path
):
    """Defect: when the consumer thread died, SystemExit escaped the event loop: no drain, no
    final commit (the finished batch ran again after the restart)."""
    topic = create_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, ({"i": i, "sleep": 2} for i in range(6)), partition=0)
    group = f"group-{topic}"
    cfg = kafka_mapping(
        kafka_bootstrap,
        topic,
        record_file,
        BatchSize=2,
        MaximumBatchingWindowInSeconds=0,
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": group},
    )
    marker = tmp_path / "fault-fired"
    env = {
        **KAFKA_ENV,
        "ESM_KAFKA_COMMIT_INTERVAL_SECONDS": "30",  # only the final commit can save the batch
        "PYTHONPATH": str(FAULTS),
        "ESM_TEST_FAULT": "kafka-consume-raises",
        "ESM_TEST_FAULT_MARKER": str(marker),
        "ESM_TEST_FAULT_DELAY": "0.5",
    }
    rt = runtime_factory(cfg, env=env).start()
    wait_until(marker.exists, 30, what="the injected consumer failure")
    wait_until(
        lambda: rt.metric("esm_worker_restarts_total", reason="source_error") == 1,
        30,
        what="the worker exited with its source-error code and was restarted",
    )
    wait_until(lambda: len(set(returned(record_file))) == 6, 60, what="every record processed")
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for c in returned(record_file):
        counts[c] += 1
    assert max(counts.values()) == 1, f"records processed twice: {counts}"
    assert rt.stop() == 0
    assert committed(kafka_bootstrap, group, topic, 1) == {0: 6}


def test_a_dead_consumer_does_not_wait_for_a_stuck_handler(
    kafka_bootstrap, runtime_factory, record_file, tmp_path
):
    """Defect: a sync handler still running kept the process of a dead consumer alive."""
    topic = create_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, [{"i": 0, "sleep": 30}, {"i": 1}], partition=0)
    cfg = kafka_mapping(
        kafka_bootstrap,
        topic,
        record_file,
        BatchSize=1,
        MaximumBatchingWindowInSeconds=0,
        timeout=60,
    )
    marker = tmp_path / "fault-fired"
    env = {
        **KAFKA_ENV,
        "ESM_DRAIN_TIMEOUT_SECONDS": "1",
        "PYTHONPATH": str(FAULTS),
        "ESM_TEST_FAULT": "kafka-consume-raises",
        "ESM_TEST_FAULT_MARKER": str(marker),
        "ESM_TEST_FAULT_DELAY": "0.5",
    }
    rt = runtime_factory(cfg, env=env).start()
    wait_until(marker.exists, 30, what="the injected consumer failure")
    fired = time.monotonic()
    wait_until(
        lambda: rt.metric("esm_worker_restarts_total", reason="source_error") == 1,
        40,
        what="the worker restarted",
    )
    assert time.monotonic() - fired < 10, "the dead consumer's worker waited for the handler"
    rt.kill_tree()


def test_errors_on_one_partition_do_not_slow_the_others(
    kafka_bootstrap, runtime_factory, record_file
):
    """Defect: a function error lowered the mapping's concurrency limit, so a poison record
    on one partition serialised every other partition of the worker."""
    topic = create_topic(kafka_bootstrap, 4)
    produce(kafka_bootstrap, topic, [{"i": 0, "poison": True}], partition=0)
    for part in (1, 2, 3):
        produce(kafka_bootstrap, topic, ({"i": i, "sleep": 0.5} for i in range(16)), partition=part)
    cfg = kafka_mapping(
        kafka_bootstrap, topic, record_file, BatchSize=1, MaximumBatchingWindowInSeconds=0
    )
    env = {
        **KAFKA_ENV,
        "ESM_DEFAULT_MAXIMUM_CONCURRENCY": "4",
        "ESM_RETRY_BACKOFF_MAX_SECONDS": "0.2",
        "ESM_SCALING_INTERVAL_SECONDS": "0.2",
    }
    rt = runtime_factory(cfg, env=env).start()
    wait_until(lambda: rt.metric("lambda_errors_total") >= 3, 30, what="the poison record failing")
    settled = time.time() + 1.5  # several scaling intervals with errors
    time.sleep(1.5)
    assert rt.metric("esm_concurrency_limit") == 4
    wait_until(lambda: len(set(returned(record_file))) >= 48, 60, what="the healthy partitions")
    assert rt.metric("esm_concurrency_limit") == 4
    healthy_after = [
        i
        for i in read_invocations(record_file)
        if i.started > settled and not partitions_of(i) & {0}
    ]
    assert len(healthy_after) >= 9
    assert max_overlap(healthy_after) == 3, "healthy partitions did not run side by side"
    assert rt.metric("lambda_errors_total") > 10  # the poison record kept failing meanwhile
    assert rt.stop() == 0


def test_a_response_that_cannot_be_marshalled_fails_the_batch_and_the_partition_moves_on(
    kafka_bootstrap, runtime_factory, record_file
):
    """Defect: marshalling a deeply nested response raised RecursionError, which escaped the
    batch: its offsets never completed and the partition's commit froze."""
    topic = create_topic(kafka_bootstrap, 1)
    produce(
        kafka_bootstrap,
        topic,
        [{"i": 0, "nested_times": 1}, *({"i": i} for i in range(1, 5))],
        partition=0,
    )
    cfg = kafka_mapping(
        kafka_bootstrap,
        topic,
        record_file,
        BatchSize=1,
        MaximumBatchingWindowInSeconds=0,
        function={"Handler": "tests.handlers.kafka.handler"},
    )
    rt = runtime_factory(cfg, env=KAFKA_ENV).start()
    wait_until(
        lambda: rt.metric("lambda_committed_events_total") == 5,
        30,
        what="every record committed, the first after a retry",
    )
    first = [i for i in read_invocations(record_file) if coords(i) == [(0, 0)]]
    assert len(first) == 2
    assert rt.metric("lambda_errors_total") == 1
    assert "Runtime.MarshalError" in rt.logs()
    assert rt.stop() == 0
