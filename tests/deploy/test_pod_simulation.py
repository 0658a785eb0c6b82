"""The rendered pod, run here (no Kubernetes API server can run on these machines): the
Deployment's container command, args and environment and the rendered ConfigMap, with each
volume mount mapped to a local directory, against the local stack. The probes' URLs answer,
records flow, and SIGTERM ends the drain well inside terminationGracePeriodSeconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_chart import kind, render
from tests.support.api import KEY_ID, SECRET, lambda_client
from tests.support.aws import CREDENTIALS, Queue, wait_until
from tests.support.emulator import REPO, free_port

pytestmark = pytest.mark.integration


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def test_the_rendered_pod_runs_serves_its_probes_and_drains_in_time(
    aws_endpoint: str, sqs: Any, tmp_path: Path
) -> None:
    queue = Queue.create(sqs, "pod")
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "functions": {"orders": {"Handler": "handlers.orders.handler", "Timeout": 5}},
                    "eventSourceMappings": [
                        {"FunctionName": "orders", "EventSourceArn": queue.arn, "BatchSize": 10}
                    ],
                },
                "aws": {"region": "us-east-1", "endpointUrl": aws_endpoint},
                "drainTimeoutSeconds": 5,
                "workers": 1,
                "api": {"enabled": True, "credentialsSecret": "esm-api"},
            }
        )
    )
    objects = render(values)
    pod = kind(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    grace = pod["terminationGracePeriodSeconds"]

    # Volumes: each mount becomes a local directory; the ConfigMap's files are written out.
    volumes = {v["name"]: v for v in pod["volumes"]}
    paths: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        local = tmp_path / "mounts" / mount["name"]
        local.mkdir(parents=True)
        source = volumes[mount["name"]]
        if "configMap" in source:
            for name, text in kind(objects, "ConfigMap")["data"].items():
                (local / name).write_text(text)
        if source.get("secret", {}).get("secretName") == "esm-api":  # the API's keys
            for item in source["secret"]["items"]:
                (local / item["path"]).write_text(json.dumps({KEY_ID: SECRET}))
        paths[mount["mountPath"]] = str(local)

    def local(value: str) -> str:
        """A path under a mount, as the local directory standing for it (once, longest first)."""
        for mount_path, local_path in sorted(paths.items(), key=lambda p: -len(p[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                return local_path + value[len(mount_path) :]
        return value

    port = free_port()  # the pod's own network: port 8080 on this machine may be taken
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = local(str(e["value"]))
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = "esm-runtime-7d9f8-abcde"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["ESM_HTTP_PORT"] == str(ports["http"])
    env["ESM_HTTP_PORT"] = str(port)
    assert env["ESM_API_PORT"] == str(ports["api"])
    api_port = free_port()
    env["ESM_API_PORT"] = str(api_port)
    env.update(
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
    )
    [command] = container["command"]
    argv = [str(REPO / ".venv" / "bin" / command), *(local(a) for a in container["args"])]
    log = open(tmp_path / "pod.log", "wb")  # noqa: SIM115
    # The image's working directory holds the handlers package (WORKDIR /app).
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        liveness = container["livenessProbe"]["httpGet"]["path"]
        readiness = container["readinessProbe"]["httpGet"]["path"]
        wait_until(lambda: status(base + liveness) == 200, 30, what="liveness probe")
        wait_until(lambda: status(base + readiness) == 200, 30, what="readiness probe")
        queue.send([{"id": i, "amount": 10 + i} for i in range(40)])
        wait_until(lambda: queue.total() == 0, 30, what="orders processed")
        # The mapping API answers on its port with the mounted keys.
        [shown] = lambda_client(api_port).list_event_source_mappings()["EventSourceMappings"]
        assert shown["EventSourceArn"] == queue.arn and shown["State"] == "Enabled"
        # Files were written only under the mounted paths (the root filesystem is read-only).
        assert any(Path(paths[env_path]).iterdir() for env_path in ["/var/run/esm/metrics"])
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(grace)
        took = time.monotonic() - started
        assert code == 0
        assert took < grace, f"drained in {took:.1f}s, grace {grace}s"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "pod.log").read_text()
    assert "runtime stopped" in output, output[-3000:]
