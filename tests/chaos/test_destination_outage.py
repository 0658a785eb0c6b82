"""The on-failure destination is unreachable for 30 s while poison records keep failing: no
record is dropped or acknowledged meanwhile (each lane holding a given-up batch waits, retrying
the send), and every given-up batch reaches the destination once it is back. The three sources
with on-failure destinations run side by side through one outage."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.chaos.invariants import check, completed_numbers, read
from tests.chaos.sources import RESTART_ENV, config, make
from tests.chaos.test_faults import report
from tests.support.aws import Queue, wait_until
from tests.support.netfault import TcpProxy

pytestmark = pytest.mark.integration

OUTAGE = float(os.environ.get("ESM_CHAOS_OUTAGE_SECONDS", "30"))
COUNT = 40
POISON_MOD = 10  # numbers 5, 15, 25, 35 fail (the recorder's CHAOS_POISON_MOD rule)


def poisoned(n: int) -> bool:
    return n % POISON_MOD == POISON_MOD // 2


BATCH_INFO = {
    "kafka": "KafkaBatchInfo",
    "kinesis": "KinesisBatchInfo",
    "dynamodb": "DDBStreamBatchInfo",
}


def drain_queue(sqs: Any, q: Queue) -> list[dict[str, Any]]:
    got = []
    while True:
        msgs = sqs.receive_message(QueueUrl=q.url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return got
        for m in msgs:
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=q.url, ReceiptHandle=m["ReceiptHandle"])


def test_destination_unavailable_nothing_dropped_delivered_after(
    request, sqs, aws_endpoint, runtime_factory, tmp_path
):
    destination = Queue.create(sqs, "onfailure")
    proxy = TcpProxy(int(aws_endpoint.rsplit(":", 1)[1])).start()
    runtimes, files, sources = {}, {}, {}
    try:
        for name in BATCH_INFO:
            bootstrap = request.getfixturevalue("kafka_bootstrap") if name == "kafka" else None
            source = make(name, sqs=sqs, aws_endpoint=aws_endpoint, kafka_bootstrap=bootstrap)
            source.mapping |= {
                "BatchSize": 1,
                "MaximumRetryAttempts": 0,
                "DestinationConfig": {"OnFailure": {"Destination": destination.arn}},
            }
            files[name] = tmp_path / f"{name}.jsonl"
            cfg = config(source, files[name])
            cfg["functions"]["fn"]["Environment"]["Variables"] |= {
                "CHAOS_POISON_MOD": str(POISON_MOD), "CHAOS_SLEEP": "0",
            }  # fmt: skip
            rt = runtime_factory(cfg, env={**source.env, **RESTART_ENV})
            # Every AWS call goes to the emulator directly, except SQS (the destination),
            # which goes through the proxy the test cuts.
            rt.env.pop("ESM_AWS_ENDPOINT_URL")
            rt.env |= {
                "AWS_ENDPOINT_URL": aws_endpoint,
                "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{proxy.port}",
            }
            runtimes[name], sources[name] = rt.start(timeout=60), source
        proxy.cut()
        cut = time.monotonic()
        for source in sources.values():
            source.produce(range(COUNT))
        time.sleep(OUTAGE)
        assert not drain_queue(sqs, destination), "delivered while the destination was down"
        for name, rt in runtimes.items():
            assert rt.metric("lambda_dropped_events_total") == 0, name
            assert rt.metric("lambda_destination_delivery_failures_total") > 0, name
            assert rt.proc is not None and rt.proc.poll() is None
        at_restore = time.time()
        proxy.restore()
        back = time.monotonic()
        good = {n for n in range(COUNT) if not poisoned(n)}
        poison = COUNT - len(good)
        delivered: list[dict[str, Any]] = []

        def all_through() -> bool:
            delivered.extend(drain_queue(sqs, destination))
            done = all(good <= set(completed_numbers(read(f))) for f in files.values())
            return done and len(delivered) >= poison * len(files)

        try:
            wait_until(all_through, 120, interval=0.5, what="records done, poison delivered")
        except AssertionError:
            for name, f in files.items():
                print(name, "missing", sorted(good - set(completed_numbers(read(f)))))
            print("delivered", [sorted(d) for d in delivered])
            raise
        recovered = time.monotonic() - back
        time.sleep(1)
        delivered.extend(drain_queue(sqs, destination))
        for name, key in BATCH_INFO.items():
            mine = [d for d in delivered if key in d]
            assert len(mine) == poison, (name, len(mine))
            assert all(d["requestContext"]["condition"] == "RetryAttemptsExhausted" for d in mine)
            invocations = read(files[name])
            verdict = check(invocations, COUNT, ordered=True)
            lost = [n for n in verdict.lost if not poisoned(n)]
            report(f"on-failure destination down {OUTAGE:g} s", name, {
                **verdict.summary(), "lost": len(lost), "kills": f"{OUTAGE:g} s outage",
                "max_recovery_s": round(recovered, 2),
            })  # fmt: skip
            assert not lost and not verdict.order_violations and not verdict.overlaps
            # A lane whose batch was given up waited for the destination: nothing after the
            # poison record ran in that lane before the destination came back.
            first_poison: dict[str, float] = {}
            for i in invocations:
                if i.failed:
                    for lane in i.lanes:
                        first_poison.setdefault(str(lane), i.start)
            jumped = [
                i.ns for i in invocations
                if i.end is not None and i.end < at_restore and not i.failed
                and any(str(lane) in first_poison and i.start > first_poison[str(lane)]
                        for lane in i.lanes)
            ]  # fmt: skip
            assert not jumped, f"{name}: ran past a batch waiting for the destination: {jumped}"
            assert runtimes[name].metric("lambda_dropped_events_total") == 0
        print(f"outage {back - cut:.1f} s; all through {recovered:.2f} s after it ended")
        for rt in runtimes.values():
            assert rt.stop() == 0
    finally:
        proxy.stop()
