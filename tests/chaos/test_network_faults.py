"""Network faults between the runtime and its brokers: for a bounded time, connections to the
AWS endpoint (SQS, Kinesis, DynamoDB Streams) and to the Kafka broker are stalled (bytes held,
connections open), reset (closed and refused) or slowed, at random, while records keep
arriving. Afterwards nothing is lost, order per lane holds and no lane ran two batches at
once; duplicates are counted (a delete or commit lost in a reset is redone, as on Lambda).
``ESM_CHAOS_NETWORK_SECONDS`` sets how long the faults last (20 s)."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections import Counter

import pytest

from tests.chaos.invariants import check, completed_numbers, read
from tests.chaos.sources import HANDLER, RESTART_ENV, make
from tests.chaos.test_faults import Producer, report
from tests.support.aws import wait_until
from tests.support.kafka import KAFKA_ENV
from tests.support.netfault import ProxiedTansu, TcpProxy
from tests.support.streams import STREAM_ENV

pytestmark = pytest.mark.integration

FAULT_SECONDS = float(os.environ.get("ESM_CHAOS_NETWORK_SECONDS", "20"))
NAMES = ("sqs", "kafka", "kinesis", "dynamodb")


def test_stalled_reset_and_slow_connections_lose_nothing(
    sqs, aws_endpoint, runtime_factory, tmp_path
):
    aws_proxy = TcpProxy(int(aws_endpoint.rsplit(":", 1)[1])).start()
    broker = ProxiedTansu(tmp_path).start()
    proxies = (aws_proxy, broker.proxy)
    try:
        sources = {
            n: make(n, sqs=sqs, aws_endpoint=aws_endpoint, kafka_bootstrap=broker.bootstrap)
            for n in NAMES
        }
        files = {n: tmp_path / f"{n}.jsonl" for n in NAMES}
        cfg = {
            "functions": {
                f"fn_{n}": {
                    "Handler": HANDLER,
                    "Timeout": 2,
                    "Environment": {
                        "Variables": {"RECORD_FILE": str(files[n]), "CHAOS_SLEEP": "0.02"}
                    },
                }
                for n in NAMES
            },
            "eventSourceMappings": [
                {"FunctionName": f"fn_{n}", **sources[n].mapping} for n in NAMES
            ],
        }
        env = {**KAFKA_ENV, **STREAM_ENV, **RESTART_ENV, "ESM_KAFKA_SESSION_TIMEOUT_MS": "10000"}
        rt = runtime_factory(cfg, workers=1, env=env)
        rt.env["ESM_AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{aws_proxy.port}"
        rt.start(timeout=60)
        rng = random.Random("network")
        faults: Counter[str] = Counter()
        producers = {n: Producer(sources[n], files[n], step=10, pause=0.2) for n in NAMES}
        with contextlib.ExitStack() as stack:
            for producer in producers.values():
                stack.enter_context(producer)
            end = time.monotonic() + FAULT_SECONDS
            while time.monotonic() < end:
                kind = rng.choice(["stall", "reset", "slow"])
                faults[kind] += 1
                for p in proxies:
                    if kind == "stall":
                        p.stall()
                    elif kind == "reset":
                        p.cut()
                    else:
                        p.slow(0.2)
                time.sleep(rng.uniform(0.5, 2.0))
                for p in proxies:
                    p.restore()
                time.sleep(rng.uniform(0.3, 1.0))
        assert rt.proc is not None and rt.proc.poll() is None, "the runtime died"
        for n in NAMES:
            wanted = set(range(producers[n].produced))
            wait_until(
                lambda n=n, wanted=wanted: wanted <= set(completed_numbers(read(files[n]))),
                120, interval=0.5, what=f"{n}: all {len(wanted)} records",
            )  # fmt: skip
        time.sleep(1)
        for n in NAMES:
            verdict = check(read(files[n]), producers[n].produced, ordered=sources[n].ordered)
            report("network stalls, resets, slow links", n, {
                **verdict.summary(),
                "kills": ", ".join(f"{c} {k}" for k, c in sorted(faults.items())),
            })  # fmt: skip
            assert not verdict.lost, (n, verdict.lost[:20])
            assert not verdict.order_violations, (n, verdict.order_violations[:5])
            assert not verdict.overlaps, (n, verdict.overlaps[:5])
        assert rt.stop() == 0
    finally:
        broker.stop()
        aws_proxy.stop()
