"""Brokers that restart while the runtime reads them: the runtime must ride it out alone.

Each test starts a broker of its own (never the session's, which every other test shares),
lets the runtime work through numbered records, takes the broker down mid-run, brings it back
on the same port and checks tests/chaos/invariants.py: nothing lost, order per lane kept, no
two invocations of a lane at once, and duplicates only for records whose acknowledgement the
outage could have swallowed: done within ``ACK_WINDOW_SECONDS`` before the fault, while the
broker was down (no commit, delete or checkpoint can land), or before a Kafka group formed
again after it (``REGROUP_SECONDS``). Each test takes 7-16 s here.

- Kafka: Tansu with ``s3://`` storage on the session's S3 emulator, so topics, records and
  committed offsets survive; killed with SIGKILL.
- SQS and Kinesis: ministack keeps nothing in memory across a restart unless started with
  ``PERSIST_STATE=1`` (and ``STATE_DIR``), and even then only what it writes when it is
  stopped cleanly: SIGTERM saves queues with their messages (in flight ones included, receipt
  handles still valid) and streams with their records and sequence numbers; SIGKILL saves
  nothing (a plain restart is an empty emulator). DynamoDB keeps its tables, items and stream
  shards but not the stream's records, so a DynamoDB Streams restart would lose records in the
  emulator itself and is not tested here. The emulator is therefore stopped with SIGTERM.
- An emulator that comes back empty (SIGKILL): the runtime keeps running, counts the failed
  polls (``esm_polling_errors_total``) while the endpoint is down and then the queue gone,
  and reads the queue again, without a restart of its own, once the test has made it again.
- An outage mid-run sets ``esm_event_source_unreachable`` to 1 once every fetch has failed
  for ``ESM_SOURCE_UNREACHABLE_AFTER_SECONDS`` (1 s here), with one error line, and back to 0
  with one info line when the source answers; ``/readyz`` stays ready (the workers are
  fine and restarting the pod would not help), unlike a source that cannot be started
  (tests/chaos/test_unreachable_at_start.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.invariants import Invocation, check, completed_numbers, read
from tests.chaos.sources import RESTART_ENV, Source, config, make
from tests.chaos.test_faults import report, wait_all_done
from tests.support.aws import CREDENTIALS, REGION, Queue, client, wait_until
from tests.support.emulator import Ministack, Tansu

pytestmark = pytest.mark.integration

DOWN_SECONDS = 3.0  # how long the broker stays away
# A record done this long before the fault may not have been acknowledged yet (Kafka commits
# every second; stream checkpoints every 0.3 s in the suite).
ACK_WINDOW_SECONDS = 2.5
# After its return a broker may refuse acknowledgements a while longer: Tansu forgets its
# consumer groups' members, so commits fail (UNKNOWN_MEMBER_ID) until the members have
# noticed (a heartbeat or commit, every second) and the group has formed again (the join is
# held for half the session timeout, 3 s in the suite); what was done meanwhile is read again.
REGROUP_SECONDS = 5.0
FAST_RETRY = {
    "ESM_SOURCE_RETRY_SECONDS": "0.5",
    "ESM_SOURCE_RETRY_MAX_SECONDS": "2",
    "ESM_SOURCE_UNREACHABLE_AFTER_SECONDS": "1",
}
UNREACHABLE = "esm_event_source_unreachable"


def first_completions(invocations: list[Invocation]) -> dict[int, float]:
    """When each number was first completed (the end of its first successful invocation)."""
    first: dict[int, float] = {}
    for inv in sorted(invocations, key=lambda i: i.end or float("inf")):
        if inv.end is None or inv.failed:
            continue
        for n in inv.ns:
            first.setdefault(n, inv.end)
    return first


def unexplained_duplicates(invocations: list[Invocation], down: float, back: float) -> list[int]:
    """Numbers completed twice whose first completion no outage explains: before the fault's
    acknowledgement window, or after the broker was back and its group formed again."""
    first = first_completions(invocations)
    done = completed_numbers(invocations)
    return sorted(
        n
        for n, c in done.items()
        if c > 1 and not down - ACK_WINDOW_SECONDS <= first[n] <= back + REGROUP_SECONDS
    )


def recovery(invocations: list[Invocation], fresh: int, back: float) -> float:
    """From the broker's return until a record read from it again was done: one produced
    after the return (``>= fresh``), or one done before and delivered again (a replay, which
    needs the broker too). Records read before the fault and done during it do not count."""
    done_at: dict[int, float] = {}  # number -> its earliest completion so far
    for inv in sorted(invocations, key=lambda i: i.start):
        if inv.end is None or inv.failed:
            continue
        if inv.end > back and any(
            n >= fresh or done_at.get(n, inv.start) < inv.start for n in inv.ns
        ):
            return round(inv.end - back, 2)
        for n in inv.ns:
            done_at[n] = min(done_at.get(n, inv.end), inv.end)
    return float("inf")


def run_through_a_restart(
    source: Source,
    rt: Any,
    record_file: Path,
    *,
    first: int,
    then: int,
    take_down: Any,
    bring_back: Any,
) -> dict[str, Any]:
    """Records 0..first-1 are there at start; the broker goes down once half of them are
    done (some acknowledgements have landed, work is in flight) and comes back DOWN_SECONDS
    later; first..first+then-1 are produced after that; every invariant is checked. Returns
    the figures for the report."""
    wait_until(
        lambda: len(completed_numbers(read(record_file))) >= first // 2,
        60,
        what="half of the records done",
    )
    down = time.time()
    take_down()
    gone = time.time()  # an emulator stopped cleanly takes a while to save its state
    # The outage is reported while it lasts (after ESM_SOURCE_UNREACHABLE_AFTER_SECONDS)...
    wait_until(lambda: rt.metric(UNREACHABLE) == 1, DOWN_SECONDS + 5, what="outage reported")
    reported_after = time.time() - gone
    time.sleep(max(0.0, down + DOWN_SECONDS - time.time()))
    bring_back()
    back = time.time()
    source.produce(range(first, first + then))
    total = first + then
    wait_all_done(record_file, total, 120)
    # ... and cleared alone once the source answers again, each with one log line.
    wait_until(lambda: rt.metric(UNREACHABLE) == 0, 30, what="outage cleared")
    logs = rt.logs()
    assert "event source unreachable" in logs and "event source answers again" in logs
    time.sleep(1)  # late duplicates, if any, arrive now
    invocations = read(record_file)
    verdict = check(invocations, total, ordered=source.ordered)
    unexplained = unexplained_duplicates(invocations, down, back)
    figures = {
        **verdict.summary(),
        "max_recovery_s": recovery(invocations, first, back),
        "worker_restarts": rt.metric("esm_worker_restarts_total"),
        "unreachable_reported_after_s": round(reported_after, 1),
    }
    first_done = first_completions(invocations)
    redone = [first_done[n] for n, c in completed_numbers(invocations).items() if c > 1]
    print(
        "broker restart:", figures, "redone, by when first done: before the fault",
        sum(t < down for t in redone), "while down", sum(down <= t <= back for t in redone),
        "after", sum(t > back for t in redone),
    )  # fmt: skip
    assert not verdict.lost, f"lost: {verdict.lost[:20]}"
    assert not verdict.order_violations, verdict.order_violations[:5]
    assert not verdict.overlaps, verdict.overlaps[:5]
    assert not unexplained, f"duplicates no outage explains: {unexplained[:20]}"
    # It recovered alone: the pod never stopped and is ready, naming no unreachable source.
    assert rt.proc is not None and rt.proc.poll() is None
    wait_until(
        lambda: rt.get("/readyz") == (200, "2/2 workers ready\n"),
        30,
        what="ready, naming no source",
    )
    return figures


# ---------------------------------------------------------------------------------- Kafka


@pytest.fixture
def s3_tansu(aws_endpoint: str, tmp_path: Path) -> Iterator[Tansu]:
    """A broker of its own whose storage (a fresh bucket on the S3 emulator) outlives it."""
    bucket = f"tansu-{uuid.uuid4().hex[:10]}"
    client("s3", aws_endpoint).create_bucket(Bucket=bucket)
    env = {
        "AWS_ENDPOINT": aws_endpoint,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ALLOW_HTTP": "true",
    }
    broker = Tansu(tmp_path, storage=f"s3://{bucket}/", env=env)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_kafka_broker_killed_and_restarted_mid_run(s3_tansu, runtime_factory, record_file):
    source = make("kafka", sqs=None, aws_endpoint="", kafka_bootstrap=s3_tansu.bootstrap)
    first, then = 800, 200
    source.produce(range(first))
    env = {**source.env, **RESTART_ENV, **FAST_RETRY, "CHAOS_SLEEP": "0.2"}
    rt = runtime_factory(config(source, record_file), workers=2, env=env).start(timeout=60)
    figures = run_through_a_restart(
        source, rt, record_file, first=first, then=then,
        take_down=s3_tansu.kill, bring_back=s3_tansu.start,
    )  # fmt: skip
    report("broker restart mid-run", "kafka", {**figures, "kills": "broker kill -9, 3 s down"})
    assert rt.stop() == 0


# --------------------------------------------------------------------- SQS and Kinesis


@pytest.fixture
def own_ministack(tmp_path: Path) -> Iterator[Ministack]:
    """An emulator of its own that saves its state when stopped (SIGTERM) and loads it when
    started again on the same port."""
    state = tmp_path / "ministack-state"
    emu = Ministack(tmp_path, env={"PERSIST_STATE": "1", "STATE_DIR": str(state)})
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.mark.parametrize("name", ["sqs", "kinesis"])
def test_emulator_stopped_and_restarted_mid_run(name, own_ministack, runtime_factory,
                                                record_file):  # fmt: skip
    endpoint = own_ministack.endpoint
    source = make(name, sqs=client("sqs", endpoint), aws_endpoint=endpoint, kafka_bootstrap=None)
    first, then = 600, 200
    source.produce(range(first))
    env = {**source.env, **RESTART_ENV, **FAST_RETRY, "CHAOS_SLEEP": "0.1"}
    rt = runtime_factory(config(source, record_file), workers=2, env=env)
    rt.env["ESM_AWS_ENDPOINT_URL"] = endpoint
    rt.start(timeout=60)
    figures = run_through_a_restart(
        source, rt, record_file, first=first, then=then,
        take_down=own_ministack.stop, bring_back=own_ministack.start,
    )  # fmt: skip
    report("broker restart mid-run", name, {**figures, "kills": "emulator SIGTERM, 3 s down"})
    assert rt.stop() == 0


def test_an_emulator_that_comes_back_empty_is_read_again_once_the_queue_is(
    runtime_factory, record_file, tmp_path
):
    """SIGKILL: ministack comes back with no queue at all. The runtime neither exits nor
    restarts its workers; its pollers back off while the endpoint is down and while the
    queue does not exist, and read the queue again, alone, once it is made again (same name,
    so same URL and ARN). Records that were in the killed emulator are gone with it, so the
    first ones are all done before the kill and the check is on those sent after."""
    emu = Ministack(tmp_path)
    emu.start()
    try:
        sqs = client("sqs", emu.endpoint)
        q = Queue.create(sqs, "empty", visibility_timeout=2)
        cfg = config(Source("sqs", False, {"EventSourceArn": q.arn, "BatchSize": 10},
                            lambda _: None, {}), record_file)  # fmt: skip
        rt = runtime_factory(cfg, workers=2, env={**RESTART_ENV, "CHAOS_SLEEP": "0.02"})
        rt.env["ESM_AWS_ENDPOINT_URL"] = emu.endpoint
        rt.start(timeout=60)
        q.send({"n": n, "key": f"k{n % 8}"} for n in range(100))
        wait_all_done(record_file, 100, 60)
        emu.kill()
        time.sleep(DOWN_SECONDS)
        emu.start()
        back = time.time()
        assert not sqs.list_queues().get("QueueUrls"), "the emulator kept a queue"
        sqs.create_queue(QueueName=q.name, Attributes={"VisibilityTimeout": "2"})
        q.send({"n": n, "key": f"k{n % 8}"} for n in range(100, 200))
        wait_until(
            lambda: set(range(100, 200)) <= set(completed_numbers(read(record_file))),
            60,
            what="the re-made queue read",
        )
        invocations = read(record_file)
        recovered = recovery(invocations, 100, back)
        done = completed_numbers(invocations)
        duplicates = sum(c - 1 for c in done.values() if c > 1)
        restarts = rt.metric("esm_worker_restarts_total")
        print(f"empty emulator: the re-made queue read {recovered} s after the restart; "
              f"{duplicates} duplicates; {restarts} worker restarts")  # fmt: skip
        assert set(done) == set(range(200)) and duplicates == 0
        assert rt.proc is not None and rt.proc.poll() is None
        assert restarts == 0
        assert rt.metric("esm_polling_errors_total") > 0  # the outage was seen, and counted
        assert rt.get("/readyz") == (200, "2/2 workers ready\n")
        report("emulator restart, state lost", "sqs", {
            "produced": 200, "lost": 0, "duplicates": duplicates, "order_violations": 0,
            "overlaps": 0, "kills": "emulator kill -9, 3 s down, queue re-made",
            "max_recovery_s": recovered,
        })  # fmt: skip
        assert rt.stop() == 0
    finally:
        emu.stop()
