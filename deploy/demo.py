"""The local demo: emulator, runtime and traffic, with progress on the terminal.

Run through deploy/demo.sh (which installs everything first). It starts ministack (unless one
already answers on the port), creates the ``orders`` queue with a dead-letter queue and the
``shipments`` Kinesis stream with its on-failure queue, starts the runtime with
deploy/example-config.yaml (handlers/orders.py and handlers/shipments.py), sends orders and
shipments (a few of them invalid, to show partial batch failures ending in the DLQ and in the
on-failure destination) and prints progress read from the runtime's own /metrics. Ctrl-C stops
the traffic, drains the runtime and stops the emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import botocore.session
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION}


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start_emulator(port: int) -> subprocess.Popen[bytes] | None:
    endpoint = f"http://127.0.0.1:{port}/"
    if answers(endpoint):
        print(f"using the emulator already running at {endpoint}")
        return None
    log = open(REPO / "demo-emulator.log", "wb")  # noqa: SIM115
    env = dict(
        os.environ,
        BIND_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        SERVICES="sqs,sns,s3,kinesis,dynamodb,dynamodbstreams",
        LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [str(REPO / ".emu-venv/bin/ministack")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(200):
        if answers(endpoint):
            print(f"started ministack (AWS emulator) at {endpoint}")
            return proc
        time.sleep(0.1)
    sys.exit("ministack did not start; see demo-emulator.log")


def make_queues(sqs: Any) -> str:
    dlq = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url: str = sqs.create_queue(
        QueueName="orders",
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        },
    )["QueueUrl"]
    return url


def make_stream(kinesis: Any, sqs: Any) -> None:
    sqs.create_queue(QueueName="shipments-failed")
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName="shipments", ShardCount=2)
    for _ in range(100):
        summary = kinesis.describe_stream_summary(StreamName="shipments")
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    sys.exit("the shipments stream did not become ACTIVE")


class Shipments(threading.Thread):
    """Puts shipments on the stream; about 1% have no weight and end in shipments-failed."""

    def __init__(self, kinesis: Any, rate: int) -> None:
        super().__init__(daemon=True)
        self.kinesis, self.rate = kinesis, max(1, rate)
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            started = time.monotonic()
            records = []
            for _ in range(10):
                n += 1
                body: dict[str, Any] = {"id": n, "truck": f"truck-{n % 25}"}
                if random.random() >= 0.01:
                    body["weight"] = round(random.uniform(1, 40), 1)
                records.append({"PartitionKey": body["truck"], "Data": json.dumps(body).encode()})
            self.kinesis.put_records(StreamName="shipments", Records=records)
            self.sent += len(records)
            self.stopped.wait(max(0.0, 10 / self.rate - (time.monotonic() - started)))


class Traffic(threading.Thread):
    """Sends orders at a steady rate; about 2% are invalid and end up in the DLQ."""

    def __init__(self, sqs: Any, url: str, rate: int) -> None:
        super().__init__(daemon=True)
        self.sqs, self.url, self.rate = sqs, url, rate
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            started = time.monotonic()
            entries = []
            for _ in range(10):
                n += 1
                amount = 0 if random.random() < 0.02 else round(random.uniform(1, 500), 2)
                entries.append(
                    {
                        "Id": str(len(entries)),
                        "MessageBody": json.dumps({"id": n, "amount": amount}),
                    }
                )
            self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            self.sent += len(entries)
            self.stopped.wait(max(0.0, 10 / self.rate - (time.monotonic() - started)))


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--aws-port", type=int, default=4566)
    ap.add_argument("--http-port", type=int, default=8080)
    ap.add_argument("--rate", type=int, default=200, help="orders per second")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: Ctrl-C)")
    args = ap.parse_args()

    emulator = start_emulator(args.aws_port)
    endpoint = f"http://127.0.0.1:{args.aws_port}"
    sqs = botocore.session.get_session().create_client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    url = make_queues(sqs)
    dlq_url = sqs.get_queue_url(QueueName="orders-dlq")["QueueUrl"]
    kinesis = botocore.session.get_session().create_client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    make_stream(kinesis, sqs)
    failed_url = sqs.get_queue_url(QueueName="shipments-failed")["QueueUrl"]
    # Shard leases and checkpoints of this run only (the emulator's stream is new each time).
    data_dir = REPO / ".demo-data"
    shutil.rmtree(data_dir, ignore_errors=True)

    env = dict(
        os.environ,
        **CREDS,
        ESM_AWS_ENDPOINT_URL=endpoint,
        ESM_HTTP_PORT=str(args.http_port),
        ESM_WORKERS=str(args.workers),
        ESM_LOG_FORMAT="json",
        ESM_DATA_DIR=str(data_dir),
        ESM_STREAM_POLL_INTERVAL_SECONDS="0.2",
    )
    runtime_log = open(REPO / "demo-runtime.log", "wb")  # noqa: SIM115
    runtime = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", "deploy/example-config.yaml"],
        cwd=REPO,
        env=env,
        stdout=runtime_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    while (
        not answers(f"http://127.0.0.1:{args.http_port}/readyz")
        or scrape(args.http_port).get("esm_workers_alive", 0) < args.workers + 1
    ):
        if runtime.poll() is not None:
            print((REPO / "demo-runtime.log").read_text()[-3000:])
            sys.exit(f"the runtime exited with {runtime.returncode}; see demo-runtime.log")
        time.sleep(0.2)
    print(
        f"runtime up: {args.workers} + 1 workers; metrics at http://127.0.0.1:{args.http_port}/metrics"
        f" (also /healthz, /readyz); logs in demo-runtime.log\n"
        f"sending {args.rate} orders/s to the 'orders' queue and {args.rate // 2} shipments/s "
        f"to the 'shipments' stream; Ctrl-C to stop\n"
    )
    traffic = Traffic(sqs, url, args.rate)
    traffic.start()
    shipments = Shipments(kinesis, args.rate // 2)
    shipments.start()
    started = time.monotonic()
    while not stop.wait(2.0):
        m = scrape(args.http_port)
        dlq = sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        given_up = sqs.get_queue_attributes(
            QueueUrl=failed_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        print(
            f"[{time.monotonic() - started:6.1f}s] orders: sent {traffic.sent:6d} | "
            f"processed {int(m.get('lambda_deleted_events_total', 0)):6d} | "
            f"in DLQ {dlq:>4} || shipments: sent {shipments.sent:6d} | "
            f"checkpointed {int(m.get('lambda_committed_events_total', 0)):6d} | "
            f"given up {given_up:>3} | shards {int(m.get('esm_owned_units', 0))} || "
            f"invocations {int(m.get('lambda_invocations_total', 0)):5d}",
            flush=True,
        )
        if args.duration and time.monotonic() - started >= args.duration:
            break
        if runtime.poll() is not None:
            print("the runtime exited unexpectedly; see demo-runtime.log")
            break

    print("\nstopping: traffic, then the runtime (draining in-flight batches)...")
    traffic.stopped.set()
    shipments.stopped.set()
    traffic.join()
    shipments.join()
    final = scrape(args.http_port)
    runtime.send_signal(signal.SIGTERM)
    code = runtime.wait(60)
    if emulator is not None:
        emulator.terminate()
        emulator.wait(10)
    print(
        f"orders sent {traffic.sent}, processed "
        f"{int(final.get('lambda_deleted_events_total', 0))}; "
        f"shipments sent {shipments.sent}, checkpointed "
        f"{int(final.get('lambda_committed_events_total', 0))}; runtime exited with {code}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
