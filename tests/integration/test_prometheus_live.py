"""A real Prometheus (Debian's package) scrapes the runtime while traffic flows through SQS,
Kinesis and Kafka mappings; every query of the chart's Grafana dashboard and every alert
expression (without its threshold) returns series from that live data, so a panel or an alert
naming a metric the runtime does not export fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_alerts import rendered_rules
from tests.deploy.test_chart import CHART
from tests.support.aws import Queue, client, wait_until
from tests.support.emulator import free_port, wait_http
from tests.support.kafka import KAFKA_ENV, create_topic, produce
from tests.support.streams import STREAM_ENV, create_stream, put_many

pytestmark = pytest.mark.integration


class Prometheus:
    def __init__(self, workdir: Path, target_port: int) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is missing: run deploy/setup.sh --test")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "esm-runtime",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/-/ready", 30)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(port: int) -> Prometheus:
        p = Prometheus(tmp_path, port)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            out.append((panel["title"], target["expr"].replace("$function", ".*")))
    return out


def alert_queries() -> list[tuple[str, str]]:
    out = []
    for group in rendered_rules()["groups"]:
        for rule in group["rules"]:
            # The expression without its threshold: what the alert compares must exist.
            expr = re.sub(r"\s*>\s*[0-9.e+]+\s*$", "", rule["expr"].strip())
            out.append((rule["alert"], expr))
    return out


def test_dashboard_and_alert_queries_return_live_series(
    aws_endpoint, kafka_bootstrap, sqs, runtime_factory, tmp_path, prometheus_for
):
    queue = Queue.create(sqs, "prom")
    kinesis = client("kinesis", aws_endpoint)
    stream = create_stream(kinesis, 2)
    topic = create_topic(kafka_bootstrap, 2)
    config = {
        "functions": {"fn": {"Handler": "tests.perf.handlers.noop", "Timeout": 5}},
        "eventSourceMappings": [
            {"FunctionName": "fn", "EventSourceArn": queue.arn, "BatchSize": 10},
            {"FunctionName": "fn", "EventSourceArn": stream, "StartingPosition": "TRIM_HORIZON"},
            {
                "FunctionName": "fn",
                "SelfManagedEventSource": {
                    "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_bootstrap]}
                },
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
            },
        ],
    }
    env = {**STREAM_ENV, **KAFKA_ENV, "ESM_DATA_DIR": str(tmp_path / "data")}
    rt = runtime_factory(config, env=env).start()
    prom = prometheus_for(rt.port)
    queue.send([{"n": i} for i in range(50)])
    put_many(kinesis, stream, [(f"k{i}", {"n": i}) for i in range(50)])
    produce(kafka_bootstrap, topic, [{"n": i} for i in range(50)], partition=0)
    wait_until(lambda: rt.metric("lambda_invoked_events_total") >= 150, 60)
    # Enough scrapes for rates and increases over the last minutes to have two samples.
    wait_until(lambda: prom.query("up{job='esm-runtime'} == 1"), 30)
    time.sleep(6)
    missing = []
    for name, expr in [*dashboard_queries(), *alert_queries()]:
        if not prom.query(expr):
            missing.append(f"{name}: {expr}")
    assert not missing, "queries without live series:\n" + "\n".join(missing)
    assert rt.stop() == 0
